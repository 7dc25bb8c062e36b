"""The shape of a take: a global search on a quadratic model of the cost, then shape (and marker offsets)
and the poses of a subset of frames solved together (Schur complement of the shared variables).

The underscored names are the fit's internals, shared by the ``fit_*`` modules of this folder."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from mocap_studio.reconstruction.body.fit_config import FitConfig
from mocap_studio.reconstruction.body.fit_skeleton import (
    DT,
    _Basis,
    _coefficients,
    _forward,
    _pose_jacobian,
    _Reduced,
    _Rest,
    _rest,
    _shape_jacobian,
)
from mocap_studio.reconstruction.body.fit_solver import (
    _cost,
    _gnc,
    _increment,
    _normal_equations,
    _robust_weights,
    _solve_frames,
    _Targets,
)
from mocap_studio.reconstruction.body.model import SkinnedBodyModel

logger = logging.getLogger(__name__)


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
