"""Fit a body model to a take: one shape for the whole take, a pose and a translation per frame.

Input: :class:`~reconstruction.keypoints.Keypoints3D` (metres, Z-up world, floor at Z = 0), optionally
2D keypoints and the camera rig for reprojection terms. Output: :class:`BodyMotion`.

How (all on the CPU, in torch):
1. Initialise analytically: the root orientation and translation from the hips and shoulders, then each
   hip, knee, shoulder and elbow from the direction of its bone (a swing that turns the model's bone onto
   the observed one).
2. Fit the shape (with poses) on a subset of frames spread over the take.
3. With the shape fixed, fit poses and translations window by window (overlapping windows, cross-faded),
   so memory stays bounded on long takes. Terms: a robust (Geman-McClure) keypoint loss weighted by
   each point's triangulation error, an acceleration penalty on the keypoints and joint rotations, a
   pose prior, the shape prior, a foot-contact term (a still foot stays still and on the floor), and
   optional robust confidence-weighted 2D reprojection terms.

Only the model's ``free_joints`` are posed; the other joints stay at rest relative to their parents, so
the fitting skeleton is the tree of free joints with the skinning weights of fixed joints merged into
their nearest free ancestor (exact for linear blend skinning).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.ndimage import median_filter

from calibration.rotations import rotmat_to_rotvec
from reconstruction.keypoints import Keypoints3D

from .lbs import forward_kinematics, pose_feature, tree_levels
from .model import SkinnedBodyModel
from .torch_rotations import rotvec_to_rotmat

if TYPE_CHECKING:
    from calibration.camera import CameraRig
    from reconstruction.keypoints import Keypoints2D

logger = logging.getLogger(__name__)


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
    window: int = 200
    """Frames per optimisation window."""
    overlap: int = 20
    """Frames shared by consecutive windows (cross-faded)."""
    shape_frames: int = 40
    """Frames (spread over the take) used to fit the shape."""
    shape_iterations: int = 15
    """Levenberg-Marquardt iterations of the shape stage."""
    pose_iterations: int = 0
    """L-BFGS iterations of the smoothing/contact pass per window; 0 skips it (as of now it costs accuracy:
    ~16 mm MPJPE with it against ~12 mm without on the synthetic take)."""
    outlier_sigmas: float = 5.0
    """After the first frame-by-frame pass, keypoints farther than this many sigmas are dropped."""
    cutoff_hz: float = 6.0
    """Low-pass cut-off applied to the keypoints before the second frame-by-frame pass."""
    keypoint_sigma_m: float = 0.015
    """Expected keypoint noise in metres (scales the keypoint term)."""
    robust_scale: float = 4.0
    """Geman-McClure scale in units of ``keypoint_sigma_m``: residuals beyond it stop pulling."""
    error_scale_px: float = 4.0
    """A keypoint with this triangulation (reprojection) error gets half the weight of a perfect one."""
    acceleration_m_s2: float = 12.0
    """Typical keypoint acceleration in m/s^2: the smoothness term's scale (smaller is smoother)."""
    rotation_smoothness: float = 0.3
    """Weight of the angular acceleration penalty (relative)."""
    pose_prior_weight: float = 0.02
    """Weight of the pose prior (local rotations near rest)."""
    shape_prior_weight: float = 1.0
    """Weight of the shape prior."""
    contact_weight: float = 1.0
    """Weight of the foot-contact term (0 turns it off)."""
    contact_speed_m_s: float = 0.12
    """A foot slower than this (and low enough) is in contact."""
    contact_height_m: float = 0.15
    """A foot whose lowest keypoint is below this height (above Z = 0) may be in contact."""
    reprojection_weight: float = 1.0
    """Weight of the 2D reprojection term when 2D keypoints and cameras are given."""
    reprojection_sigma_px: float = 3.0
    """Expected 2D keypoint noise in pixels."""
    min_joints: int = 4
    """A frame needs this many valid keypoints to count as observed."""
    threads: int = 0
    """torch threads; 0 keeps torch's default."""

    def __post_init__(self) -> None:
        if self.window < 10 or self.overlap < 0 or self.overlap >= self.window // 2:
            raise ValueError(f"window must be >= 10 and overlap in [0, window/2), got {self.window}, {self.overlap}")


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
# the fitting skeleton


