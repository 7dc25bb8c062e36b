"""The per-frame least-squares problem of body fitting and its robust Levenberg-Marquardt solver.

Residuals: keypoints (Geman-McClure, by IRLS), sole anchors, the floor (no sole below the ground), 2D
reprojection, the pose prior, the joint limits and the temporal term; analytic Jacobians (see
:mod:`fit_skeleton`); every frame solved at once, batched, in windows of ``window`` frames so memory stays
bounded on long takes.

The underscored names are the fit's internals, shared by the ``fit_*`` modules of this folder."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from mocap_studio.reconstruction.body.fit_config import FitConfig
from mocap_studio.reconstruction.body.fit_skeleton import DT, _forward, _pose_jacobian, _Reduced, _Rest
from mocap_studio.reconstruction.body.model import SkinnedBodyModel
from mocap_studio.reconstruction.body.torch_rotations import rotmat_to_rotvec as torch_rotmat_to_rotvec
from mocap_studio.reconstruction.body.torch_rotations import rotvec_to_rotmat, skew

logger = logging.getLogger(__name__)

FLOOR_SIGMA_M = 0.002
"""How closely a sole point is kept from going below the ground (the one-sided floor term), metres."""


# ---------------------------------------------------------------------------------------------------
# the per-frame least-squares problem


@dataclass
class _Targets:
    """Per-frame data of one batch of frames: target (T, K, 3) keypoints (0 where missing), weight (T, K),
    anchors (T, P, 3) and anchor weights (T, P) of the sole points (0: no contact term), optional 2D
    terms: proj (C, 3, 4), uv (C, T, K, 2), conf (C, T, K), the weight of the joint limits, and for the
    temporal term its weight and ``near`` (T, Jf, 3, 3), the rotations each frame is pulled towards (set
    per iteration); floor (P,): the height below which each sole point may not go (the ground plus the
    point's clearance; None: no floor term)."""

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
    floor: torch.Tensor | None = None

    def rows(self, sl: slice) -> _Targets:
        return _Targets(
            self.target[sl], self.weight[sl],
            None if self.anchor is None else self.anchor[sl],
            None if self.anchor_weight is None else self.anchor_weight[sl],
            self.proj, None if self.uv is None else self.uv[:, sl], None if self.conf is None else self.conf[:, sl],
            self.limits, self.temporal, None if self.near is None else self.near[sl], self.floor,
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
    """Residuals per frame, as blocks (T, R_b): keypoints, sole anchors, the floor, 2D terms, the pose
    prior, the joint limits, the temporal term."""
    K = tg.target.shape[1]
    T = pts.shape[0]
    out = [((pts[:, :K] - tg.target) * (sw / cfg.keypoint_sigma_m)[..., None]).reshape(T, -1)]
    if tg.anchor is not None and tg.anchor_weight is not None:
        out.append(((pts[:, K:] - tg.anchor) * (tg.anchor_weight / cfg.contact_sigma_m)[..., None]).reshape(T, -1))
    if tg.floor is not None:
        out.append(torch.clamp(pts[:, K:, 2] - tg.floor, max=0.0) / FLOOR_SIGMA_M)
    if tg.proj is not None and sw2 is not None:
        uv = _project(tg.proj, pts[:, :K])[0]
        out.append(((uv - tg.uv) * (sw2 / cfg.reprojection_sigma_px)[..., None]).permute(1, 0, 2, 3).reshape(T, -1))
    rv = torch_rotmat_to_rotvec(rot)
    out.append(rv[:, 1:].reshape(T, -1) * math.sqrt(cfg.pose_prior_weight))
    if tg.limits > 0 and len(red.limit_joint) + len(red.cone_joint):
        out.append(_limit_terms(red, rv, tg.limits)[0])
    if tg.near is not None and tg.temporal > 0:
        scale = torch.sqrt(tg.temporal * red.temporal_scale)[:, None]
        out.append((torch_rotmat_to_rotvec(tg.near.transpose(-1, -2) @ rot) * scale).reshape(T, -1))
    return out


def _limit_terms(red: _Reduced, rv: torch.Tensor, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals (T, L + Lc) of the joint limits and cones for local rotation vectors rv (T, Jf, 3), and
    their derivatives (T, L + Lc, 3) with respect to each joint's own rotation increment: a rotation's
    component along a limit's axis beyond its range [lo, hi], and a cone joint's whole angle beyond its
    largest; 0 (and no derivative) inside. The derivative of the angle is the unit axis itself (the inverse
    right Jacobian of SO(3) leaves the rotation's own axis unchanged)."""
    w = math.sqrt(weight)
    rl = rv[:, red.limit_joint]  # (T, L, 3)
    comp = (rl * red.limit_axis).sum(-1)
    over = torch.clamp(comp - red.limit_hi, min=0.0) + torch.clamp(comp - red.limit_lo, max=0.0)
    rows = torch.einsum("la,tlab->tlb", red.limit_axis, _log_jacobian(rl)) * (over != 0)[..., None]
    rc = rv[:, red.cone_joint]  # (T, Lc, 3)
    angle = rc.norm(dim=-1)
    excess = torch.clamp(angle - red.cone_max, min=0.0)
    unit = rc / angle.clamp_min(1e-9)[..., None] * (excess > 0)[..., None]
    return torch.cat([over, excess], 1) * w, torch.cat([rows, unit], 1) * w


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
    derivatives) also H_fs (T, n, S) and the per-frame H_ss (T, S, S) and g_s (T, S).

    The keypoint and 2D terms of each keypoint are folded into one 3 x 3 information matrix per keypoint
    and frame before they meet the Jacobian (3 rows per keypoint instead of 3 + 2 per camera), and the
    pose prior and the temporal term, whose Jacobians are identities, are added to the diagonal."""
    K = tg.target.shape[1]
    T, n = jp.shape[0], jp.shape[-1]
    full = jp if extra is None else torch.cat([jp, extra], -1)
    N = full.shape[-1]
    s3 = (sw / cfg.keypoint_sigma_m) ** 2  # (T, K)
    info = s3[..., None, None] * torch.eye(3, dtype=DT)  # (T, K, 3, 3)
    grad = s3[..., None] * (pts[:, :K] - tg.target)  # (T, K, 3)
    if tg.proj is not None and sw2 is not None:
        uv, duv = _project(tg.proj, pts[:, :K])  # (C, T, K, 2), (C, T, K, 2, 3)
        s2 = (sw2 / cfg.reprojection_sigma_px) ** 2  # (C, T, K)
        info = info + torch.einsum("ctk,ctkai,ctkaj->tkij", s2, duv, duv)
        grad = grad + torch.einsum("ctk,ctkai,ctka->tki", s2, duv, uv - tg.uv)
    fk = full[:, :K]  # (T, K, 3, N)
    H = fk.reshape(T, 3 * K, N).transpose(1, 2) @ (info @ fk).reshape(T, 3 * K, N)
    g = torch.einsum("tkan,tka->tn", fk, grad)
    for res, jac in _dense_terms(red, full, pts, rot, tg, cfg):
        H = H + jac.transpose(1, 2) @ jac
        g = g + (jac.transpose(1, 2) @ res[..., None])[..., 0]
    m = (rot.shape[1] - 1) * 3
    rv = torch_rotmat_to_rotvec(rot)
    idx = torch.arange(3, 3 + m)
    H[:, idx, idx] += cfg.pose_prior_weight
    g[:, 3 : 3 + m] += cfg.pose_prior_weight * rv[:, 1:].reshape(T, -1)
    if tg.near is not None and tg.temporal > 0:  # d log(near^T R exp(step)) / d step ~ identity
        idx = torch.arange(m + 3)
        w = (tg.temporal * red.temporal_scale).repeat_interleave(3)  # (Jf * 3,)
        H[:, idx, idx] += w
        g[:, : m + 3] += w * torch_rotmat_to_rotvec(tg.near.transpose(-1, -2) @ rot).reshape(T, -1)
    if extra is None:
        return H, g, None, None
    return H[:, :n, :n], g[:, :n], H[:, :n, n:], torch.cat([H[:, n:, n:].reshape(T, -1), g[:, n:]], 1)


def _dense_terms(
    red: _Reduced, full: torch.Tensor, pts: torch.Tensor, rot: torch.Tensor, tg: _Targets, cfg: FitConfig
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Residuals (T, R) and Jacobians (T, R, N) of the sole anchors, the floor and the joint limits (the
    terms of :func:`_residual_blocks` between the keypoints' and the prior's), for the derivatives of the
    posed points ``full`` (T, K', 3, N)."""
    K = tg.target.shape[1]
    T, N = full.shape[0], full.shape[-1]
    out = []
    if tg.anchor is not None and tg.anchor_weight is not None:
        w = (tg.anchor_weight / cfg.contact_sigma_m)[..., None]
        out.append((((pts[:, K:] - tg.anchor) * w).reshape(T, -1), (full[:, K:] * w[..., None]).reshape(T, -1, N)))
    if tg.floor is not None:
        below = (pts[:, K:, 2] < tg.floor).to(DT)  # (T, P): the one-sided term is on where a sole is below
        res = torch.clamp(pts[:, K:, 2] - tg.floor, max=0.0) / FLOOR_SIGMA_M
        out.append((res, full[:, K:, 2] * (below / FLOOR_SIGMA_M)[..., None]))
    if tg.limits > 0 and len(red.limit_joint) + len(red.cone_joint):
        joints = torch.cat([red.limit_joint, red.cone_joint])
        res, rows = _limit_terms(red, torch_rotmat_to_rotvec(rot), tg.limits)
        lim = torch.zeros(T, len(joints), N, dtype=DT)
        lim[:, torch.arange(len(joints))[:, None], 3 * joints[:, None] + torch.arange(3)] = rows
        out.append((res, lim))
    return out


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


def _log_jacobian(rv: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3): the derivative of log(R exp(d)) with respect to d at 0, for R = exp(rv) (..., 3) (the
    inverse right Jacobian of SO(3))."""
    theta = rv.norm(dim=-1, keepdim=True)[..., None]
    small = theta < 1e-4
    th = torch.where(small, torch.ones_like(theta), theta)
    coef = torch.where(small, torch.full_like(theta, 1.0 / 12.0), 1.0 / th**2 - (1 + torch.cos(th)) / (2 * th * torch.sin(th)))
    k = skew(rv)
    return torch.eye(3, dtype=rv.dtype) + 0.5 * k + coef * (k @ k)


def _without_markers(tg: _Targets, red: _Reduced) -> _Targets:
    """``tg`` with the markers' 3D and 2D weights set to 0 (the joints alone)."""
    keep = torch.ones(tg.weight.shape[1], dtype=DT)
    keep[red.marker_k] = 0.0
    return dataclasses.replace(tg, weight=tg.weight * keep, conf=None if tg.conf is None else tg.conf * keep)


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
