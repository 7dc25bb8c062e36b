"""The fitting skeleton, its rest state, and posing it with analytic derivatives.

Only the model's ``free_joints`` are posed; the other joints stay at rest relative to their parents, so
the fitting skeleton is the tree of free joints with the skinning weights of fixed joints merged into
their nearest free ancestor (exact for linear blend skinning). The rest state is affine in the model's
blend coefficients, so it is folded through the keypoint regressor once per model and skeleton
(:class:`_Basis`); a new shape then costs one small contraction. The derivative of a posed point with
respect to a joint's rotation is a cross product with the point's offset from the joint.

The underscored names are the fit's internals, shared by the ``fit_*`` modules of this folder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from mocap_studio.reconstruction.body.lbs import TreeLevels, forward_kinematics, pose_feature, tree_levels
from mocap_studio.reconstruction.body.model import SkinnedBodyModel

DT = torch.float64


@dataclass(frozen=True)
class _Reduced:
    """The tree of free joints and what posing it needs.

    free: (Jf,) model joint index of each free joint; parent_f: (Jf,) parent position (-1: root);
    desc: (Jf, Jf) 1 where column i is row j or below it; anc: (Jf, Jf) 1 where column i is row j or above
    it; vertex_ids: (N,) vertices needed; weights: (N, Jf) merged skinning weights; kp_matrix: (K + P, N)
    the format's keypoints, then the P = 2 * SOLE_POINTS sole vertices (left foot, then right);
    sole_ids: (P,) those vertices; sem: SMPL-24 name -> free-joint position; limit_joint (L,),
    limit_axis (L, 3), limit_lo (L,) and limit_hi (L,): the joint-limit terms, each a free joint, a
    rest-frame axis and the range of its rotation about that axis (see :func:`_joint_limits`); cone_joint
    (Lc,) and cone_max (Lc,): joints whose whole rotation is kept below an angle; marker_k (M,): the
    keypoints that are surface landmarks (:data:`MARKER_WORDS`), marker_j (M,): the free joint each one
    moves with most; temporal_scale (Jf,): each joint's factor on the temporal term (:data:`POORLY_SEEN`).
    """

    free: torch.Tensor
    levels: TreeLevels
    parent_f: np.ndarray
    desc: torch.Tensor
    anc: torch.Tensor
    vertex_ids: torch.Tensor
    weights: torch.Tensor
    kp_matrix: torch.Tensor
    sole_ids: np.ndarray
    sem: dict[str, int]
    limit_joint: torch.Tensor
    limit_axis: torch.Tensor
    limit_lo: torch.Tensor
    limit_hi: torch.Tensor
    cone_joint: torch.Tensor
    cone_max: torch.Tensor
    marker_k: torch.Tensor
    marker_j: torch.Tensor
    temporal_scale: torch.Tensor


@dataclass(frozen=True)
class _Basis:
    """The rest state folded through the regressor, affine in the blend coefficients c (C,):
    posed point k = sum_j R_g[j] @ P[k, j] + S[k, j] * b[j] (+ correctives), P = P0 + c . Pc,
    joints = J0 + c . Jc. P0 (K', Jf, 3), Pc (C, K', Jf, 3), J0 (Jf, 3), Jc (C, Jf, 3), S (K', Jf),
    Q (pose features, K', Jf, 3) or None."""

    P0: torch.Tensor
    Pc: torch.Tensor
    J0: torch.Tensor
    Jc: torch.Tensor
    S: torch.Tensor
    Q: torch.Tensor | None


@dataclass(frozen=True)
class _Rest:
    """Rest state for one shape: joints (Jf, 3), P (K', Jf, 3), S (K', Jf), Q as in :class:`_Basis`."""

    joints: torch.Tensor
    P: torch.Tensor
    S: torch.Tensor
    Q: torch.Tensor | None


def _reduce(model: SkinnedBodyModel, skeleton: str) -> _Reduced:
    free = list(model.free_joints)
    pos = {j: i for i, j in enumerate(free)}
    owner = np.zeros(model.num_joints, dtype=np.int64)
    for j in range(model.num_joints):
        a = j
        while a not in pos:
            a = int(model.parents[a])
        owner[j] = pos[a]
    parent_f = np.array([-1 if model.parents[j] < 0 else owner[model.parents[j]] for j in free])
    jf = len(free)
    anc = np.eye(jf)
    for j in range(jf):
        p = parent_f[j]
        while p >= 0:
            anc[j, p] = 1.0
            p = parent_f[p]
    reg = model.keypoint_regressor(skeleton)
    merged = np.zeros((model.num_vertices, jf))
    np.add.at(merged.T, owner, model.skinning_weights().T)
    sole_ids = _sole_vertices(model, merged, pos)
    ids = np.unique(np.concatenate([reg.vertex_ids, sole_ids]))
    col = {int(v): i for i, v in enumerate(ids)}
    K = len(reg.joint_names)
    mat = np.zeros((K + len(sole_ids), len(ids)))
    for n, v in enumerate(reg.vertex_ids):
        mat[:K, col[int(v)]] = reg.matrix[:, n]
    for r, v in enumerate(sole_ids):
        mat[K + r, col[int(v)]] = 1.0
    sem = {n: pos[j] for n, j in model.semantic_joints.items() if j in pos}
    limits, cones = _joint_limits(model, sem)
    marker_k = np.array([k for k, n in enumerate(reg.joint_names) if any(w in n for w in MARKER_WORDS)], dtype=np.int64)
    marker_j = np.array([int(np.argmax(mat[k] @ merged[ids])) for k in marker_k], dtype=np.int64)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=DT)  # noqa: E731
    return _Reduced(
        torch.as_tensor(free), tree_levels(parent_f), parent_f, t(anc.T), t(anc), torch.as_tensor(ids),
        t(merged[ids]), t(mat), sole_ids, sem,
        torch.as_tensor([sem[lim.joint] for lim in limits], dtype=torch.int64),
        t(np.array([lim.axis for lim in limits]).reshape(-1, 3)),
        t([lim.lo for lim in limits]), t([lim.hi for lim in limits]),
        torch.as_tensor([sem[n] for n in cones], dtype=torch.int64), t(list(cones.values())),
        torch.as_tensor(marker_k), torch.as_tensor(marker_j),
        t([POORLY_SEEN.get(n, 1.0) for n in _free_names(model, sem)]),
    )


POORLY_SEEN = {n: 3.0 for n in ("left_wrist", "right_wrist", "left_elbow", "right_elbow", "left_ankle", "right_ankle",
                                  "neck", "head")}
"""Factor on the temporal term of joints whose turn a detector's keypoints barely tell: a hand's (its
landmarks nearly on one line) and with it the forearm's twist, a foot's roll, the head's (its landmarks on
its front). The term penalises a rotation's change of speed, so a strong one holds these steady through
the keypoints' noise without holding back a smooth motion."""


def _free_names(model: SkinnedBodyModel, sem: dict[str, int]) -> list[str]:
    """The SMPL-24 name of each free joint (its position in ``sem``), "" where it has none."""
    names = [""] * len(model.free_joints)
    for name, position in sem.items():
        names[position] = name
    return names


MARKER_WORDS = ("nose", "eye", "ear", "mouth", "pinky", "index", "thumb", "heel", "toe", "hand", "finger")
"""Keypoint names containing one of these are surface landmarks (markers), not joints."""


@dataclass(frozen=True)
class _Limit:
    """One anatomical limit: the component of a joint's rotation vector along a rest-frame axis kept within
    [lo, hi] radians (lo = hi = 0: penalised wherever it is not 0)."""

    joint: str
    axis: np.ndarray
    lo: float
    hi: float


CONE_LIMITS = {"left_wrist": 1.4, "right_wrist": 1.4, "neck": 1.0, "head": 1.0}
"""Largest rotation (radians, about any axis) of joints whose orientation a detector's keypoints barely
tell: a hand (wrist, index, pinky and thumb keypoints lie nearly on one line) and the head (its keypoints
are on its front). A wrist bends about 80 degrees at most, a head turns about 60 over each of its two joints."""


def _joint_limits(model: SkinnedBodyModel, sem: dict[str, int]) -> tuple[list[_Limit], dict[str, float]]:
    """The anatomical limits (:class:`_Limit` per joint axis; axes in the model's axes, where local
    rotations apply, from the average body's rest skeleton) and the cones (:data:`CONE_LIMITS`) of the
    joints the model has.

    A knee is a hinge about the body's left-right axis: its rotation about the two axes across that one
    (about the shin, made square to it, and about the forward axis) is penalised, and it bends from
    straight (a little beyond) to 150 degrees, never backwards. A foot hardly turns about the shin, flexes
    up 43 and down 50 degrees and rolls 25 degrees either way; a thigh twists 40 degrees either way about
    its own axis. Without the ranges, a leg twisted half a turn with the knee bent backwards and the foot
    turned round fits a straight leg's keypoints as well as the right pose: the flip of a real take."""
    rest = model.semantic_rest_joints(model.default_shape())
    to_model = np.asarray(model.model_to_world_rest).T
    lateral, forward = to_model @ np.array([1.0, 0.0, 0.0]), to_model @ np.array([0.0, -1.0, 0.0])
    limits: list[_Limit] = []
    for side in ("left", "right"):
        hip, knee, ankle = f"{side}_hip", f"{side}_knee", f"{side}_ankle"
        if knee not in sem or ankle not in sem:
            continue
        shin = rest[ankle] - rest[knee]
        along = shin - (shin @ lateral) * lateral
        along /= np.linalg.norm(along)
        limits += [
            _Limit(knee, along, 0.0, 0.0), _Limit(knee, np.cross(along, lateral), 0.0, 0.0),
            _Limit(ankle, along, 0.0, 0.0), _Limit(knee, lateral, -0.1, 2.6),
            _Limit(ankle, lateral, -0.75, 0.9), _Limit(ankle, forward, -0.45, 0.45),
        ]
        if hip in sem:
            thigh = rest[knee] - rest[hip]
            limits.append(_Limit(hip, thigh / np.linalg.norm(thigh), -0.7, 0.7))
    cones = {n: c for n, c in CONE_LIMITS.items() if n in sem}
    return limits, cones


SOLE_POINTS = 3
"""Sole points per foot: heel, and the front of the sole at its two sides (three points hold a foot
still; two would let it roll about the line through them)."""


def _sole_vertices(model: SkinnedBodyModel, merged: np.ndarray, pos: dict[int, int]) -> np.ndarray:
    """(2 * SOLE_POINTS,) vertex ids: left heel, left front sole at -X and at +X, then the same on the
    right (among the lowest vertices of each foot: the back-most, and the side-most of the front half)."""
    rest = model.rest_mesh(model.default_shape())
    out = []
    for side in ("left", "right"):
        ankle = pos[model.semantic_joints[f"{side}_ankle"]]
        foot = np.flatnonzero(merged[:, ankle] > 0.5)
        low = foot[rest[foot, 2] < rest[foot, 2].min() + 0.012]
        front = low[rest[low, 1] < np.median(rest[low, 1])]  # facing -Y: the heel is at +Y
        out += [low[np.argmax(rest[low, 1])], front[np.argmin(rest[front, 0])], front[np.argmax(rest[front, 0])]]
    return np.array(out)


def _has_correctives(model: SkinnedBodyModel) -> bool:
    return type(model).pose_correctives_torch is not SkinnedBodyModel.pose_correctives_torch


def _basis(model: SkinnedBodyModel, red: _Reduced) -> _Basis:
    v0, vdirs, j0, jdirs = (x.to(DT) for x in model.blend_basis(red.vertex_ids))
    mw = red.kp_matrix[:, :, None] * red.weights[None]  # (K', N, Jf)
    Q = None
    if _has_correctives(model):
        dirs = model._posedirs[:, red.vertex_ids].to(DT)  # type: ignore[attr-defined]  # (P, N, 3)
        Q = torch.einsum("knj,pnd->pkjd", mw, dirs)
    return _Basis(
        torch.einsum("knj,nd->kjd", mw, v0), torch.einsum("knj,cnd->ckjd", mw, vdirs),
        j0[red.free], jdirs[:, red.free], mw.sum(1), Q,
    )


def _fit_setup(model: SkinnedBodyModel, skeleton: str) -> tuple[_Reduced, _Basis]:
    """The reduced skeleton and rest basis of ``model`` for ``skeleton``, cached on the model."""
    cache = model.__dict__.setdefault("_fit_setup_cache", {})
    if skeleton not in cache:
        with torch.no_grad():
            red = _reduce(model, skeleton)
            cache[skeleton] = (red, _basis(model, red))
    return cache[skeleton]


def _coefficients(model: SkinnedBodyModel, shape_free: torch.Tensor) -> torch.Tensor:
    """(C,) blend coefficients of the unconstrained shape variables (S,)."""
    return model.blend_coefficients(model.shape_from_free(shape_free.to(model.dtype))).to(DT)


def _rest(basis: _Basis, coeffs: torch.Tensor, red: _Reduced | None = None, offsets: torch.Tensor | None = None) -> _Rest:
    """The rest state for blend coefficients ``coeffs``; ``offsets`` (M, 3) move the markers of ``red``
    (each rigidly with its joint: added to its rest point in that joint's frame)."""
    P = basis.P0 + torch.einsum("c,ckjd->kjd", coeffs, basis.Pc)
    J = basis.J0 + torch.einsum("c,cjd->jd", coeffs, basis.Jc)
    if offsets is not None and red is not None and len(red.marker_k):
        P = P.index_put((red.marker_k, red.marker_j), offsets, accumulate=True)
    return _Rest(J, P, basis.S, basis.Q)


# ---------------------------------------------------------------------------------------------------
# posing, with analytic derivatives


@dataclass(frozen=True)
class _Posed:
    """pts (T, K', 3) keypoints then soles; rg (T, Jf, 3, 3) and tg (T, Jf, 3) global joint rotations
    and positions (no translation); contrib (T, K', Jf, 3) each joint's share of each point."""

    pts: torch.Tensor
    rg: torch.Tensor
    tg: torch.Tensor
    contrib: torch.Tensor


def _forward(model: SkinnedBodyModel, red: _Reduced, rest: _Rest, rot: torch.Tensor, trans: torch.Tensor) -> _Posed:
    """rot (T, Jf, 3, 3) local rotations, trans (T, 3) -> :class:`_Posed`."""
    rg, tg = forward_kinematics(rot, rest.joints, red.levels)
    b = tg - (rg @ rest.joints[..., None])[..., 0]
    contrib = torch.einsum("tjab,kjb->tkja", rg, rest.P) + rest.S[None, :, :, None] * b[:, None]
    if rest.Q is not None:
        full = torch.eye(3, dtype=DT).expand(rot.shape[0], model.num_joints, 3, 3).clone()
        full[:, red.free] = rot
        feat = pose_feature(full)  # (T, P)
        contrib = contrib + torch.einsum("tjab,tkjb->tkja", rg, torch.einsum("tp,pkjb->tkjb", feat, rest.Q))
    return _Posed(contrib.sum(2) + trans[:, None], rg, tg, contrib)


def _pose_jacobian(red: _Reduced, rest: _Rest, posed: _Posed) -> torch.Tensor:
    """(T, K', 3, Jf * 3 + 3): derivative of each posed point with respect to a rotation increment of each
    joint in its own frame (R_j <- R_j exp(d_j)) and to the translation (pose correctives held)."""
    T = posed.pts.shape[0]
    sub = torch.einsum("ji,tkia->tkja", red.desc, posed.contrib)
    sub_s = torch.einsum("ji,ki->kj", red.desc, rest.S)
    arm = sub - sub_s[None, :, :, None] * posed.tg[:, None]  # (T, K', Jf, 3) subtree's points about joint j
    axes = posed.rg.transpose(-1, -2)  # (T, Jf, m, 3): world direction of each increment axis
    jac = torch.linalg.cross(axes[:, None].expand(-1, arm.shape[1], -1, -1, -1), arm[:, :, :, None].expand(-1, -1, -1, 3, -1))
    jac = jac.permute(0, 1, 4, 2, 3).reshape(T, arm.shape[1], 3, -1)
    eye = torch.eye(3, dtype=DT).expand(T, arm.shape[1], 3, 3)
    return torch.cat([jac, eye], -1)


def _shape_jacobian(red: _Reduced, rest: _Rest, posed: _Posed, dP: torch.Tensor, dJ: torch.Tensor) -> torch.Tensor:
    """(T, K', 3, S): derivative of the posed points with respect to the shape variables, given the rest
    state's derivatives dP (S, K', Jf, 3) and dJ (S, Jf, 3). Posed points are linear in (P, joints) for
    fixed rotations."""
    rg = posed.rg
    par = torch.as_tensor(red.parent_f)
    off = dJ - torch.where((par >= 0)[None, :, None], dJ[:, par.clamp_min(0)], torch.zeros_like(dJ))
    rpar = torch.where((par >= 0)[None, :, None, None], rg[:, par.clamp_min(0)], torch.eye(3, dtype=DT))
    rot_off = torch.einsum("tjab,sjb->tsja", rpar, off)
    tg = torch.einsum("ji,tsia->tsja", red.anc, rot_off)
    b = tg - torch.einsum("tjab,sjb->tsja", rg, dJ)
    d = torch.einsum("tjab,skjb->tska", rg, dP) + torch.einsum("kj,tsja->tska", rest.S, b)
    return d.permute(0, 2, 3, 1)