@dataclass
class _Reduced:
    free: torch.Tensor  # (Jf,) model joint index of each free joint
    levels: object
    parent_f: np.ndarray  # (Jf,)
    vertex_ids: torch.Tensor  # (N,) vertices needed
    weights: torch.Tensor  # (N, Jf)
    kp_matrix: torch.Tensor  # (K + 4, N) keypoints, then the 4 sole vertices, from the needed vertices
    sole: torch.Tensor  # (4,) rows of the sole points: left heel, left ball, right heel, right ball
    sem: dict[str, int]  # semantic name -> free-joint position


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
    reg = model.keypoint_regressor(skeleton)
    full_w = model.skinning_weights()
    merged = np.zeros((model.num_vertices, len(free)))
    np.add.at(merged.T, owner, full_w.T)
    sole_ids = _sole_vertices(model, merged, pos)
    ids = np.unique(np.concatenate([reg.vertex_ids, sole_ids.ravel()]))
    col = {int(v): i for i, v in enumerate(ids)}
    K = len(reg.joint_names)
    mat = np.zeros((K + 4, len(ids)))
    for n, v in enumerate(reg.vertex_ids):
        mat[:K, col[int(v)]] = reg.matrix[:, n]
    for r, v in enumerate(sole_ids.ravel()):
        mat[K + r, col[int(v)]] = 1.0
    sole = torch.arange(K, K + 4)
    t = lambda a, dt=model.dtype: torch.as_tensor(a, dtype=dt)  # noqa: E731
    sem = {n: pos[j] for n, j in model.semantic_joints.items() if j in pos}
    return _Reduced(
        torch.as_tensor(free), tree_levels(parent_f), parent_f, torch.as_tensor(ids), t(merged[ids]), t(mat),
        sole, sem,
    )  # fmt: skip


def _sole_vertices(model: SkinnedBodyModel, merged: np.ndarray, pos: dict[int, int]) -> np.ndarray:
    """(2, 2) vertex ids: for the left and right foot, the lowest vertex at the heel and at the ball."""
    rest = model.rest_mesh(model.default_shape())
    out = []
    for side in ("left", "right"):
        ankle = pos[model.semantic_joints[f"{side}_ankle"]]
        foot = np.flatnonzero(merged[:, ankle] > 0.5)
        low = foot[rest[foot, 2] < rest[foot, 2].min() + 0.012]
        out.append([low[np.argmax(rest[low, 1])], low[np.argmin(rest[low, 1])]])  # facing -Y: heel is +Y
    return np.array(out)


# ---------------------------------------------------------------------------------------------------
# posing on the fitting skeleton


@dataclass
class _Rest:
    """Rest quantities for a fixed shape, folded through the keypoint regressor so that posing costs
    K x Jf instead of vertices x Jf: keypoint k = sum_j R_g[j] @ P[k, j] + S[k, j] * b[j] (+ correctives).

    joints: (Jf, 3); P: (K', Jf, 3); S: (K', Jf); Q: (pose features, K', Jf, 3) or None. K' = the
    format's keypoints followed by the 4 sole vertices (left heel, left ball, right heel, right ball).
    """

    joints: torch.Tensor
    P: torch.Tensor
    S: torch.Tensor
    Q: torch.Tensor | None


def _has_correctives(model: SkinnedBodyModel) -> bool:
    return type(model).pose_correctives_torch is not SkinnedBodyModel.pose_correctives_torch


def _rest(model: SkinnedBodyModel, red: _Reduced, shape: torch.Tensor) -> _Rest:
    joints = model.rest_joints_torch(shape)[red.free]
    verts = model.rest_vertices_torch(shape, red.vertex_ids)  # (N, 3)
    mw = red.kp_matrix[:, :, None] * red.weights[None]  # (K', N, Jf)
    P = torch.einsum("knj,nd->kjd", mw, verts)
    S = mw.sum(1)
    Q = None
    if _has_correctives(model):
        dirs = model._posedirs[:, red.vertex_ids]  # type: ignore[attr-defined]  # (P, N, 3)
        Q = torch.einsum("knj,pnd->pkjd", mw, dirs)
    return _Rest(joints, P, S, Q)


