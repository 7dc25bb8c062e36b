"""Choosing each limb joint's 3D point over the whole take, not frame by frame.

A hidden wrist is often detected with confidence in the wrong place by two cameras at once, and the two wrong
views agree with each other better than the one camera that sees it: frame by frame, robust triangulation
takes the wrong pair. Over time the mistake is plain (the wrist jumps 20-30 cm and back, the forearm changes
length). So, per joint, every frame gets a few candidate points:

- the robust triangulation's point;
- every camera pair's two-view point;
- for limb joints, each camera's ray cut by the sphere of the segment's length around the parent joint (the
  elbow for a wrist), already chosen: a joint seen right by one camera only can still be placed;

each scored by its reprojection error in every camera (truncated at the inlier threshold, so a disagreeing
view costs 1) and by its segment length, and the candidates of consecutive frames are linked by how far the
joint moves. Viterbi (dynamic programming) picks the cheapest path through the take, parents before children.
Where all views agree there is one candidate in effect and nothing changes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = ["TemporalChoice", "choose_over_time", "limb_levels"]

CHILD_OF = {"elbow": "shoulder", "wrist": "elbow", "knee": "hip", "ankle": "knee", "heel": "ankle",
            "foot_index": "heel", "big_toe": "heel", "small_toe": "heel"}
"""Limb joints and the joint their rigid segment hangs from (per side)."""
SEGMENT_SIGMA = 0.2  # a segment 20 % off its take length costs as much as one disagreeing view
SEGMENT_CAP = 4.0
MIN_STEP_M = 0.05
KEEP_CANDIDATES = 6  # candidates per frame and joint that enter the path search
DISTINCT_M = 0.03  # candidates closer than this are one


@dataclass(frozen=True)
class TemporalChoice:
    """What :func:`choose_over_time` did: points (T, J, 3) and where it moved a point (T, J) bool."""

    xyz: np.ndarray
    changed: np.ndarray


def limb_levels(joints: tuple[str, ...]) -> list[list[tuple[int, int]]]:
    """Joints in levels, parents first: [[(joint, parent index or -1), ...], ...] for the limb chains present
    (shoulders and hips, then elbows and knees, wrists and ankles, heels, toes)."""
    index = {n: i for i, n in enumerate(joints)}
    levels: list[list[tuple[int, int]]] = []
    done: dict[str, int] = {}
    current = [(index[f"{s}_{r}"], -1) for s in ("left", "right") for r in ("shoulder", "hip") if f"{s}_{r}" in index]
    while current:
        levels.append(current)
        done.update({joints[j]: j for j, _ in current})
        nxt = []
        for name, j in index.items():
            side, _, part = name.partition("_")
            parent = f"{side}_{CHILD_OF.get(part, '')}"
            if name not in done and part in CHILD_OF and parent in done:
                nxt.append((j, done[parent]))
        current = nxt
    return levels


def _project_cost(X: np.ndarray, extrinsics: np.ndarray, focal: np.ndarray, xy: np.ndarray, seen: np.ndarray,
                  threshold_px: float) -> np.ndarray:
    """MSAC cost of points X (..., 3) against observations xy (C, ..., 2) seen (C, ...): sum over seen views of
    min(e^2, tau^2) / tau^2 (a view behind the camera costs 1); +inf for a NaN point."""
    cost = np.zeros(X.shape[:-1])
    for c in range(extrinsics.shape[0]):
        cam = X @ extrinsics[c, :, :3].T + extrinsics[c, :, 3]
        with np.errstate(invalid="ignore", divide="ignore"):
            proj = cam[..., :2] / cam[..., 2:3]
            e2 = (focal[c] ** 2) * np.sum((proj - xy[c]) ** 2, -1) / threshold_px**2
        e2 = np.where((cam[..., 2] > 1e-6) & np.isfinite(e2), np.minimum(e2, 1.0), 1.0)
        cost += np.where(seen[c], e2, 0.0)
    return np.where(np.isfinite(X).all(-1), cost, np.inf)


def _pair_points(extrinsics: np.ndarray, xy: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Two-view points of camera pairs (every pair up to 5 cameras, else the C + 2 best-conditioned ones that
    robust triangulation starts from): xy (C, N, 2), seen (C, N) -> (P, N, 3), NaN where a view is missing."""
    from mocap_studio.reconstruction.triangulate import hypothesis_pairs, weighted_dlt

    C = extrinsics.shape[0]
    pairs = itertools.combinations(range(C), 2) if C <= 5 else hypothesis_pairs(extrinsics, C + 2)
    out = []
    for a, b in pairs:
        w = seen[[a, b]].astype(float)
        out.append(weighted_dlt(extrinsics[[a, b]], np.where(seen[[a, b], :, None], xy[[a, b]], np.nan), w))
    return np.stack(out) if out else np.zeros((0, xy.shape[1], 3))


