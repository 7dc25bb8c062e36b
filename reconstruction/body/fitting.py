"""Fit a body model to a take: one shape for the whole take, a pose and a translation per frame.

Input: :class:`~reconstruction.keypoints.Keypoints3D` (metres, Z-up world, floor at Z = 0), optionally
2D keypoints and the camera rig for reprojection terms. Output: :class:`BodyMotion`.

How (all on the CPU, in torch, float64):
1. Initialise analytically: the root orientation and translation from the hips and shoulders, then each
   hip, knee, shoulder and elbow from the direction of its bone (a swing that turns the model's bone onto
   the observed one).
2. Pose every frame with the average shape (robust Gauss-Newton, batched over frames), then fit the shape
   jointly with the poses of a subset of frames spread over the take (the shape eliminated by a Schur
   complement), robustly, with a shape prior that keeps weakly observed shape parameters near the mean.
   A detector's surface landmarks (eyes, ears, fingers, heels, toes: "markers") are not where the model's
   definitions put them on every body, so the global shape search scores shapes on the joints alone, and
   the shape is then refined on every keypoint with one offset per marker for the take (rigid with its
   bone, as marker placement is solved in optical mocap), whose prior is set from the offsets' own spread.
3. With the shape fixed: pose every frame against the raw keypoints, drop keypoints farther than
   ``outlier_sigmas`` from the fit, low-pass the remaining keypoints over time (zero-phase Butterworth),
   and pose every frame against them with the anatomical joint limits (a knee is a hinge, a foot hardly
   turns about the shin: keypoints barely see a shin's twist, which otherwise wanders and drags the heel
   and ankle with it) and a temporal term (each frame's rotations pulled towards the midpoint of its
   neighbours', solved red-black so neighbours cannot swap); a frame with a joint far from that midpoint
   (a foot flipped about the shin in one frame) is solved again from the midpoint and kept if better.
   The first passes run without the limits: from the analytic start a twist may have to pass them.
4. Foot contact: a sole point (heel and two front points of each foot) that is low and still is in
   contact (with hysteresis); each contact is anchored where the fit puts it on average, on the floor
   (Z = 0 plus the point's rest clearance) when it is within ``floor_tolerance_m`` of it, and a last pose
   pass pulls the soles to their anchors (weights ramped in and out, so no jerk at touch-down or
   lift-off).

Every per-frame pass is a Levenberg-Marquardt with analytic Jacobians (the derivative of a posed point with
respect to a joint's rotation is a cross product with the point's offset from the joint), batched over
frames in windows of ``window`` frames, so memory stays bounded on long takes.

Only the model's ``free_joints`` are posed; the other joints stay at rest relative to their parents, so
the fitting skeleton is the tree of free joints with the skinning weights of fixed joints merged into
their nearest free ancestor (exact for linear blend skinning). The rest state is affine in the model's
blend coefficients, so it is folded through the keypoint regressor once per model and skeleton
(:class:`_Basis`); a new shape then costs one small contraction.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from mocap_studio.common.rotations import rotvec_to_rotmat as np_rotvec_to_rotmat
from mocap_studio.reconstruction.body.lbs import TreeLevels, forward_kinematics, pose_feature, tree_levels
from mocap_studio.reconstruction.body.model import SkinnedBodyModel
from mocap_studio.reconstruction.body.torch_rotations import rotmat_to_rotvec as torch_rotmat_to_rotvec
from mocap_studio.reconstruction.body.torch_rotations import rotvec_to_rotmat, skew
from mocap_studio.reconstruction.filtering import runs
from mocap_studio.reconstruction.keypoints import Keypoints3D

if TYPE_CHECKING:
    from mocap_studio.calibration.camera import CameraRig
    from mocap_studio.reconstruction.keypoints import Keypoints2D

logger = logging.getLogger(__name__)
DT = torch.float64


@dataclass(frozen=True)
class FitConfig:
    """Settings of sequence fitting (the ``[fit]`` table of session.toml)."""

    model: str = "anny"
    """Body model: "anny" (open, default), "smpl", "smplh" or "smplx" (user's files)."""
    gender: str = "neutral"
    """Gender of the SMPL-family model file ("neutral", "female", "male")."""
    model_dir: str = ""
    """Folder of SMPL-family model files; empty means ``<repo>/.cache/body_models``."""
    num_betas: int = 10
    """Shape coefficients of SMPL-family models."""
    window: int = 500
    """Frames solved together in one batch of per-frame solves (bounds memory on long takes)."""
    shape_frames: int = 100
    """Frames (spread over the take) used to fit the shape."""
    shape_iterations: int = 12
    """Levenberg-Marquardt iterations of the shape stage."""
    shape_candidates: int = 1024
    """Candidate shapes (the average body and random ones) scored in each round of the shape search."""
    shape_starts: int = 4
    """Best candidates of each round of the shape search refined continuously."""
    shape_start_iterations: int = 3
    """Rounds of the shape search (each re-poses the frames with the shape found so far)."""
    marker_offset_sigma_m: float = 0.02
    """A detector's surface landmarks (eyes, ears, mouth, fingers, heels, toes) need not sit where the
    model's definitions put them: each gets one offset per take, rigidly attached to its bone and fitted
    with the shape (prior: this many metres), so that a systematic difference moves the landmark and not
    the body's shape. The shape search scores shapes on the joints alone for the same reason. 0: off
    (every keypoint is taken at the model's definition of it)."""
    marker_rounds: int = 1
    """Rounds of (the markers' prior from the spread of their offsets, then shape and offsets refined)."""
    shape_step_limit: float = 0.3
    """Largest change of an (unconstrained) shape variable in one shape iteration."""
    frame_iterations: int = 4
    """Levenberg-Marquardt iterations of each per-frame pass (the first and the last two do twice as many:
    a frame left short of convergence differs from its neighbours, which is jitter)."""
    outlier_sigmas: float = 5.0
    """Keypoints farther than this many ``keypoint_sigma_m`` from the fit are dropped before smoothing."""
    cutoff_hz: float = 6.0
    """Low-pass cut-off applied to the keypoints before the last passes (0: no smoothing)."""
    keypoint_sigma_m: float = 0.015
    """Expected keypoint noise in metres (scales the keypoint term)."""
    robust_scale: float = 4.0
    """Geman-McClure scale in units of ``keypoint_sigma_m``: residuals beyond it stop pulling."""
    error_scale_px: float = 4.0
    """A keypoint with this triangulation (reprojection) error gets half the weight of a perfect one."""
    pose_prior_weight: float = 0.02
    """Weight of the pose prior (local rotations near rest, per radian squared)."""
    joint_limit_weight: float = 50.0
    """Weight of the anatomical joint limits (per radian squared): a knee bends about one axis (its
    rotation about the other two is penalised) and a foot hardly turns about the shin. Keypoints see
    little of a shin's twist, so without it the twist wanders and drags the heel and ankle with it."""
    flip_rad: float = 0.5
    """A frame with a joint turned more than this from the midpoint of its neighbours' is solved again from
    that midpoint (and kept if better): a single-frame flip of a foot or forearm."""
    temporal_weight: float = 1.0
    """Weight of the temporal term of the last passes (per radian squared): each frame's local rotations
    are pulled towards the midpoint of its neighbours'. It holds what the keypoints hardly see (a bone's
    twist about its own axis) from flipping frame to frame; 0 turns it off."""
    shape_prior_weight: float = 1.0
    """Weight of the shape prior (keeps weakly observed shape parameters near the average body)."""
    contact: bool = True
    """Detect foot contacts and keep a still foot still and on the floor."""
    contact_sigma_m: float = 0.0005
    """How closely a sole point in contact is held to its anchor (metres)."""
    contact_speed_m_s: float = 0.15
    """A sole point slower than this (and low enough) is in contact."""
    contact_cutoff_hz: float = 3.0
    """Low-pass cut-off of the sole paths whose speed tells contact (0: raw paths)."""
    contact_height_m: float = 0.06
    """A sole point more than this above its rest clearance over the floor is not in contact."""
    contact_min_s: float = 0.1
    """Contacts shorter than this are ignored."""
    contact_ramp_s: float = 0.08
    """The contact term fades in and out over this long at each end of a contact."""
    floor_tolerance_m: float = 0.03
    """A contact whose sole lies within this of the floor (Z = 0) is put on the floor; otherwise it is
    held where it is (the floor is not where session.toml says)."""
    reprojection: bool = True
    """In ``mocap fit``: add the 2D keypoints of every calibrated camera (reprojection term) when the session
    has them; ``fit_sequence`` uses them whenever it is given a rig and 2D keypoints."""
    reprojection_weight: float = 1.0
    """Weight of the 2D reprojection term when 2D keypoints and cameras are given."""
    reprojection_sigma_px: float = 3.0
    """Expected 2D keypoint noise in pixels."""
    min_joints: int = 4
    """A frame needs this many valid keypoints to count as observed."""
    threads: int = 0
    """torch threads; 0 keeps torch's default."""

    def __post_init__(self) -> None:
        if self.window < 10:
            raise ValueError(f"window must be >= 10 frames, got {self.window}")
        if self.shape_frames < 1 or self.shape_iterations < 0 or self.frame_iterations < 1:
            raise ValueError("shape_frames and frame_iterations must be >= 1, shape_iterations >= 0")
        if self.keypoint_sigma_m <= 0 or self.contact_sigma_m <= 0 or self.reprojection_sigma_px <= 0:
            raise ValueError("keypoint_sigma_m, contact_sigma_m and reprojection_sigma_px must be > 0")


@dataclass(frozen=True)
class BodyMotion:
    """A fitted take.

    model: body model name; shape: (S,); pose_rotvec: (T, J, 3) local joint rotations; trans: (T, 3)
    metres; frame_rate: frames per second; frame_times: (T,) seconds; gender: for SMPL-family models;
    contact: (T, 2) bool, left and right foot in contact; figures: fit quality numbers.
    """

    model: str
    shape: np.ndarray
    pose_rotvec: np.ndarray
    trans: np.ndarray
    frame_rate: float
    frame_times: np.ndarray
    gender: str = "neutral"
    contact: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), bool))
    figures: dict = field(default_factory=dict)