def _pose(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, pose_f: torch.Tensor, trans: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """pose_f (T, Jf, 3), trans (T, 3) -> points (T, K', 3) (keypoints then soles), joint rotations
    (T, Jf, 3, 3), joint positions (T, Jf, 3)."""
    rot = rotvec_to_rotmat(pose_f)
    rg, tg = forward_kinematics(rot, rest.joints, red.levels)  # type: ignore[arg-type]
    b = tg - (rg @ rest.joints[..., None])[..., 0]
    pts = torch.einsum("tjab,kjb->tka", rg, rest.P) + torch.einsum("kj,tja->tka", rest.S, b)
    if rest.Q is not None:
        full = torch.zeros(pose_f.shape[0], model.num_joints, 3, dtype=pose_f.dtype)
        full = full.index_copy(1, red.free, pose_f)
        feat = pose_feature(rotvec_to_rotmat(full))  # (T, P)
        pts = pts + torch.einsum("tjab,tkjb->tka", rg, torch.einsum("tp,pkjb->tkjb", feat, rest.Q))
    return pts + trans[:, None], rg, tg + trans[:, None]


# ---------------------------------------------------------------------------------------------------
# input checks and weights


def _check_input(model: SkinnedBodyModel, kp: Keypoints3D, cfg: FitConfig) -> tuple[np.ndarray, np.ndarray]:
    """Targets (T, K, 3) with NaN filled by 0 and weights (T, K); raises FitError on unusable input."""
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
    err = np.nan_to_num(np.asarray(kp.error, dtype=float), nan=0.0)
    w = valid / (1.0 + (err / cfg.error_scale_px) ** 2)
    observed = valid.sum(1) >= cfg.min_joints
    if not observed.any():
        raise FitError(
            f"no frame of the take has {cfg.min_joints} or more valid keypoints (of {kp.num_frames} frames); "
            "check triangulation (keypoints3d.npz is all NaN or nearly so)"
        )
    w[~observed] = 0.0
    return np.where(valid[..., None], xyz, 0.0), w


def _fill_nan(xyz: np.ndarray) -> np.ndarray:
    """(T, K, 3) -> the same with NaN runs linearly interpolated over time (held at the ends)."""
    out = xyz.copy()
    t = np.arange(len(xyz))
    for k in range(xyz.shape[1]):
        ok = np.isfinite(xyz[:, k]).all(-1)
        if ok.sum() == 0:
            continue
        for d in range(3):
            out[:, k, d] = np.interp(t, t[ok], xyz[ok, k, d])
    return out


def detect_contacts(xyz: np.ndarray, names: tuple[str, ...], fps: float, cfg: FitConfig) -> np.ndarray:
    """(T, 2) bool: left and right foot still and near the floor, from the foot keypoints (T, K, 3)."""
    filled = _fill_nan(xyz)
    out = np.zeros((len(xyz), 2), dtype=bool)
    for i, side in enumerate(("left", "right")):
        cols = [names.index(n) for n in (f"{side}_heel", f"{side}_foot_index", f"{side}_big_toe", f"{side}_ankle")
                if n in names]  # fmt: skip
        if not cols or len(xyz) < 8:
            continue
        # median over ~0.2 s (robust to noise and outliers), then speed over ~0.2 s
        width = max(3, int(round(fps / 5)) | 1)
        pts = median_filter(filled[:, cols], size=(width, 1, 1), mode="nearest")
        k = max(1, int(round(fps / 10)))
        vel = np.zeros(len(pts))
        vel[k:-k] = np.linalg.norm(pts[2 * k :] - pts[: -2 * k], axis=-1).mean(-1) * fps / (2 * k)
        vel[:k], vel[-k:] = vel[k], vel[-k - 1]
        low = pts[..., 2].min(-1) < cfg.contact_height_m
        still = vel < cfg.contact_speed_m_s
        c = low & still
        # drop blips shorter than ~0.1 s
        run_start = 0
        for t in range(1, len(c) + 1):
            if t == len(c) or c[t] != c[run_start]:
                if c[run_start] and t - run_start < max(3, k * 2):
                    c[run_start:t] = False
                run_start = t
        out[:, i] = c
    return out


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
        cands = [out[t], axis * (ang - 2 * np.pi), axis * (ang + 2 * np.pi)]
        out[t] = min(cands, key=lambda c: np.linalg.norm(c - out[t - 1]))
    return out


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3, 3) the smallest rotations turning directions a (..., 3) onto b (..., 3)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    v = np.cross(a, b)
    c = (a * b).sum(-1)
    s = np.linalg.norm(v, axis=-1)
    ang = np.arctan2(s, c)
    axis = v / np.maximum(s, 1e-12)[..., None]
    from calibration.rotations import rotvec_to_rotmat as np_rotvec_to_rotmat

    return np_rotvec_to_rotmat(axis * ang[..., None])


_BONE_INIT = (  # (semantic joint, keypoint at the joint, keypoint at the bone's end)
    ("left_hip", "left_hip", "left_knee"), ("right_hip", "right_hip", "right_knee"),
    ("left_knee", "left_knee", "left_ankle"), ("right_knee", "right_knee", "right_ankle"),
    ("left_shoulder", "left_shoulder", "left_elbow"), ("right_shoulder", "right_shoulder", "right_elbow"),
    ("left_elbow", "left_elbow", "left_wrist"), ("right_elbow", "right_elbow", "right_wrist"),
)  # fmt: skip