def _ray_sphere(extrinsics: np.ndarray, xy: np.ndarray, seen: np.ndarray, centre: np.ndarray, radius: np.ndarray
                ) -> np.ndarray:
    """Each camera's ray through xy (C, N, 2) cut by spheres (N, 3), radius (N,): (2C, N, 3), the near and far
    cuts (the ray's closest point twice where it misses the sphere); NaN where unseen or behind the camera."""
    out = []
    for c in range(extrinsics.shape[0]):
        R, t = extrinsics[c, :, :3], extrinsics[c, :, 3]
        origin = -R.T @ t
        d = np.concatenate([xy[c], np.ones_like(xy[c][:, :1])], -1) @ R  # R^T [x, y, 1]
        d = d / np.linalg.norm(d, axis=-1, keepdims=True)
        oc = origin - centre
        b = np.sum(d * oc, -1)
        disc = b * b - (np.sum(oc * oc, -1) - radius**2)
        root = np.sqrt(np.maximum(disc, 0.0))
        for s in (-b - root, -b + root):
            ok = seen[c] & np.isfinite(s) & (s > 0)
            out.append(np.where(ok[:, None], origin + s[:, None] * d, np.nan))
    return np.stack(out)


def _prune(cand: np.ndarray, unary: np.ndarray, keep: int = KEEP_CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
    """The robust point and up to ``keep - 1`` other candidates of each frame and joint, cheapest first but at
    least ``DISTINCT_M`` apart (with 8 cameras there are 45 candidates, most of them copies of one point; the
    path's cost grows with the square of their number). Unused slots get an infinite cost."""
    if unary.shape[-1] <= keep:
        return cand, unary
    order = np.argsort(np.where(np.arange(unary.shape[-1]) == 0, -np.inf, unary), axis=-1, kind="stable")
    cand, unary = np.take_along_axis(cand, order[..., None], 2), np.take_along_axis(unary, order, -1)
    picked = np.zeros(unary.shape[:-1] + (keep,), dtype=np.int64)
    free = np.isfinite(unary)
    for k in range(keep):
        if k:
            last = np.take_along_axis(cand, picked[..., k - 1, None, None], 2)  # (T, n, 1, 3)
            with np.errstate(invalid="ignore"):
                free &= ~(np.linalg.norm(cand - last, axis=-1) < DISTINCT_M)
        first = np.argmax(free, axis=-1)  # the cheapest still free (sorted), 0 when none is
        picked[..., k] = np.where(free.any(-1), first, 0)
        free &= np.arange(unary.shape[-1]) != picked[..., k, None]
    out_u = np.take_along_axis(unary, picked, -1)
    repeated = np.zeros(out_u.shape, bool)
    repeated[..., 1:] = picked[..., 1:] == 0
    return np.take_along_axis(cand, picked[..., None], 2), np.where(repeated, np.inf, out_u)


def _viterbi(cand: np.ndarray, unary: np.ndarray, step_m: np.ndarray) -> np.ndarray:
    """Cheapest path: cand (T, n, K, 3), unary (T, n, K) (inf: no candidate), step_m (n,) the typical motion
    per frame. A frame without any candidate carries the previous frame's candidates at no cost (the path
    goes on through the gap). Returns the chosen index (T, n)."""
    T, n, K = unary.shape
    cand, unary = cand.copy(), unary.copy()
    empty = ~np.isfinite(unary).any(-1)  # (T, n)
    for t in range(1, T):
        carry = empty[t]
        cand[t, carry] = cand[t - 1, carry]
        unary[t, carry] = np.where(np.isfinite(unary[t - 1, carry]), 0.0, np.inf)
    back = np.zeros((T, n, K), dtype=np.int32)
    D = unary[0].copy()
    scale = (step_m**2)[:, None, None]
    fresh = np.full((K, K), np.inf)
    fresh[:, 0] = 0.0  # a path that starts here (nothing before it)
    for t in range(1, T):
        move = np.sum((cand[t][:, :, None] - cand[t - 1][:, None, :]) ** 2, -1) / scale  # (n, K, K')
        total = D[:, None, :] + np.where(np.isfinite(move), move, np.inf)
        dead = ~np.isfinite(D).any(-1)
        total[dead] = fresh
        back[t] = np.argmin(total, -1)
        D = unary[t] + np.take_along_axis(total, back[t][..., None], -1)[..., 0]
    path = np.zeros((T, n), dtype=np.int32)
    path[-1] = np.argmin(D, -1)
    for t in range(T - 1, 0, -1):
        path[t - 1] = np.take_along_axis(back[t], path[t][:, None], -1)[:, 0]
    return path


def _step_scale(X: np.ndarray) -> np.ndarray:
    """Typical motion per frame of each joint (n,): 1.5x the median step of the robust points, at least 15 mm."""
    steps = np.linalg.norm(np.diff(X, axis=0), axis=-1)
    with np.errstate(all="ignore"):
        med = np.array([np.nanmedian(s) if np.isfinite(s).any() else np.nan for s in steps.T])
    return np.maximum(np.nan_to_num(1.5 * med, nan=MIN_STEP_M), MIN_STEP_M)


def _segment_cost(cand: np.ndarray, parent: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Cost of each candidate's distance to its parent (T, n, K, 3) vs the take's length (n,)."""
    d = np.linalg.norm(cand - parent[:, :, None], axis=-1)
    dev = (d - length[None, :, None]) / (SEGMENT_SIGMA * length[None, :, None])
    return np.where(np.isfinite(dev), np.minimum(dev**2, SEGMENT_CAP), 0.0)


def _refit(X: np.ndarray, extrinsics: np.ndarray, focal: np.ndarray, xy: np.ndarray, seen: np.ndarray,
           threshold_px: float) -> np.ndarray:
    """Each chosen point (T, n, 3) triangulated again from every view it fits (as robust triangulation's local
    optimisation does): a pair's point fits two views exactly, all its inliers together fit them best."""
    from mocap_studio.reconstruction.triangulate import weighted_dlt

    C = extrinsics.shape[0]
    cam = np.einsum("cij,tnj->ctni", extrinsics[:, :, :3], X) + extrinsics[:, None, None, :, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        e = focal[:, None, None] * np.linalg.norm(cam[..., :2] / cam[..., 2:3] - xy, axis=-1)
    inl = seen & (cam[..., 2] > 0) & (e < threshold_px)
    shape = X.shape
    refit = weighted_dlt(extrinsics, np.where(inl[..., None], xy, np.nan).reshape(C, -1, 2),
                         inl.reshape(C, -1).astype(float)).reshape(shape)
    return np.where((inl.sum(0) >= 2)[..., None] & np.isfinite(refit).all(-1)[..., None], refit, X)


def choose_over_time(
    X: np.ndarray, xy: np.ndarray, seen: np.ndarray, extrinsics: np.ndarray, focal: np.ndarray,
    threshold_px: float, joints: tuple[str, ...],
) -> TemporalChoice:
    """Re-choose the limb joints' points over the take (see the module docstring).

    X (T, J, 3) robust points; xy (C, T, J, 2) undistorted normalized observations; seen (C, T, J) the views
    to use; extrinsics (C, 3, 4); focal (C,) px; ``threshold_px`` the inlier threshold; ``joints`` the
    skeleton's names. Joints outside the limb chains are returned as they were.
    """
    X = np.array(X, float)
    out = X.copy()
    T = X.shape[0]
    for level in limb_levels(joints):
        js = np.array([j for j, _ in level])
        parents = np.array([p for _, p in level])
        n = len(js)
        obs, vis = xy[:, :, js].reshape(xy.shape[0], T * n, 2), seen[:, :, js].reshape(seen.shape[0], T * n)
        cands = [X[:, js][None], _pair_points(extrinsics, obs, vis).reshape(-1, T, n, 3)]
        if (parents >= 0).all():
            centre = out[:, parents]
            length = np.nanmedian(np.linalg.norm(X[:, js] - X[:, parents], axis=-1), axis=0)
            radius = np.broadcast_to(length, (T, n)).reshape(-1)
            cands.append(_ray_sphere(extrinsics, obs, vis, centre.reshape(-1, 3), radius).reshape(-1, T, n, 3))
        cand = np.moveaxis(np.concatenate(cands), 0, 2)  # (T, n, K, 3)
        unary = _project_cost(cand, extrinsics, focal, xy[:, :, js, None], seen[:, :, js, None], threshold_px)
        if (parents >= 0).all():
            unary = unary + _segment_cost(cand, out[:, parents], length)
        cand, unary = _prune(cand, unary)
        path = _viterbi(cand, unary, _step_scale(X[:, js]))
        chosen = _refit(np.take_along_axis(cand, path[..., None, None], 2)[:, :, 0], extrinsics, focal,
                        xy[:, :, js], seen[:, :, js], threshold_px)
        has_views = np.isfinite(unary).any(-1)
        out[:, js] = np.where(has_views[..., None], chosen, np.nan)
    moved = np.linalg.norm(out - X, axis=-1)
    changed = (np.isfinite(out).all(-1) != np.isfinite(X).all(-1)) | (np.nan_to_num(moved) > 1e-6)
    return TemporalChoice(out, changed)