class FitError(ValueError):
    """Input that cannot be fitted; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------------
# the fitting skeleton and its rest state


@dataclass(frozen=True)
class _Reduced:
    """The tree of free joints and what posing it needs.

    free: (Jf,) model joint index of each free joint; parent_f: (Jf,) parent position (-1: root);
    desc: (Jf, Jf) 1 where column i is row j or below it; anc: (Jf, Jf) 1 where column i is row j or above
    it; vertex_ids: (N,) vertices needed; weights: (N, Jf) merged skinning weights; kp_matrix: (K + P, N)
    the format's keypoints, then the P = 2 * SOLE_POINTS sole vertices (left foot, then right);
    sole_ids: (P,) those vertices; sem: SMPL-24 name -> free-joint position; limit_joint (L,) and
    limit_axis (L, 3): the joint-limit terms, each a free joint and a rest-frame axis its rotation about
    which is penalised (see :func:`_joint_limits`); marker_k (M,): the keypoints that are surface
    landmarks (:data:`MARKER_WORDS`), marker_j (M,): the free joint each one moves with most.
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
    marker_k: torch.Tensor
    marker_j: torch.Tensor


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
    limit_joint, limit_axis = _joint_limits(model, sem)
    marker_k = np.array([k for k, n in enumerate(reg.joint_names) if any(w in n for w in MARKER_WORDS)], dtype=np.int64)
    marker_j = np.array([int(np.argmax(mat[k] @ merged[ids])) for k in marker_k], dtype=np.int64)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=DT)  # noqa: E731
    return _Reduced(
        torch.as_tensor(free), tree_levels(parent_f), parent_f, t(anc.T), t(anc), torch.as_tensor(ids),
        t(merged[ids]), t(mat), sole_ids, sem, torch.as_tensor(limit_joint, dtype=torch.int64), t(limit_axis),
        torch.as_tensor(marker_k), torch.as_tensor(marker_j),
    )


MARKER_WORDS = ("nose", "eye", "ear", "mouth", "pinky", "index", "thumb", "heel", "toe", "hand", "finger")
"""Keypoint names containing one of these are surface landmarks (markers), not joints."""