def initialise(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, xyz: np.ndarray, names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Analytic pose (T, Jf, 3) and translation (T, 3) from keypoints (T, K, 3) (NaN allowed)."""
    T = len(xyz)
    obs = _fill_nan(xyz)
    idx = {n: i for i, n in enumerate(names)}
    dt = model.dtype
    zero = torch.zeros(1, len(red.free), 3, dtype=dt)
    with torch.no_grad():
        kp_rest = _pose(model, red, rest, zero, torch.zeros(1, 3, dtype=dt))[0][0].double().numpy()
        root_rest = rest.joints[0].double().numpy()
    quad = ("left_hip", "right_hip", "left_shoulder", "right_shoulder")
    f_rest = _torso_frame(*(kp_rest[idx[n]] for n in quad))
    f_obs = _torso_frame(*(obs[:, idx[n]] for n in quad))
    r_root = f_obs @ f_rest.T
    mid_rest = 0.5 * (kp_rest[idx["left_hip"]] + kp_rest[idx["right_hip"]])
    mid_obs = 0.5 * (obs[:, idx["left_hip"]] + obs[:, idx["right_hip"]])
    trans = mid_obs - (r_root @ (mid_rest - root_rest)[:, None])[..., 0] - root_rest
    pose = np.zeros((T, len(red.free), 3))
    pose[:, 0] = _unwrap_rotvec(rotmat_to_rotvec(r_root))
    rot = rotvec_to_rotmat(torch.as_tensor(pose)).numpy()
    for sem, a, b in _BONE_INIT:
        if sem not in red.sem or a not in idx or b not in idx:
            continue
        j = red.sem[sem]
        with torch.no_grad():
            pts, rg, _ = _pose(model, red, rest, torch.as_tensor(pose, dtype=dt), torch.as_tensor(trans, dtype=dt))
            kp = pts.double().numpy()
        rg = rg.double().numpy()
        d_cur = kp[:, idx[b]] - kp[:, idx[a]]
        d_obs = obs[:, idx[b]] - obs[:, idx[a]]
        swing = _swing(d_cur, d_obs)
        p = red.parent_f[j]
        g_par = rg[:, p]
        rot[:, j] = np.swapaxes(g_par, -1, -2) @ swing @ g_par @ rot[:, j]
        pose[:, j] = rotmat_to_rotvec(rot[:, j])
    return pose, trans


# ---------------------------------------------------------------------------------------------------
# the objective


def _gm(sq: torch.Tensor, c: float) -> torch.Tensor:
    """Geman-McClure of squared residuals (in sigma units): ~sq near 0, -> c^2 far away."""
    return c * c * sq / (sq + c * c)


@dataclass
class _Terms:
    target: torch.Tensor  # (T, K, 3)
    weight: torch.Tensor  # (T, K)
    contact: torch.Tensor  # (T, 2) float
    fps: float
    proj: torch.Tensor | None = None  # (C, 3, 4) ideal pinhole projection matrices
    uv: torch.Tensor | None = None  # (C, T, K, 2) undistorted pixels, 0 where missing
    conf: torch.Tensor | None = None  # (C, T, K)


def _objective(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, shape: torch.Tensor | None, pose_f: torch.Tensor,
    trans: torch.Tensor, terms: _Terms, cfg: FitConfig, smooth: bool = True,
) -> torch.Tensor:  # fmt: skip
    pts, _, _ = _pose(model, red, rest, pose_f, trans)
    K = terms.target.shape[1]
    kp = pts[:, :K]
    T = pose_f.shape[0]
    sq = ((kp - terms.target) ** 2).sum(-1) / cfg.keypoint_sigma_m**2
    loss = (terms.weight * _gm(sq, cfg.robust_scale)).sum()
    if terms.proj is not None and terms.uv is not None and terms.conf is not None:
        hom = torch.cat([kp, torch.ones_like(kp[..., :1])], -1)
        cam = torch.einsum("cij,tkj->ctki", terms.proj, hom)
        uv = cam[..., :2] / cam[..., 2:].clamp_min(1e-6)
        sq2 = ((uv - terms.uv) ** 2).sum(-1) / cfg.reprojection_sigma_px**2
        loss = loss + cfg.reprojection_weight * (terms.conf * _gm(sq2, cfg.robust_scale)).sum()
    prior = (pose_f[:, 1:] ** 2).sum()
    loss = loss + cfg.pose_prior_weight * prior
    if smooth and T >= 3:
        sigma_acc = cfg.acceleration_m_s2 / terms.fps**2
        acc = kp[2:] - 2 * kp[1:-1] + kp[:-2]
        loss = loss + (acc**2).sum() / sigma_acc**2
        racc = pose_f[2:] - 2 * pose_f[1:-1] + pose_f[:-2]
        loss = loss + cfg.rotation_smoothness * (racc**2).sum() / (sigma_acc * 10) ** 2
        if cfg.contact_weight > 0:
            sole = pts[:, K:].reshape(T, 2, 2, 3)  # (T, foot, point, xyz)
            c = terms.contact
            both = (c[1:] * c[:-1])[..., None, None]
            slide = ((sole[1:] - sole[:-1]) ** 2 * both).sum() / (0.002**2)
            floor = ((sole[..., 2] ** 2) * c[..., None]).sum() / (0.01**2)
            loss = loss + cfg.contact_weight * (slide + floor)
    if shape is not None:
        loss = loss + cfg.shape_prior_weight * model.shape_prior(shape) * max(T, 1) / 10
    return loss


def _lbfgs(params: list[torch.Tensor], closure_fn, iterations: int) -> float:  # noqa: ANN001
    opt = torch.optim.LBFGS(
        params, lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe",
        tolerance_grad=1e-7, tolerance_change=1e-10,
    )  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = closure_fn()
        loss.backward()
        return loss

    return float(opt.step(closure).detach())


def _frame_residuals(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, params: torch.Tensor, target: torch.Tensor,
    sqrt_w: torch.Tensor, cfg: FitConfig,
) -> torch.Tensor:  # fmt: skip
    """Per-frame residuals (T, K * 3 + (Jf - 1) * 3) of params (T, Jf * 3 + 3): weighted keypoint errors in
    sigma units, then the pose prior."""
    T = params.shape[0]
    jf = len(red.free)
    pose_f = params[:, : jf * 3].reshape(T, jf, 3)
    trans = params[:, jf * 3 :]
    pts, _, _ = _pose(model, red, rest, pose_f, trans)
    K = target.shape[1]
    data = (pts[:, :K] - target) / cfg.keypoint_sigma_m * sqrt_w[..., None]
    prior = pose_f[:, 1:] * math.sqrt(cfg.pose_prior_weight)
    return torch.cat([data.reshape(T, -1), prior.reshape(T, -1)], 1)


def _solve_frames(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, pose: np.ndarray, trans: np.ndarray,
    target: np.ndarray, weight: np.ndarray, cfg: FitConfig, iterations: int = 10,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Frame-by-frame robust Levenberg-Marquardt (batched over frames, IRLS for Geman-McClure).

    pose (T, Jf, 3), trans (T, 3), target (T, K, 3), weight (T, K) -> refined pose and trans.
    """
    from torch.func import jvp, vmap

    dt = model.dtype
    T, jf = pose.shape[:2]
    n = jf * 3 + 3
    params = torch.as_tensor(np.concatenate([pose.reshape(T, -1), trans], 1), dtype=dt)
    tgt = torch.as_tensor(target, dtype=dt)
    w = torch.as_tensor(weight, dtype=dt)
    lam = torch.full((T,), 1e-2, dtype=dt)
    eye = torch.eye(n, dtype=dt)
    basis = eye[:, None, :].expand(n, T, n)

    def cost(p: torch.Tensor, sw: torch.Tensor) -> torch.Tensor:
        return (_frame_residuals(model, red, rest, p, tgt, sw, cfg) ** 2).sum(1)

    for it in range(iterations):
        # graduated non-convexity: start nearly quadratic (the start may be 10 cm off), end at the robust scale
        c2 = max(cfg.robust_scale, 32.0 * 0.5**it) ** 2
        with torch.no_grad():
            pts = _pose(model, red, rest, params[:, : jf * 3].reshape(T, jf, 3), params[:, jf * 3 :])[0]
            sq = ((pts[:, : tgt.shape[1]] - tgt) ** 2).sum(-1) / cfg.keypoint_sigma_m**2
            sw = torch.sqrt(w * c2 * c2 / (sq + c2) ** 2)  # IRLS weights of Geman-McClure

        def f(p: torch.Tensor, sw: torch.Tensor = sw) -> torch.Tensor:
            return _frame_residuals(model, red, rest, p, tgt, sw, cfg)

        with torch.no_grad():
            r = f(params)
            jac = vmap(lambda v: jvp(f, (params,), (v,))[1])(basis)  # (n, T, R)
            jt = jac.permute(1, 0, 2)  # (T, n, R)
            H = jt @ jt.transpose(1, 2)
            g = (jt @ r[..., None])[..., 0]
            base = cost(params, sw)
            for _try in range(3):
                A = H + lam[:, None, None] * (torch.diagonal(H, dim1=1, dim2=2)[..., None] * eye + 1e-6 * eye)
                step = -torch.linalg.solve(A, g)
                trial = params + step
                better = cost(trial, sw) < base
                params = torch.where(better[:, None], trial, params)
                lam = torch.where(better, lam * 0.3, lam * 10).clamp(1e-7, 1e7)
                if bool(better.all()):
                    break
    p = params.double().numpy()
    return p[:, : jf * 3].reshape(T, jf, 3), p[:, jf * 3 :]


def _solve_shape(
    model: SkinnedBodyModel, red: _Reduced, shape_free: torch.Tensor, pose: np.ndarray, trans: np.ndarray,
    target: np.ndarray, weight: np.ndarray, cfg: FitConfig, iterations: int = 15,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:  # fmt: skip
    """Shape and per-frame poses together by Levenberg-Marquardt, the shared shape eliminated by a Schur
    complement (the normal equations are block-diagonal in the frames plus one shape block).

    shape_free (S,) unconstrained, pose (T, Jf, 3), trans (T, 3), target (T, K, 3), weight (T, K).
    """
    from torch.func import jvp, vmap

    dt = model.dtype
    T, jf = pose.shape[:2]
    n = jf * 3 + 3
    S = shape_free.shape[0]
    params = torch.as_tensor(np.concatenate([pose.reshape(T, -1), trans], 1), dtype=dt)
    sfree = shape_free.detach().clone()
    tgt = torch.as_tensor(target, dtype=dt)
    w = torch.as_tensor(weight, dtype=dt)
    lam = 1e-2
    eye_n, eye_s = torch.eye(n, dtype=dt), torch.eye(S, dtype=dt)
    basis = eye_n[:, None, :].expand(n, T, n)
    prior_w = cfg.shape_prior_weight

    def residuals(p: torch.Tensor, sf: torch.Tensor, sw: torch.Tensor) -> torch.Tensor:
        rest = _rest(model, red, model.shape_from_free(sf))
        return _frame_residuals(model, red, rest, p, tgt, sw, cfg)

    def total(p: torch.Tensor, sf: torch.Tensor, sw: torch.Tensor) -> float:
        r = residuals(p, sf, sw)
        return float((r**2).sum() + 2 * prior_w * model.shape_prior(model.shape_from_free(sf)))

    for it in range(iterations):
        c2 = max(cfg.robust_scale, 32.0 * 0.5**it) ** 2
        with torch.no_grad():
            rest = _rest(model, red, model.shape_from_free(sfree))
            pts = _pose(model, red, rest, params[:, : jf * 3].reshape(T, jf, 3), params[:, jf * 3 :])[0]
            sq = ((pts[:, : tgt.shape[1]] - tgt) ** 2).sum(-1) / cfg.keypoint_sigma_m**2
            sw = torch.sqrt(w * c2 * c2 / (sq + c2) ** 2)
            r = residuals(params, sfree, sw)  # (T, R)
            jp = vmap(lambda v: jvp(lambda p: residuals(p, sfree, sw), (params,), (v,))[1])(basis)  # (n, T, R)
            js = torch.stack([jvp(lambda sf: residuals(params, sf, sw), (sfree,), (eye_s[i],))[1] for i in range(S)])
        sf_req = sfree.clone().requires_grad_(True)
        prior = prior_w * model.shape_prior(model.shape_from_free(sf_req))
        g_prior = torch.autograd.grad(prior, sf_req, create_graph=True)[0]
        h_prior = torch.stack([torch.autograd.grad(g_prior[i], sf_req, retain_graph=True)[0] for i in range(S)])
        with torch.no_grad():
            jpt = jp.permute(1, 0, 2)  # (T, n, R)
            jst = js.permute(1, 0, 2)  # (T, S, R)
            h_ff = jpt @ jpt.transpose(1, 2)
            h_fs = jpt @ jst.transpose(1, 2)  # (T, n, S)
            h_ss = (jst @ jst.transpose(1, 2)).sum(0) + h_prior.detach()
            g_f = (jpt @ r[..., None])[..., 0]
            g_s = (jst @ r[..., None])[..., 0].sum(0) + g_prior.detach()
            base = total(params, sfree, sw)
            for _try in range(4):
                a_ff = h_ff + lam * (torch.diagonal(h_ff, dim1=1, dim2=2)[..., None] * eye_n + 1e-6 * eye_n)
                inv_g = torch.linalg.solve(a_ff, g_f)
                inv_fs = torch.linalg.solve(a_ff, h_fs)
                schur = h_ss + lam * (torch.diag(torch.diagonal(h_ss)) + 1e-6 * eye_s)
                schur = schur - (h_fs.transpose(1, 2) @ inv_fs).sum(0)
                rhs = g_s - (h_fs.transpose(1, 2) @ inv_g[..., None])[..., 0].sum(0)
                ds = -torch.linalg.solve(schur, rhs)
                dp = -(inv_g + (inv_fs @ ds[:, None])[..., 0])
                trial_p, trial_s = params + dp, sfree + ds
                if total(trial_p, trial_s, sw) < base:
                    params, sfree, lam = trial_p, trial_s, max(lam * 0.3, 1e-7)
                    break
                lam = min(lam * 10, 1e7)
    p = params.double().numpy()
    return sfree, p[:, : jf * 3].reshape(T, jf, 3), p[:, jf * 3 :]


# ---------------------------------------------------------------------------------------------------
# the driver


def _projection_terms(
    rig: CameraRig, kp2d: Keypoints2D, T: int, K: int, dt: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
        confs.append(np.where(ok, kp2d.confidence[ci], 0.0))
    if not mats:
        raise FitError(f"none of the 2D keypoints' cameras {list(kp2d.camera_names)} is in the rig")
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=dt)  # noqa: E731
    return t(mats), t(uvs), t(confs)


def fit_sequence(
    model: SkinnedBodyModel,
    keypoints: Keypoints3D,
    config: FitConfig | None = None,
    frame_rate: float | None = None,
    rig: CameraRig | None = None,
    keypoints2d: Keypoints2D | None = None,
) -> BodyMotion:
    """Fit ``model`` to a take's 3D keypoints (and optionally 2D keypoints seen by ``rig``).

    keypoints: (T, K, 3) in a detector skeleton the model supports; frame_rate defaults to the keypoints'
    frame times. Returns a :class:`BodyMotion` with shape (S,), pose_rotvec (T, J, 3), trans (T, 3).
    Raises :class:`FitError` for unusable input (no valid frame, unsupported skeleton).
    """
    cfg = config or FitConfig()
    if not isinstance(keypoints, Keypoints3D):
        raise TypeError(f"keypoints must be a Keypoints3D, got {type(keypoints).__name__}")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    start = time.monotonic()
    T = keypoints.num_frames
    fps = float(frame_rate) if frame_rate else _frame_rate(keypoints.frame_times)
    names = keypoints.format.joints
    target_np, weight_np = _check_input(model, keypoints, cfg)
    red = _reduce(model, keypoints.skeleton)
    dt = model.dtype
    xyz = np.where(weight_np[..., None] > 0, keypoints.xyz, np.nan)
    contact = detect_contacts(xyz, names, fps, cfg)
    proj = uv = conf = None
    if rig is not None and keypoints2d is not None:
        proj, uv, conf = _projection_terms(rig, keypoints2d, T, len(names), dt)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=dt)  # noqa: E731

    # 1. initial shape and poses
    shape_free = t(model.free_from_shape(model.default_shape()))
    rest = _rest(model, red, model.shape_from_free(shape_free))
    pose0, trans0 = initialise(model, red, rest, xyz, names)

    # 2. shape (with poses) on a subset of the best-observed frames spread over the take
    observed = np.flatnonzero(weight_np.sum(1) > 0)
    pick = observed[np.linspace(0, len(observed) - 1, min(cfg.shape_frames, len(observed))).round().astype(int)]
    pick = np.unique(pick)
    shape_var, _, _ = _solve_shape(
        model, red, shape_free, pose0[pick], trans0[pick], target_np[pick], weight_np[pick], cfg, cfg.shape_iterations
    )
    with torch.no_grad():
        shape = model.shape_from_free(shape_var.detach())
        rest = _rest(model, red, shape)
    logger.info("shape fitted on %d frames: %s", len(pick), np.round(shape.double().numpy(), 3).tolist())

    # 3. poses frame by frame; outliers dropped; targets low-pass filtered; frame by frame again; then
    # smoothed (with foot contact) window by window
    pose0, trans0 = initialise(model, red, rest, xyz, names)
    for a, b in _windows(T, cfg.window, 0):
        pose0[a:b], trans0[a:b] = _solve_frames(model, red, rest, pose0[a:b], trans0[a:b], target_np[a:b], weight_np[a:b], cfg, 6)
        with torch.no_grad():
            pts = _pose(model, red, rest, t(pose0[a:b]), t(trans0[a:b]))[0][:, : len(names)].double().numpy()
        far = np.linalg.norm(pts - target_np[a:b], axis=-1) > cfg.outlier_sigmas * cfg.keypoint_sigma_m
        weight_np[a:b][far] = 0.0
    target_np = _lowpass(np.where(weight_np[..., None] > 0, target_np, np.nan), fps, cfg.cutoff_hz)
    for a, b in _windows(T, cfg.window, 0):
        pose0[a:b], trans0[a:b] = _solve_frames(model, red, rest, pose0[a:b], trans0[a:b], target_np[a:b], weight_np[a:b], cfg, 3)
    pose = pose0.copy()
    trans = trans0.copy()
    windows = _windows(T, cfg.window, cfg.overlap)
    done_until = 0
    for wi, (a, b) in enumerate(windows):
        sl = slice(a, b)
        if a < done_until:  # start the overlap from the previous window's solution
            pose0[a:done_until], trans0[a:done_until] = pose[a:done_until], trans[a:done_until]
        terms = _Terms(
            t(target_np[sl]), t(weight_np[sl]), t(contact[sl]), fps,
            None if proj is None else proj, None if uv is None else uv[:, sl], None if conf is None else conf[:, sl],
        )  # fmt: skip
        pv = t(pose0[sl]).requires_grad_(True)
        tv = t(trans0[sl]).requires_grad_(True)
        if cfg.pose_iterations > 0:
            _lbfgs([pv, tv], lambda pv=pv, tv=tv, terms=terms: _objective(
                model, red, rest, None, pv, tv, terms, cfg), cfg.pose_iterations)  # fmt: skip
        new_pose, new_trans = pv.detach().double().numpy(), tv.detach().double().numpy()
        if a < done_until:
            n = done_until - a
            ramp = ((np.arange(n) + 1) / (n + 1))[:, None]
            new_pose[:n] = (1 - ramp[..., None]) * pose[a:done_until] + ramp[..., None] * new_pose[:n]
            new_trans[:n] = (1 - ramp) * trans[a:done_until] + ramp * new_trans[:n]
        pose[sl], trans[sl] = new_pose, new_trans
        done_until = b
        elapsed = time.monotonic() - start
        rate = b / max(elapsed, 1e-9)
        logger.info(
            "fit window %d/%d: frames %d-%d, %.1f frames/s, about %.0f s left",
            wi + 1, len(windows), a, b, rate, (T - b) / max(rate, 1e-9),
        )  # fmt: skip

    full = np.zeros((T, model.num_joints, 3))
    full[:, red.free.numpy()] = pose
    with torch.no_grad():
        kp = _pose(model, red, rest, t(pose), t(trans))[0][:, : len(names)].double().numpy()
    valid = weight_np > 0
    resid = np.linalg.norm(kp - keypoints.xyz, axis=-1)[valid]
    seconds = time.monotonic() - start
    figures = {
        "frames": T,
        "frames_observed": int((weight_np.sum(1) > 0).sum()),
        "keypoint_residual_median_mm": float(np.median(resid) * 1000) if resid.size else math.nan,
        "keypoint_residual_p95_mm": float(np.percentile(resid, 95) * 1000) if resid.size else math.nan,
        "contact_fraction": contact.mean(0).tolist(),
        "seconds": seconds,
        "frames_per_second": T / max(seconds, 1e-9),
    }
    return BodyMotion(
        model.name, shape.double().numpy(), full, trans, fps, np.asarray(keypoints.frame_times, dtype=float),
        getattr(model, "gender", "neutral"), contact, figures,
    )  # fmt: skip


def _lowpass(xyz: np.ndarray, fps: float, cutoff_hz: float) -> np.ndarray:
    """(T, K, 3) with NaN -> gaps filled, then a zero-phase 4th-order Butterworth low-pass along time."""
    from scipy.signal import butter, filtfilt

    filled = _fill_nan(xyz)
    filled = np.nan_to_num(filled, nan=0.0)
    if len(xyz) < 16 or cutoff_hz <= 0 or cutoff_hz >= fps / 2:
        return filled
    b, a = butter(4, cutoff_hz / (fps / 2))
    return np.ascontiguousarray(filtfilt(b, a, filled, axis=0, padlen=min(len(xyz) - 1, 3 * max(len(a), len(b)))))


def _frame_rate(times: np.ndarray) -> float:
    d = np.diff(np.asarray(times, dtype=float))
    d = d[np.isfinite(d) & (d > 0)]
    if d.size == 0:
        raise FitError("cannot tell the frame rate from the keypoints' frame times; pass frame_rate")
    return float(1.0 / np.median(d))


def _windows(T: int, size: int, overlap: int) -> list[tuple[int, int]]:
    if T <= size:
        return [(0, T)]
    out, a = [], 0
    while True:
        b = min(a + size, T)
        out.append((a, b))
        if b == T:
            return out
        a = b - overlap