def _joint_limits(model: SkinnedBodyModel, sem: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The anatomical limits as (free joint, rest-frame axis) pairs. A knee is a hinge about the body's
    left-right axis: its rotation about the two axes across that one (about the shin, made square to it,
    and about the forward axis) is penalised; a foot hardly turns about the shin (the same first axis).
    Axes are in the model's axes (where local rotations apply), from the average body's rest skeleton."""
    rest = model.semantic_rest_joints(model.default_shape())
    lateral = np.asarray(model.model_to_world_rest).T @ np.array([1.0, 0.0, 0.0])
    joints, axes = [], []
    for side in ("left", "right"):
        knee, ankle = f"{side}_knee", f"{side}_ankle"
        if knee not in sem or ankle not in sem:
            continue
        shin = rest[ankle] - rest[knee]
        along = shin - (shin @ lateral) * lateral
        along /= np.linalg.norm(along)
        joints += [sem[knee], sem[knee], sem[ankle]]
        axes += [along, np.cross(along, lateral), along]
    return np.array(joints, dtype=np.int64), np.array(axes, dtype=float).reshape(-1, 3)


def _log_jacobian(rv: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3): the derivative of log(R exp(d)) with respect to d at 0, for R = exp(rv) (..., 3) (the
    inverse right Jacobian of SO(3))."""
    theta = rv.norm(dim=-1, keepdim=True)[..., None]
    small = theta < 1e-4
    th = torch.where(small, torch.ones_like(theta), theta)
    coef = torch.where(small, torch.full_like(theta, 1.0 / 12.0), 1.0 / th**2 - (1 + torch.cos(th)) / (2 * th * torch.sin(th)))
    k = skew(rv)
    return torch.eye(3, dtype=rv.dtype) + 0.5 * k + coef * (k @ k)


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


def _without_markers(tg: _Targets, red: _Reduced) -> _Targets:
    """``tg`` with the markers' 3D and 2D weights set to 0 (the joints alone)."""
    keep = torch.ones(tg.weight.shape[1], dtype=DT)
    keep[red.marker_k] = 0.0
    return dataclasses.replace(tg, weight=tg.weight * keep, conf=None if tg.conf is None else tg.conf * keep)


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


# ---------------------------------------------------------------------------------------------------
# the per-frame least-squares problem


@dataclass
class _Targets:
    """Per-frame data of one batch of frames: target (T, K, 3) keypoints (0 where missing), weight (T, K),
    anchors (T, P, 3) and anchor weights (T, P) of the sole points (0: no contact term), optional 2D
    terms: proj (C, 3, 4), uv (C, T, K, 2), conf (C, T, K), the weight of the joint limits, and for the
    temporal term its weight and ``near`` (T, Jf, 3, 3), the rotations each frame is pulled towards (set
    per iteration)."""

    target: torch.Tensor
    weight: torch.Tensor
    anchor: torch.Tensor | None = None
    anchor_weight: torch.Tensor | None = None
    proj: torch.Tensor | None = None
    uv: torch.Tensor | None = None
    conf: torch.Tensor | None = None
    limits: float = 0.0
    temporal: float = 0.0
    near: torch.Tensor | None = None

    def rows(self, sl: slice) -> _Targets:
        return _Targets(
            self.target[sl], self.weight[sl],
            None if self.anchor is None else self.anchor[sl],
            None if self.anchor_weight is None else self.anchor_weight[sl],
            self.proj, None if self.uv is None else self.uv[:, sl], None if self.conf is None else self.conf[:, sl],
            self.limits, self.temporal, None if self.near is None else self.near[sl],
        )


def _neighbours(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's previous and next frame of x (T, ...), T >= 2; the one neighbour at either end."""
    return torch.cat([x[1:2], x[:-1]]), torch.cat([x[1:], x[-2:-1]])


def _neighbour_midpoints(rot: torch.Tensor) -> torch.Tensor:
    """(T, Jf, 3, 3) for rot (T, Jf, 3, 3): the rotation halfway between each frame's two neighbours (the
    one neighbour at either end of the batch; the frame itself when the batch is one frame)."""
    if rot.shape[0] < 2:
        return rot.clone()
    prev, nxt = _neighbours(rot)
    half = 0.5 * torch_rotmat_to_rotvec(prev.transpose(-1, -2) @ nxt)
    return prev @ rotvec_to_rotmat(half)


def _irls(sq: torch.Tensor, weight: torch.Tensor, c2: float) -> torch.Tensor:
    """Square roots of the Geman-McClure IRLS weights for squared residuals ``sq`` (sigma units)."""
    return torch.sqrt(weight * c2 * c2 / (sq + c2) ** 2)


def _residual_blocks(
    red: _Reduced, pts: torch.Tensor, rot: torch.Tensor, tg: _Targets, sw: torch.Tensor, sw2: torch.Tensor | None,
    cfg: FitConfig,
) -> list[torch.Tensor]:
    """Residuals per frame, as blocks (T, R_b): keypoints, sole anchors, 2D terms, the pose prior, the
    joint limits, the temporal term."""
    K = tg.target.shape[1]
    T = pts.shape[0]
    out = [((pts[:, :K] - tg.target) * (sw / cfg.keypoint_sigma_m)[..., None]).reshape(T, -1)]
    if tg.anchor is not None and tg.anchor_weight is not None:
        out.append(((pts[:, K:] - tg.anchor) * (tg.anchor_weight / cfg.contact_sigma_m)[..., None]).reshape(T, -1))
    if tg.proj is not None and sw2 is not None:
        uv = _project(tg.proj, pts[:, :K])[0]
        out.append(((uv - tg.uv) * (sw2 / cfg.reprojection_sigma_px)[..., None]).permute(1, 0, 2, 3).reshape(T, -1))
    rv = torch_rotmat_to_rotvec(rot)
    out.append(rv[:, 1:].reshape(T, -1) * math.sqrt(cfg.pose_prior_weight))
    if tg.limits > 0 and len(red.limit_joint):
        out.append((rv[:, red.limit_joint] * red.limit_axis).sum(-1) * math.sqrt(tg.limits))
    if tg.near is not None and tg.temporal > 0:
        out.append(torch_rotmat_to_rotvec(tg.near.transpose(-1, -2) @ rot).reshape(T, -1) * math.sqrt(tg.temporal))
    return out


def _project(proj: torch.Tensor, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """proj (C, 3, 4), pts (T, K, 3) -> pixels (C, T, K, 2) and their derivative (C, T, K, 2, 3)."""
    cam = torch.einsum("cij,tkj->ctki", proj[:, :, :3], pts) + proj[:, None, None, :, 3]
    z = cam[..., 2:].clamp_min(1e-6)
    uv = cam[..., :2] / z
    duv = (proj[:, None, None, :2, :3] - uv[..., None] * proj[:, None, None, 2:3, :3]) / z[..., None]
    return uv, duv


def _normal_equations(
    red: _Reduced, jp: torch.Tensor, pts: torch.Tensor, rot: torch.Tensor, tg: _Targets, sw: torch.Tensor,
    sw2: torch.Tensor | None, cfg: FitConfig, extra: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Gauss-Newton blocks per frame: H (T, n, n), g (T, n), and with ``extra`` (T, K', 3, S) (shape
    derivatives) also H_fs (T, n, S) and the per-frame H_ss (T, S, S) and g_s (T, S)."""
    K = tg.target.shape[1]
    T, n = jp.shape[0], jp.shape[-1]
    full = jp if extra is None else torch.cat([jp, extra], -1)
    blocks = _residual_blocks(red, pts, rot, tg, sw, sw2, cfg)
    jacs = [(full[:, :K] * (sw / cfg.keypoint_sigma_m)[..., None, None]).reshape(T, K * 3, -1)]
    if tg.anchor is not None and tg.anchor_weight is not None:
        jacs.append((full[:, K:] * (tg.anchor_weight / cfg.contact_sigma_m)[..., None, None]).reshape(T, -1, full.shape[-1]))
    if tg.proj is not None and sw2 is not None:
        duv = _project(tg.proj, pts[:, :K])[1]  # (C, T, K, 2, 3)
        j2 = torch.einsum("ctkab,tkbn->ctkan", duv, full[:, :K]) * (sw2 / cfg.reprojection_sigma_px)[..., None, None]
        jacs.append(j2.permute(1, 0, 2, 3, 4).reshape(T, -1, full.shape[-1]))
    m = (rot.shape[1] - 1) * 3
    prior = torch.zeros(m, full.shape[-1], dtype=DT)
    prior[:, 3 : 3 + m] = math.sqrt(cfg.pose_prior_weight) * torch.eye(m, dtype=DT)
    jacs.append(prior.expand(T, m, -1))
    if tg.limits > 0 and len(red.limit_joint):
        L = len(red.limit_joint)
        rv = torch_rotmat_to_rotvec(rot[:, red.limit_joint])  # (T, L, 3)
        rows = torch.einsum("la,tlab->tlb", red.limit_axis, _log_jacobian(rv)) * math.sqrt(tg.limits)
        lim = torch.zeros(T, L, full.shape[-1], dtype=DT)
        lim[:, torch.arange(L)[:, None], 3 * red.limit_joint[:, None] + torch.arange(3)] = rows
        jacs.append(lim)
    if tg.near is not None and tg.temporal > 0:  # d log(near^T R exp(step)) / d step ~ identity
        near_j = torch.zeros(m + 3, full.shape[-1], dtype=DT)
        near_j[:, : m + 3] = math.sqrt(tg.temporal) * torch.eye(m + 3, dtype=DT)
        jacs.append(near_j.expand(T, m + 3, -1))
    jm = torch.cat(jacs, 1)  # (T, R, n [+ S])
    r = torch.cat(blocks, 1)  # (T, R)
    H = jm.transpose(1, 2) @ jm
    g = (jm.transpose(1, 2) @ r[..., None])[..., 0]
    if extra is None:
        return H, g, None, None
    return H[:, :n, :n], g[:, :n], H[:, :n, n:], torch.cat([H[:, n:, n:].reshape(T, -1), g[:, n:]], 1)


def _cost(
    red: _Reduced, pts: torch.Tensor, rot: torch.Tensor, tg: _Targets, sw: torch.Tensor, sw2: torch.Tensor | None, cfg: FitConfig
) -> torch.Tensor:
    """(T,) sum of squared residuals per frame."""
    return sum((b**2).sum(1) for b in _residual_blocks(red, pts, rot, tg, sw, sw2, cfg))  # type: ignore[return-value]


def _robust_cost(red: _Reduced, pts: torch.Tensor, rot: torch.Tensor, tg: _Targets, cfg: FitConfig) -> torch.Tensor:
    """(T,) the robust cost per frame: Geman-McClure on the keypoint and 2D terms (scale
    ``robust_scale``), the squares of the other terms."""
    c2 = cfg.robust_scale**2
    K = tg.target.shape[1]
    sq = ((pts[:, :K] - tg.target) ** 2).sum(-1) / cfg.keypoint_sigma_m**2
    cost = (tg.weight * c2 * sq / (sq + c2)).sum(1)
    zero2 = None
    if tg.proj is not None and tg.uv is not None and tg.conf is not None:
        uv = _project(tg.proj, pts[:, :K])[0]
        sq2 = ((uv - tg.uv) ** 2).sum(-1) / cfg.reprojection_sigma_px**2
        cost = cost + (tg.conf * cfg.reprojection_weight * c2 * sq2 / (sq2 + c2)).sum((0, 2))
        zero2 = torch.zeros_like(tg.conf)
    return cost + _cost(red, pts, rot, tg, torch.zeros_like(tg.weight), zero2, cfg)


def _robust_weights(pts: torch.Tensor, tg: _Targets, c2: float, cfg: FitConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    K = tg.target.shape[1]
    sq = ((pts[:, :K] - tg.target) ** 2).sum(-1) / cfg.keypoint_sigma_m**2
    sw = _irls(sq, tg.weight, c2)
    sw2 = None
    if tg.proj is not None and tg.uv is not None and tg.conf is not None:
        uv = _project(tg.proj, pts[:, :K])[0]
        sq2 = ((uv - tg.uv) ** 2).sum(-1) / cfg.reprojection_sigma_px**2
        sw2 = _irls(sq2, tg.conf * cfg.reprojection_weight, c2)
    return sw, sw2


def _increment(rot: torch.Tensor, trans: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    jf = rot.shape[1]
    return rot @ rotvec_to_rotmat(step[:, : jf * 3].reshape(-1, jf, 3)), trans + step[:, jf * 3 :]


def _gnc(it: int, cfg: FitConfig, start: float = 8.0) -> float:
    """Graduated non-convexity: nearly quadratic at first (the start may be far off), then robust."""
    return max(cfg.robust_scale, start * 0.5**it) ** 2


def _lm_step(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, rot: torch.Tensor, trans: torch.Tensor, tg: _Targets,
    cfg: FitConfig, lam: torch.Tensor, c2: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One robust Levenberg-Marquardt iteration of each frame: rot (T, Jf, 3, 3), trans (T, 3), lam (T,)."""
    n = rot.shape[1] * 3 + 3
    eye = torch.eye(n, dtype=DT)
    posed = _forward(model, red, rest, rot, trans)
    sw, sw2 = _robust_weights(posed.pts, tg, c2, cfg)
    H, g, _, _ = _normal_equations(red, _pose_jacobian(red, rest, posed), posed.pts, rot, tg, sw, sw2, cfg)
    base = _cost(red, posed.pts, rot, tg, sw, sw2, cfg)
    diag = torch.diagonal(H, dim1=1, dim2=2)[..., None] * eye + 1e-9 * eye
    for _try in range(3):
        step = -torch.linalg.solve(H + lam[:, None, None] * diag, g)
        r_try, t_try = _increment(rot, trans, step)
        better = _cost(red, _forward(model, red, rest, r_try, t_try).pts, r_try, tg, sw, sw2, cfg) < base
        rot = torch.where(better[:, None, None, None], r_try, rot)
        trans = torch.where(better[:, None], t_try, trans)
        lam = torch.where(better, lam * 0.2, lam * 10).clamp(1e-9, 1e9)
        if bool(better.all()):
            break
    return rot, trans, lam


def _solve_frames(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, rot: torch.Tensor, trans: torch.Tensor, tg: _Targets,
    cfg: FitConfig, iterations: int, gnc_start: float = 32.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust Levenberg-Marquardt per frame, batched: rot (T, Jf, 3, 3), trans (T, 3) -> refined.

    With the temporal term each iteration is two half-steps (red-black Gauss-Seidel): the even frames move
    with the odd ones held, then the odd frames with the even ones held, each pulled towards its
    neighbours as they are then. Moving all frames at once towards their neighbours' old rotations would
    let neighbouring frames swap places and oscillate."""
    T = rot.shape[0]
    lam = torch.full((T,), 1e-3, dtype=DT)
    if tg.temporal <= 0 or T < 2:
        for it in range(iterations):
            c2 = _gnc(it, cfg, gnc_start)
            rot, trans, lam = _lm_step(model, red, rest, rot, trans, tg, cfg, lam, c2)
        return rot, trans
    rot, trans = rot.clone(), trans.clone()
    halves = [torch.arange(p, T, 2) for p in (0, 1)]
    for it in range(iterations):
        for idx in halves:
            sub = dataclasses.replace(tg.rows(idx), near=_neighbour_midpoints(rot)[idx])  # type: ignore[arg-type]
            c2 = _gnc(it, cfg, gnc_start)
            rot[idx], trans[idx], lam[idx] = _lm_step(model, red, rest, rot[idx], trans[idx], sub, cfg, lam[idx], c2)
    return _repair_flips(model, red, rest, rot, trans, tg, cfg, iterations)


def _repair_flips(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, rot: torch.Tensor, trans: torch.Tensor, tg: _Targets,
    cfg: FitConfig, iterations: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A frame with a joint turned far from the midpoint of its neighbours' (``flip_rad``: a foot or a
    forearm flipped about its bone, where the keypoints barely tell the two apart) is solved again from
    that midpoint, and the new pose kept where it costs less (keypoints, limits and the temporal term)."""
    near = _neighbour_midpoints(rot)
    dev = torch_rotmat_to_rotvec(near.transpose(-1, -2) @ rot).norm(dim=-1).amax(1)
    idx = torch.nonzero(dev > cfg.flip_rad)[:, 0]
    if len(idx) == 0:
        return rot, trans
    tg_i = dataclasses.replace(tg.rows(idx), near=near[idx])  # type: ignore[arg-type]
    r_c, t_c = near[idx].clone(), (0.5 * sum(_neighbours(trans)))[idx]
    lam = torch.full((len(idx),), 1e-3, dtype=DT)
    for _it in range(iterations):
        r_c, t_c, lam = _lm_step(model, red, rest, r_c, t_c, tg_i, cfg, lam, cfg.robust_scale**2)
    posed_old = _forward(model, red, rest, rot[idx], trans[idx])
    posed_new = _forward(model, red, rest, r_c, t_c)
    # the robust cost itself (Geman-McClure) is compared, not the IRLS-weighted squares
    old = _robust_cost(red, posed_old.pts, rot[idx], tg_i, cfg)
    new = _robust_cost(red, posed_new.pts, r_c, tg_i, cfg)
    better = new < old
    logger.debug("flip repair: %d frames tried, %d kept", len(idx), int(better.sum()))
    rot[idx] = torch.where(better[:, None, None, None], r_c, rot[idx])
    trans[idx] = torch.where(better[:, None], t_c, trans[idx])
    return rot, trans


def _solve_shape(
    model: SkinnedBodyModel, red: _Reduced, basis: _Basis, shape_free: torch.Tensor, rot: torch.Tensor,
    trans: torch.Tensor, tg: _Targets, cfg: FitConfig, offsets: torch.Tensor | None = None, marker_sigma: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Shape (and with ``offsets`` (M, 3) the markers' offsets, prior ``marker_sigma`` metres) and the
    poses of a subset of frames together by Levenberg-Marquardt; the shared variables are eliminated by a
    Schur complement (the normal equations are block-diagonal in the frames plus one shared block).
    shape_free (S,) unconstrained, rot (T, Jf, 3, 3), trans (T, 3). Returns shape, offsets, rot, trans."""
    from torch.func import hessian, jacfwd

    n = rot.shape[1] * 3 + 3
    S = shape_free.shape[0]
    M = 0 if offsets is None else offsets.shape[0]
    X = S + 3 * M
    eye_n, eye_x = torch.eye(n, dtype=DT), torch.eye(X, dtype=DT)
    x = torch.cat([shape_free.to(DT), torch.zeros(0, dtype=DT) if offsets is None else offsets.reshape(-1).to(DT)])
    w_prior = cfg.shape_prior_weight
    K2 = basis.P0.shape[0]
    Jf = basis.P0.shape[1]
    dP_off = torch.zeros(3 * M, K2, Jf, 3, dtype=DT)  # each offset coordinate moves one marker's rest point
    if M:
        dP_off[
            torch.arange(3 * M), red.marker_k.repeat_interleave(3), red.marker_j.repeat_interleave(3), torch.arange(3).repeat(M)
        ] = 1.0

    def split(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return v[:S], (v[S:].reshape(M, 3) if M else None)

    def prior(v: torch.Tensor) -> torch.Tensor:
        sf, off = split(v)
        out = w_prior * model.shape_prior(model.shape_from_free(sf.to(model.dtype))).to(DT)
        if off is not None:
            out = out + 0.5 * (off**2).sum() / marker_sigma**2
        return out

    def rest_of(v: torch.Tensor) -> _Rest:
        sf, off = split(v)
        return _rest(basis, _coefficients(model, sf), red, off)

    def total(r: torch.Tensor, t: torch.Tensor, v: torch.Tensor, sw: torch.Tensor, sw2: torch.Tensor | None) -> float:
        pts = _forward(model, red, rest_of(v), r, t).pts
        return float(_cost(red, pts, r, tg, sw, sw2, cfg).sum() + 2 * prior(v))

    lam = 1e-3
    for it in range(cfg.shape_iterations):
        dcoeff = jacfwd(lambda sf: _coefficients(model, sf))(x[:S])  # (C, S)
        rest = rest_of(x)
        dP = torch.cat([torch.einsum("cs,ckjd->skjd", dcoeff, basis.Pc), dP_off])
        dJ = torch.cat([torch.einsum("cs,cjd->sjd", dcoeff, basis.Jc), torch.zeros(3 * M, Jf, 3, dtype=DT)])
        posed = _forward(model, red, rest, rot, trans)
        sw, sw2 = _robust_weights(posed.pts, tg, _gnc(it, cfg), cfg)
        jp = _pose_jacobian(red, rest, posed)
        js = _shape_jacobian(red, rest, posed, dP, dJ)
        h_ff, g_f, h_fs, rest_s = _normal_equations(red, jp, posed.pts, rot, tg, sw, sw2, cfg, js)
        h_ss = rest_s[:, : X * X].reshape(-1, X, X).sum(0) + hessian(prior)(x)
        g_s = rest_s[:, X * X :].sum(0) + jacfwd(prior)(x)
        base = total(rot, trans, x, sw, sw2)
        for _try in range(5):
            a_ff = h_ff + lam * (torch.diagonal(h_ff, dim1=1, dim2=2)[..., None] * eye_n + 1e-9 * eye_n)
            inv_g = torch.linalg.solve(a_ff, g_f)
            inv_fs = torch.linalg.solve(a_ff, h_fs)
            schur = h_ss + lam * (torch.diag(torch.diagonal(h_ss)) + 1e-9 * eye_x)
            schur = schur - (h_fs.transpose(1, 2) @ inv_fs).sum(0)
            rhs = g_s - (h_fs.transpose(1, 2) @ inv_g[..., None])[..., 0].sum(0)
            dx = -torch.linalg.solve(schur, rhs)
            big = float(dx[:S].abs().max())
            if big > cfg.shape_step_limit:  # a trust region: weakly observed directions can jump to the bounds
                dx = dx * (cfg.shape_step_limit / big)
            dp = -(inv_g + (inv_fs @ dx[:, None])[..., 0])
            r_try, t_try = _increment(rot, trans, dp)
            new = total(r_try, t_try, x + dx, sw, sw2)
            logger.debug("shape it %d try %d: cost %.4g -> %.4g, lam %.1e, |ds| %.3f", it, _try, base, new, lam, big)
            if new < base:
                rot, trans, x, lam = r_try, t_try, x + dx, max(lam * 0.2, 1e-9)
                break
            lam = min(lam * 10, 1e9)
    sf, off = split(x)
    return sf, off, rot, trans


def _shape_surrogate(
    model: SkinnedBodyModel, red: _Reduced, basis: _Basis, sfree: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor,
    tg: _Targets, cfg: FitConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A quadratic model of the robust keypoint cost in the blend coefficients c (C,) around the shape
    ``sfree`` (S,), with each frame's pose eliminated (Schur complement of the Gauss-Newton system):
    cost(c0 + d) - cost(c0) ~ 2 g.d + d.H.d. The posed points are linear in c for fixed rotations, so
    the model is exact in the shape and linearised only in the poses. Returns c0 (C,), g (C,), H (C, C)."""
    c0 = _coefficients(model, sfree)
    rest = _rest(basis, c0)
    posed = _forward(model, red, rest, rot, trans)
    sw, sw2 = _robust_weights(posed.pts, tg, cfg.robust_scale**2, cfg)
    jc = _shape_jacobian(red, rest, posed, basis.Pc, basis.Jc)
    h_ff, g_f, h_fc, rest_c = _normal_equations(red, _pose_jacobian(red, rest, posed), posed.pts, rot, tg, sw, sw2, cfg, jc)
    C = c0.shape[0]
    n = h_ff.shape[-1]
    a_ff = h_ff + 1e-6 * torch.eye(n, dtype=DT)
    inv_fc = torch.linalg.solve(a_ff, h_fc)  # type: ignore[arg-type]
    inv_g = torch.linalg.solve(a_ff, g_f)
    assert h_fc is not None and rest_c is not None
    H = (rest_c[:, : C * C].reshape(-1, C, C) - h_fc.transpose(1, 2) @ inv_fc).sum(0)
    g = (rest_c[:, C * C :] - (h_fc.transpose(1, 2) @ inv_g[..., None])[..., 0]).sum(0)
    return c0, g, H


def _compass_search(
    objective: Callable[[torch.Tensor], torch.Tensor], starts: torch.Tensor, step: float = 0.2, tol: float = 0.005
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise a batched objective ((N, S) -> (N,)) from each of the starts (B, S) by compass search: try
    a step up and down each coordinate, move to the best if it improves, else halve the step. Needs no
    derivatives, so kinks do not stall it. Returns the minima (B, S) and their values (B,)."""
    x = starts.clone()
    val = objective(x)
    B, S = x.shape
    steps = torch.full((B,), step, dtype=x.dtype)
    dirs = torch.cat([torch.eye(S, dtype=x.dtype), -torch.eye(S, dtype=x.dtype)])  # (2S, S)
    while bool((steps > tol).any()):
        trial = x[:, None] + steps[:, None, None] * dirs[None]  # (B, 2S, S)
        tv = objective(trial.reshape(-1, S)).reshape(B, 2 * S)
        i = torch.argmin(tv, 1)
        better = tv[torch.arange(B), i] < val
        x = torch.where(better[:, None], trial[torch.arange(B), i], x)
        val = torch.where(better, tv[torch.arange(B), i], val)
        steps = torch.where(better | (steps <= tol), steps, steps / 2)
    return x, val


def _shape_search(
    model: SkinnedBodyModel, red: _Reduced, basis: _Basis, rot: torch.Tensor, trans: torch.Tensor, tg: _Targets,
    cfg: FitConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A global search of the shape: rounds of (pose the frames with the current shape; build the quadratic
    cost model of :func:`_shape_surrogate`; score candidate shapes on it (the first round: many, later
    rounds: the shape so far); refine the best few on it by compass search; keep the best).

    A body model's blend coefficients may be piecewise in its shape parameters (Anny's phenotypes
    interpolate between anchor bodies), and different parameters trade off (Anny's muscle against
    weight), so a descent from one start stalls at a kink or in the wrong valley; scoring thousands of
    shapes on the surrogate costs a few matrix products. rot (T, Jf, 3, 3), trans (T, 3) of the frames of
    ``tg``. Returns the unconstrained shape (S,) and the frames' rot and trans.
    """
    rng = np.random.default_rng(0)
    cands = np.stack([model.default_shape()] + [model.random_shape(rng, 1.5) for _ in range(cfg.shape_candidates - 1)])
    pool = torch.as_tensor(model.free_from_shape(cands), dtype=DT)
    sfree = pool[0]
    for round_ in range(cfg.shape_start_iterations):
        rest = _rest(basis, _coefficients(model, sfree))
        rot, trans = _solve_frames(model, red, rest, rot, trans, tg, cfg, cfg.frame_iterations, cfg.robust_scale)
        c0, g, H = _shape_surrogate(model, red, basis, sfree, rot, trans, tg, cfg)

        def objective(free: torch.Tensor, c0: torch.Tensor = c0, g: torch.Tensor = g, H: torch.Tensor = H) -> torch.Tensor:
            shapes = model.shape_from_free(free.to(model.dtype))
            d = model.blend_coefficients(shapes).to(DT) - c0
            prior = model.shape_prior(shapes).to(DT)
            return 2 * d @ g + ((d @ H) * d).sum(-1) + 2 * cfg.shape_prior_weight * prior

        starts = torch.cat([pool, sfree[None]]) if round_ == 0 else sfree[None]
        scores = objective(starts)
        best, vals = _compass_search(objective, starts[torch.argsort(scores)[: cfg.shape_starts]])
        sfree = best[int(torch.argmin(vals))]
        logger.debug(
            "shape search round %d: %s (model cost change %.4g, from %.4g at the best start)",
            round_, np.round(model.shape_from_free(sfree.to(model.dtype)).numpy(), 3), float(vals.min()), float(scores.min()),
        )
    return sfree, rot, trans


# ---------------------------------------------------------------------------------------------------
# input checks


def _check_input(model: SkinnedBodyModel, kp: Keypoints3D, cfg: FitConfig) -> tuple[np.ndarray, np.ndarray]:
    """Targets (T, K, 3) with missing points set to 0 and weights (T, K) (0: missing); raises FitError on
    unusable input."""
    reg = model.keypoint_regressor(kp.skeleton)
    if reg.supported.sum() < 8 or reg.supported.mean() < 0.8:
        raise FitError(
            f"skeleton {kp.skeleton!r}: the {model.name} model defines only {int(reg.supported.sum())} of its "
            "joints; fit needs a detector skeleton such as blazepose33, coco17 or halpe26"
        )
    for side in ("left", "right"):
        for j in ("hip", "shoulder"):
            if f"{side}_{j}" not in reg.joint_names:
                raise FitError(f"skeleton {kp.skeleton!r} has no {side}_{j}; fit needs hips and shoulders")
    xyz = np.asarray(kp.xyz, dtype=float)
    valid = np.isfinite(xyz).all(-1) & reg.supported[None]
    err = np.nan_to_num(np.asarray(kp.error, dtype=float), nan=0.0, posinf=1e6)
    w = valid / (1.0 + (err / cfg.error_scale_px) ** 2)
    observed = valid.sum(1) >= cfg.min_joints
    if not observed.any():
        raise FitError(
            f"no frame of the take has {cfg.min_joints} or more valid keypoints (of {kp.num_frames} frames); "
            "check triangulation (keypoints3d.npz is all NaN or nearly so)"
        )
    w[~observed] = 0.0
    return np.where(valid[..., None], xyz, 0.0), w


def _drop_temporal_outliers(target: np.ndarray, weight: np.ndarray, fps: float, cfg: FitConfig) -> np.ndarray:
    """Weights (T, K) with 0 for keypoints farther than ``outlier_sigmas`` keypoint sigmas from their
    running median over about 0.1 s (isolated gross errors, before any fitting can be pulled by them).

    target (T, K, 3), weight (T, K) (0: missing)."""
    from scipy.ndimage import median_filter

    if len(target) < 5:
        return weight
    width = max(5, int(round(fps / 10)) | 1)
    xyz = _fill_nan(np.where(weight[..., None] > 0, target, np.nan))
    med = median_filter(np.nan_to_num(xyz), size=(width, 1, 1), mode="nearest")
    far = np.linalg.norm(target - med, axis=-1) > cfg.outlier_sigmas * cfg.keypoint_sigma_m
    return np.where(far, 0.0, weight)


def _fill_nan(xyz: np.ndarray) -> np.ndarray:
    """(T, K, 3) -> the same with NaN runs linearly interpolated over time (held at the ends)."""
    out = xyz.copy()
    t = np.arange(len(xyz))
    for k in range(xyz.shape[1]):
        ok = np.isfinite(xyz[:, k]).all(-1)
        if ok.sum() == 0 or ok.all():
            continue
        for d in range(3):
            out[:, k, d] = np.interp(t, t[ok], xyz[ok, k, d])
    return out


def lowpass(xyz: np.ndarray, fps: float, cutoff_hz: float) -> np.ndarray:
    """(T, K, 3) with NaN -> gaps filled by linear interpolation, then the zero-phase Butterworth low-pass of
    reconstruction.filtering (the reference filter of the jitter figures). Joints never seen stay 0."""
    from mocap_studio.reconstruction.filtering import butterworth

    filled = np.nan_to_num(_fill_nan(np.asarray(xyz, dtype=float)), nan=0.0)
    if len(xyz) < 16 or cutoff_hz <= 0 or cutoff_hz >= fps / 2:
        return filled
    return np.ascontiguousarray(butterworth(filled, fps, cutoff_hz, order=4))


def _frame_rate(times: np.ndarray) -> float:
    d = np.diff(np.asarray(times, dtype=float))
    d = d[np.isfinite(d) & (d > 0)]
    if d.size == 0:
        raise FitError("cannot tell the frame rate from the keypoints' frame times; pass frame_rate")
    return float(1.0 / np.median(d))


# ---------------------------------------------------------------------------------------------------
# foot contact


def detect_contacts(soles: np.ndarray, clearance: np.ndarray, fps: float, cfg: FitConfig) -> np.ndarray:
    """(T, P) bool: sole point p is low (within ``contact_height_m`` of its rest clearance over the floor)
    and still (slower than ``contact_speed_m_s``, measured on its path low-passed at
    ``contact_cutoff_hz``, as a fit's sole wobbles with the keypoint noise) for at least ``contact_min_s``;
    once still, a contact lasts while the point stays low and slower than twice that (hysteresis, so
    that a wobble of the fit does not break a contact in two).

    soles: (T, P, 3) fitted sole points (metres); clearance: (P,) their heights above the floor at rest.
    """
    if soles.ndim != 3 or soles.shape[2] != 3 or clearance.shape != (soles.shape[1],):
        raise ValueError(f"soles must be (T, P, 3) and clearance (P,), got {soles.shape} and {clearance.shape}")
    T = len(soles)
    out = np.zeros(soles.shape[:2], dtype=bool)
    if T < 3:
        return out
    k = max(1, int(round(fps / 30)))
    speed = np.zeros(soles.shape[:2])
    path = lowpass(soles, fps, cfg.contact_cutoff_hz)
    if T > 2 * k:
        speed[k:-k] = np.linalg.norm(path[2 * k :] - path[: -2 * k], axis=-1) * fps / (2 * k)
        speed[:k], speed[-k:] = speed[k], speed[-k - 1]
    low = soles[..., 2] - clearance < cfg.contact_height_m
    still = low & (speed < cfg.contact_speed_m_s)
    held = low & (speed < 2 * cfg.contact_speed_m_s)
    shortest = max(2, int(round(cfg.contact_min_s * fps)))
    for p in range(still.shape[1]):
        for a, b in runs(held[:, p]):  # hysteresis: a contact starts still and lasts while nearly still
            out[a:b, p] = b - a >= shortest and bool(still[a:b, p].any())
    return out


def contact_anchors(
    soles: np.ndarray, clearance: np.ndarray, contact: np.ndarray, fps: float, cfg: FitConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Where each sole point in contact is held: anchors (T, P, 3) and weights (T, P) in [0, 1].

    A contact's anchor is the point's median position over the contact; its height is the point's rest
    clearance (on the floor) when within ``floor_tolerance_m`` of it. Weights ramp in and out over
    ``contact_ramp_s``.
    """
    anchors = np.zeros(soles.shape)
    weights = np.zeros(contact.shape)
    ramp = max(1, int(round(cfg.contact_ramp_s * fps)))
    for p in range(contact.shape[1]):
        for a, b in runs(contact[:, p]):
            pos = np.median(soles[a:b, p], axis=0)
            if abs(pos[2] - clearance[p]) < cfg.floor_tolerance_m:
                pos[2] = clearance[p]
            anchors[a:b, p] = pos
            r = min(ramp, (b - a) // 2)
            w = np.ones(b - a)
            if r > 0:  # no ramp where the contact runs past the take's first or last frame
                up = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, r + 1) / (r + 1))
                if a > 0:
                    w[:r] = up
                if b < len(contact):
                    w[len(w) - r :] = up[::-1]
            weights[a:b, p] = w
    return anchors, weights


def foot_sliding_mm_s(points: np.ndarray, contact: np.ndarray, fps: float) -> float:
    """Foot sliding: the mean horizontal speed (mm/s) of points (T, P, 3) over the frames where they are
    in contact (T, P) bool (both ends of a frame step in contact); 0 without contact."""
    if points.ndim != 3 or points.shape[2] != 3 or contact.shape != points.shape[:2]:
        raise ValueError(f"points must be (T, P, 3) and contact (T, P), got {points.shape} and {contact.shape}")
    both = contact[1:] & contact[:-1]
    if not both.any():
        return 0.0
    step = np.linalg.norm(points[1:, :, :2] - points[:-1, :, :2], axis=-1)
    return float(step[both].sum() * 1000.0 / (both.sum() / fps))


# ---------------------------------------------------------------------------------------------------
# initialisation


def _torso_frame(lh: np.ndarray, rh: np.ndarray, ls: np.ndarray, rs: np.ndarray) -> np.ndarray:
    """(..., 3, 3) columns: subject's left, back (so that left x back = up), up."""
    x = lh - rh
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    up = 0.5 * (ls + rs) - 0.5 * (lh + rh)
    z = up - (up * x).sum(-1, keepdims=True) * x
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    y = np.cross(z, x)
    return np.stack([x, y, z], -1)


def _unwrap_rotvec(r: np.ndarray) -> np.ndarray:
    """(T, 3) rotation vectors made continuous over time (equivalent representations picked)."""
    out = r.copy()
    for t in range(1, len(out)):
        ang = np.linalg.norm(out[t])
        if ang < 1e-9:
            continue
        axis = out[t] / ang
        cands = axis[None] * (ang + np.array([0.0, -2 * np.pi, 2 * np.pi]))[:, None]
        out[t] = cands[np.argmin(np.linalg.norm(cands - out[t - 1], axis=1))]
    return out


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3, 3) the smallest rotations turning directions a (..., 3) onto b (..., 3)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    v = np.cross(a, b)
    s = np.linalg.norm(v, axis=-1)
    ang = np.arctan2(s, (a * b).sum(-1))
    return np_rotvec_to_rotmat(v / np.maximum(s, 1e-12)[..., None] * ang[..., None])


_BONE_INIT = (  # (semantic joint, keypoint at the joint, keypoint at the bone's end)
    ("left_hip", "left_hip", "left_knee"), ("right_hip", "right_hip", "right_knee"),
    ("left_knee", "left_knee", "left_ankle"), ("right_knee", "right_knee", "right_ankle"),
    ("left_shoulder", "left_shoulder", "left_elbow"), ("right_shoulder", "right_shoulder", "right_elbow"),
    ("left_elbow", "left_elbow", "left_wrist"), ("right_elbow", "right_elbow", "right_wrist"),
    ("left_ankle", "left_heel", "left_foot_index"), ("right_ankle", "right_heel", "right_foot_index"),
    ("left_ankle", "left_heel", "left_big_toe"), ("right_ankle", "right_heel", "right_big_toe"),
    ("left_wrist", "left_wrist", "left_index"), ("right_wrist", "right_wrist", "right_index"),
)


def initialise(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, xyz: np.ndarray, names: tuple[str, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Analytic local rotations (T, Jf, 3, 3) and translation (T, 3) from keypoints (T, K, 3) (NaN
    allowed): the torso from the hips and shoulders, then each limb bone turned onto its observed
    direction."""
    T = len(xyz)
    obs = _fill_nan(xyz)
    idx = {n: i for i, n in enumerate(names)}
    jf = len(red.free)
    with torch.no_grad():
        kp_rest = _forward(model, red, rest, torch.eye(3, dtype=DT).expand(1, jf, 3, 3), torch.zeros(1, 3, dtype=DT))
        kp_rest_np = kp_rest.pts[0].numpy()
        root_rest = rest.joints[0].numpy()
    quad = ("left_hip", "right_hip", "left_shoulder", "right_shoulder")
    f_rest = _torso_frame(*(kp_rest_np[idx[n]] for n in quad))
    f_obs = _torso_frame(*(obs[:, idx[n]] for n in quad))
    r_root = f_obs @ f_rest.T
    mid_rest = 0.5 * (kp_rest_np[idx["left_hip"]] + kp_rest_np[idx["right_hip"]])
    mid_obs = 0.5 * (obs[:, idx["left_hip"]] + obs[:, idx["right_hip"]])
    trans = mid_obs - (r_root @ (mid_rest - root_rest)[:, None])[..., 0] - root_rest
    rot = np.tile(np.eye(3), (T, jf, 1, 1))
    rot[:, 0] = r_root
    tt = torch.as_tensor(trans, dtype=DT)
    for sem, a, b in _BONE_INIT:
        if sem not in red.sem or a not in idx or b not in idx:
            continue
        j = red.sem[sem]
        with torch.no_grad():
            posed = _forward(model, red, rest, torch.as_tensor(rot, dtype=DT), tt)
        kp = posed.pts.numpy()
        g_par = posed.rg[:, red.parent_f[j]].numpy()
        swing = _swing(kp[:, idx[b]] - kp[:, idx[a]], obs[:, idx[b]] - obs[:, idx[a]])
        rot[:, j] = np.swapaxes(g_par, -1, -2) @ swing @ g_par @ rot[:, j]
    return torch.as_tensor(rot, dtype=DT), tt


# ---------------------------------------------------------------------------------------------------
# the driver


def _projection_terms(rig: CameraRig, kp2d: Keypoints2D, T: int, K: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ideal pinhole matrices (C, 3, 4), undistorted pixels (C, T, K, 2) (0 where missing) and
    confidences (C, T, K) (0 where missing) of the 2D keypoints' cameras found in the rig, by name."""
    if kp2d.num_frames != T or kp2d.num_joints != K:
        raise FitError(f"2D keypoints have {kp2d.num_frames} frames x {kp2d.num_joints} joints; expected {T} x {K}")
    mats, uvs, confs = [], [], []
    for ci, name in enumerate(kp2d.camera_names):
        if name not in rig:
            continue
        cam = rig[name]
        uv = cam.undistort_pixels(np.nan_to_num(kp2d.xy[ci], nan=0.0))
        ok = np.isfinite(kp2d.xy[ci]).all(-1) & np.isfinite(uv).all(-1)
        mats.append(cam.K @ np.hstack([cam.R, cam.t[:, None]]))
        uvs.append(np.where(ok[..., None], uv, 0.0))
        confs.append(np.where(ok, np.nan_to_num(kp2d.confidence[ci], nan=0.0), 0.0))
    if not mats:
        raise FitError(f"none of the 2D keypoints' cameras {list(kp2d.camera_names)} is in the rig")
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=DT)  # noqa: E731
    return t(mats), t(uvs), t(confs)


def _windowed(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, rot: torch.Tensor, trans: torch.Tensor, tg: _Targets,
    cfg: FitConfig, iterations: int, gnc_start: float, progress: str = "",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame solves over the take, ``cfg.window`` frames at a time (bounded memory)."""
    T = rot.shape[0]
    rot, trans = rot.clone(), trans.clone()
    start = time.monotonic()
    for a in range(0, T, cfg.window):
        sl = slice(a, min(a + cfg.window, T))
        rot[sl], trans[sl] = _solve_frames(model, red, rest, rot[sl], trans[sl], tg.rows(sl), cfg, iterations, gnc_start)
        if progress:
            rate = sl.stop / max(time.monotonic() - start, 1e-9)
            logger.info("%s: frame %d/%d, %.0f frames/s, about %.0f s left", progress, sl.stop, T, rate, (T - sl.stop) / rate)
    return rot, trans


def _points(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, rot: torch.Tensor, trans: torch.Tensor, window: int
) -> np.ndarray:
    """(T, K', 3) posed keypoints then sole points."""
    return np.concatenate(
        [_forward(model, red, rest, rot[a : a + window], trans[a : a + window]).pts.numpy() for a in range(0, len(rot), window)]
    )


def fit_sequence(
    model: SkinnedBodyModel,
    keypoints: Keypoints3D,
    config: FitConfig | None = None,
    frame_rate: float | None = None,
    rig: CameraRig | None = None,
    keypoints2d: Keypoints2D | None = None,
) -> BodyMotion:
    """Fit ``model`` to a take's 3D keypoints (and optionally 2D keypoints seen by ``rig``).

    keypoints: (T, K, 3) in a detector skeleton the model supports (NaN: missing); frame_rate defaults to
    the keypoints' frame times; keypoints2d: (C, T, K, 2) of the same skeleton, cameras matched to ``rig``
    by name. Returns a :class:`BodyMotion` with shape (S,), pose_rotvec (T, J, 3), trans (T, 3).
    Raises :class:`FitError` for unusable input (no valid frame, unsupported skeleton).
    """
    cfg = config or FitConfig()
    if not isinstance(keypoints, Keypoints3D):
        raise TypeError(f"keypoints must be a Keypoints3D, got {type(keypoints).__name__}")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    with torch.no_grad():
        return _fit(model, keypoints, cfg, frame_rate, rig, keypoints2d)


def _fit(
    model: SkinnedBodyModel, keypoints: Keypoints3D, cfg: FitConfig, frame_rate: float | None,
    rig: CameraRig | None, keypoints2d: Keypoints2D | None,
) -> BodyMotion:
    start = time.monotonic()
    T = keypoints.num_frames
    fps = float(frame_rate) if frame_rate else _frame_rate(keypoints.frame_times)
    names = keypoints.format.joints
    K = len(names)
    target_np, weight_np = _check_input(model, keypoints, cfg)
    red, basis = _fit_setup(model, keypoints.skeleton)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=DT)  # noqa: E731
    proj = uv = conf = None
    if rig is not None and keypoints2d is not None:
        proj, uv, conf = _projection_terms(rig, keypoints2d, T, K)
    weight_np = _drop_temporal_outliers(target_np, weight_np, fps, cfg)
    # the passes before the low-passed ones run without the joint limits: from the analytic start a
    # bone's twist may have to pass through them (the limits then bring it home along the valley the
    # keypoints leave free)
    free = _Targets(t(target_np), t(weight_np), proj=proj, uv=uv, conf=conf)

    # 1. the average body posed in every frame
    sfree = t(model.free_from_shape(model.default_shape()))
    rest = _rest(basis, _coefficients(model, sfree))
    obs = np.where(weight_np[..., None] > 0, target_np, np.nan)
    parts = [initialise(model, red, rest, obs[a : a + cfg.window], names) for a in range(0, T, cfg.window)]
    rot, trans = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    rot, trans = _windowed(model, red, rest, rot, trans, free, cfg, 2 * cfg.frame_iterations, 8.0)

    # 2. the shape, with the poses of frames spread over the take
    observed = np.flatnonzero(weight_np.sum(1) > 0)
    pick = np.unique(observed[np.linspace(0, len(observed) - 1, min(cfg.shape_frames, len(observed))).round().astype(int)])
    pick_t = torch.as_tensor(pick)
    markers = cfg.marker_offset_sigma_m > 0 and len(red.marker_k) > 0
    search_tg = _without_markers(free.rows(pick_t), red) if markers else free.rows(pick_t)  # type: ignore[arg-type]
    sfree, rot_p, trans_p = _shape_search(model, red, basis, rot[pick_t], trans[pick_t], search_tg, cfg)
    offsets = torch.zeros(len(red.marker_k), 3, dtype=DT) if markers else None
    sigma = cfg.marker_offset_sigma_m
    # with markers, each further round sets their prior from the offsets' spread (empirical Bayes) and refines
    # shape and offsets with it: markers that sit where the model puts them keep telling the shape (the
    # head's size, the feet's length), while biased ones stay free
    for round_ in range(1 + (cfg.marker_rounds if markers else 0)):
        if round_ > 0 and offsets is not None:
            sigma = float(np.clip(offsets.pow(2).mean().sqrt(), 0.002, sigma))
        sfree, offsets, rot_p, trans_p = _solve_shape(
            model, red, basis, sfree, rot_p, trans_p, free.rows(pick_t), cfg, offsets, sigma
        )  # type: ignore[arg-type]
    if offsets is not None:
        logger.info("marker offsets: prior %.1f mm, largest %.1f mm", 1000 * sigma, 1000 * float(offsets.norm(dim=1).max()))
    rot[pick_t], trans[pick_t] = rot_p, trans_p
    shape = model.shape_from_free(sfree.to(model.dtype)).double().numpy()
    rest = _rest(basis, _coefficients(model, sfree), red, offsets)
    logger.info("shape fitted on %d frames: %s", len(pick), np.round(shape, 3).tolist())
    marker_offsets = (
        {}
        if offsets is None
        else {  # in the upright rest frame of the world (X the body's left, Y its back, Z up)
            names[k]: np.round(1000 * np.asarray(model.model_to_world_rest) @ offsets[i].numpy(), 1).tolist()
            for i, k in enumerate(red.marker_k.tolist())
        }
    )

    # 3. outliers out, keypoints low-passed, every frame posed against them
    rot, trans = _windowed(model, red, rest, rot, trans, free, cfg, cfg.frame_iterations, 2 * cfg.robust_scale)
    pts = _points(model, red, rest, rot, trans, cfg.window)
    far = np.linalg.norm(pts[:, :K] - target_np, axis=-1) > cfg.outlier_sigmas * cfg.keypoint_sigma_m
    weight_np = np.where(far, 0.0, weight_np)
    smooth = lowpass(np.where(weight_np[..., None] > 0, target_np, np.nan), fps, cfg.cutoff_hz)
    # the weights are low-passed too: a keypoint dropped or down-weighted in one frame would otherwise
    # change that frame's fit alone (a jerk); the floor keeps gaps (filled by interpolation) pulling, so
    # that a limb left unobserved at the end of a take cannot stay flipped
    smooth_w = lowpass(np.repeat(weight_np[..., None], 3, -1), fps, cfg.cutoff_hz)[..., 0]
    smooth_w = np.clip(smooth_w, 0.25, 1.0) * (weight_np.sum(0) > 0)
    filtered = _Targets(
        t(smooth), t(smooth_w), proj=proj, uv=uv, conf=conf, limits=cfg.joint_limit_weight, temporal=cfg.temporal_weight
    )
    rot, trans = _windowed(model, red, rest, rot, trans, filtered, cfg, 2 * cfg.frame_iterations, cfg.robust_scale, "fit")

    # 4. feet in contact held still, on the floor
    pts = _points(model, red, rest, rot, trans, cfg.window)
    clearance = model.rest_mesh(shape)[red.sole_ids, 2]
    contact = np.zeros((T, len(red.sole_ids)), dtype=bool)
    if cfg.contact:
        contact = detect_contacts(pts[:, K:], clearance, fps, cfg)
        if contact.any():
            anchors, aw = contact_anchors(pts[:, K:], clearance, contact, fps, cfg)
            held = dataclasses.replace(filtered, anchor=t(anchors), anchor_weight=t(aw))
            rot, trans = _windowed(model, red, rest, rot, trans, held, cfg, 2 * cfg.frame_iterations, cfg.robust_scale, "contact")
            pts = _points(model, red, rest, rot, trans, cfg.window)

    pose_f = torch_rotmat_to_rotvec(rot).numpy()
    pose_f[:, 0] = _unwrap_rotvec(pose_f[:, 0])
    full = np.zeros((T, model.num_joints, 3))
    full[:, red.free.numpy()] = pose_f
    valid = weight_np > 0
    resid = np.linalg.norm(pts[:, :K] - target_np, axis=-1)[valid]
    seconds = time.monotonic() - start
    figures = {
        "frames": T,
        "frames_observed": int(len(observed)),
        "keypoints_dropped_as_outliers": int(far.sum()),
        "keypoint_residual_median_mm": float(np.median(resid) * 1000) if resid.size else math.nan,
        "keypoint_residual_p95_mm": float(np.percentile(resid, 95) * 1000) if resid.size else math.nan,
        "contact_fraction": contact.reshape(T, 2, SOLE_POINTS).any(-1).mean(0).tolist(),
        "foot_sliding_mm_s": foot_sliding_mm_s(pts[:, K:], contact, fps),
        "marker_offsets_mm": marker_offsets,
        "seconds": seconds,
        "frames_per_second": T / max(seconds, 1e-9),
    }
    logger.info("fitted %d frames in %.1f s (%.0f frames/s)", T, seconds, figures["frames_per_second"])
    return BodyMotion(
        model.name, shape, full, trans.numpy(), fps, np.asarray(keypoints.frame_times, dtype=float),
        getattr(model, "gender", "neutral"), contact.reshape(T, 2, SOLE_POINTS).any(-1), figures,
    )
