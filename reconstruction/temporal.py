"""Choosing each limb joint's 3D point over the whole take, not frame by frame.

A hidden wrist is often detected with confidence in the wrong place by two cameras at once, and the two wrong
views agree with each other better than the one camera that sees it: frame by frame, robust triangulation
takes the wrong pair. Over time the mistake is plain (the wrist jumps 20-30 cm and back, the forearm changes
length). So, per joint, every frame gets a few candidate points:

- the robust triangulation's point;
- every camera pair's two-view point;
- for limb joints, each camera's ray cut by the sphere of the segment's length around the parent joint (the
  elbow for a wrist), already chosen: a joint seen right by one camera only can still be placed;
- the same with one camera's labels read mirrored (its left for right), at a cost of 1.5 views, for the
  left/right confusions the mirrored-view check (``consistency.find_view_swaps``) did not settle;
- the same two kinds of point (pairs and rays) from the weak views too, where they are given: views the
  detector scored below the confidence triangulation trusts, which offer places but are not scored against
  (MediaPipe's visibility is not accuracy: in a crowd a limb a camera sees end-on or half hidden is often placed
  within a few pixels at a visibility of 0.05, while the two confident views left are nearly opposite and fix
  little depth);

each scored by its reprojection error in every camera (truncated at the inlier threshold, so a disagreeing
view costs 1; a weak view, where ``weak_weight`` asks, that much of it) and by its segment length, and the
candidates of consecutive frames are linked by how far the joint moves. Viterbi (dynamic programming) picks
the cheapest path through the take, parents before children.
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
MIRROR_COST = 1.5  # reading one view's labels mirrored costs as much as one disagreeing view
LEAVE_COST = 0.5
"""Where three or more views agree on the robust point, any other candidate costs this much more (half a
disagreeing view): where all four views of a shoulder agree within 5-11 px (an 11 px threshold), a two-view point
that fits two of them exactly and misses two scores about the same, and the path had taken it every other frame
(116 mm off). A robust point only two views agree on (a hidden wrist two cameras place alike) gets no such
preference."""


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


def _project_cost(X: np.ndarray, extrinsics: np.ndarray, focal: np.ndarray, obs: np.ndarray, seen: np.ndarray,
                  obs_m: np.ndarray, seen_m: np.ndarray, mirror: np.ndarray, threshold_px: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """MSAC cost of candidate points X (T, n, K, 3): over the seen views, min(e^2, tau^2) / tau^2 (a view behind
    the camera costs 1), each view compared with its labels as detected, obs (C, T, n, 2) / seen (C, T, n), or
    where ``mirror`` (K, C) says so for the candidate with its mirrored labels, obs_m / seen_m; +inf for NaN.
    Also returns each candidate's number of seen views within the threshold (T, n, K)."""
    cost = np.zeros(X.shape[:-1])
    agree = np.zeros(X.shape[:-1], int)
    for c in range(extrinsics.shape[0]):
        cam = X @ extrinsics[c, :, :3].T + extrinsics[c, :, 3]
        with np.errstate(invalid="ignore", divide="ignore"):
            proj = cam[..., :2] / cam[..., 2:3]
        use_m = mirror[:, c]  # (K,)
        target = np.where(use_m[:, None], obs_m[c][:, :, None], obs[c][:, :, None])  # (T, n, K, 2)
        visible = np.where(use_m, seen_m[c][..., None], seen[c][..., None])  # (T, n, K)
        with np.errstate(invalid="ignore"):
            e2 = (focal[c] ** 2) * np.sum((proj - target) ** 2, -1) / threshold_px**2
        e2 = np.where((cam[..., 2] > 1e-6) & np.isfinite(e2), np.minimum(e2, 1.0), 1.0)
        cost += np.where(visible, e2, 0.0)
        agree += visible & (e2 < 1.0)
    return np.where(np.isfinite(X).all(-1), cost, np.inf), agree


def _camera_pairs(extrinsics: np.ndarray) -> list[tuple[int, int]]:
    """Every camera pair up to 5 cameras, else the C + 2 best-conditioned ones robust triangulation starts from."""
    from mocap_studio.reconstruction.triangulate import hypothesis_pairs

    C = extrinsics.shape[0]
    pairs = itertools.combinations(range(C), 2) if C <= 5 else hypothesis_pairs(extrinsics, C + 2)
    return [(int(a), int(b)) for a, b in pairs]


def _pair_points(extrinsics: np.ndarray, xy: np.ndarray, seen: np.ndarray, pairs: list[tuple[int, int]]
                 ) -> np.ndarray:
    """Two-view points of camera ``pairs``: xy (C, N, 2), seen (C, N) -> (P, N, 3), NaN where a view is missing."""
    from mocap_studio.reconstruction.triangulate import weighted_dlt

    out = []
    for a, b in pairs:
        w = seen[[a, b]].astype(float)
        out.append(weighted_dlt(extrinsics[[a, b]], np.where(seen[[a, b], :, None], xy[[a, b]], np.nan), w))
    return np.stack(out) if out else np.zeros((0, xy.shape[1], 3))


def _ray_sphere(extrinsics: np.ndarray, xy: np.ndarray, seen: np.ndarray, centre: np.ndarray, radius: np.ndarray,
                cameras: list[int]) -> np.ndarray:
    """Each of ``cameras``' rays through xy (C, N, 2) cut by spheres (N, 3), radius (N,): (2 len(cameras), N, 3),
    the near and far cuts (the ray's closest point twice where it misses the sphere); NaN where unseen or behind
    the camera."""
    out = []
    for c in cameras:
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


def _prune(cand: np.ndarray, unary: np.ndarray, keep: int = KEEP_CANDIDATES
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The robust point and up to ``keep - 1`` other candidates of each frame and joint, cheapest first but at
    least ``DISTINCT_M`` apart (with 8 cameras there are 45 candidates, most of them copies of one point; the
    path's cost grows with the square of their number). Unused slots get an infinite cost. Also returns each
    kept candidate's index among the input's (T, n, keep)."""
    if unary.shape[-1] <= keep:
        return cand, unary, np.broadcast_to(np.arange(unary.shape[-1]), unary.shape).copy()
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
    return (np.take_along_axis(cand, picked[..., None], 2), np.where(repeated, np.inf, out_u),
            np.take_along_axis(order, picked, -1))


def _viterbi(cand: np.ndarray, unary: np.ndarray, step_m: np.ndarray) -> np.ndarray:
    """Cheapest path: cand (T, n, K, 3), unary (T, n, K) (inf: no candidate), step_m (n,) the typical motion
    per frame. A frame without any candidate carries the previous frame's candidates at no cost (the path
    goes on through the gap), and the first frame after a gap of g frames may move g + 1 steps as cheaply as
    one frame moves one (a performer back in view after a second is rarely where he left). Returns the chosen
    index (T, n)."""
    T, n, K = unary.shape
    cand, unary = cand.copy(), unary.copy()
    empty = ~np.isfinite(unary).any(-1)  # (T, n)
    elapsed = np.ones((T, n))  # frames since the last frame with candidates
    for t in range(1, T):
        carry = empty[t]
        cand[t, carry] = cand[t - 1, carry]
        unary[t, carry] = np.where(np.isfinite(unary[t - 1, carry]), 0.0, np.inf)
        elapsed[t] = np.where(empty[t - 1], elapsed[t - 1] + 1, 1)
    back = np.zeros((T, n, K), dtype=np.int32)
    D = unary[0].copy()
    fresh = np.full((K, K), np.inf)
    fresh[:, 0] = 0.0  # a path that starts here (nothing before it)
    for t in range(1, T):
        scale = ((step_m * elapsed[t]) ** 2)[:, None, None]
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
    """Each chosen point (T, n, 3) triangulated again from every view it fits, xy (C, T, n, 2) and seen (C, T, n)
    the labels it was chosen against (as robust triangulation's local optimisation does: a pair's point fits
    two views exactly, all its inliers together fit them best)."""
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


def _level_candidates(level: list[tuple[int, int]], X: np.ndarray, out: np.ndarray, xy: np.ndarray,
                      seen: np.ndarray, perm: np.ndarray, extrinsics: np.ndarray, weak: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Candidates (T, n, K, 3) of a level's joints, which views each reads mirrored (K, C), and the segment
    lengths (n,) when the level hangs from parents (else None). ``weak`` (C, T, J): views that offer candidates
    beside the seen ones."""
    js = np.array([j for j, _ in level])
    parents = np.array([p for _, p in level])
    T, n, C = X.shape[0], len(js), extrinsics.shape[0]
    labels = {False: (xy[:, :, js].reshape(C, T * n, 2), seen[:, :, js].reshape(C, T * n)),
              True: (xy[:, :, perm[js]].reshape(C, T * n, 2), seen[:, :, perm[js]].reshape(C, T * n))}
    pairs = _camera_pairs(extrinsics)
    cands, mirror = [X[:, js].reshape(1, -1, 3)], [np.zeros(C, bool)]

    def add(points: np.ndarray, mirrored_view: int | None) -> None:
        cands.append(points)
        mask = np.zeros(C, bool)
        if mirrored_view is not None:
            mask[mirrored_view] = True
        mirror.extend([mask] * len(points))

    length = None
    if (parents >= 0).all():
        length = np.nanmedian(np.linalg.norm(X[:, js] - X[:, parents], axis=-1), axis=0)
    centre = out[:, parents].reshape(-1, 3) if length is not None else None
    radius = np.broadcast_to(length, (T, n)).reshape(-1) if length is not None else None
    add(_pair_points(extrinsics, *labels[False], pairs), None)
    if centre is not None:
        add(_ray_sphere(extrinsics, *labels[False], centre, radius, list(range(C))), None)
    if weak is not None and weak[:, :, js].any():
        only_weak = (weak[:, :, js] & ~seen[:, :, js]).reshape(C, T * n)
        # pairs with a weak view (those of two seen views are in already)
        with_weak = [(a, b) for a, b in pairs if only_weak[[a, b]].any()]
        points = _pair_points(extrinsics, labels[False][0], labels[False][1] | only_weak, with_weak)
        add(np.where((only_weak[[a for a, _ in with_weak]] | only_weak[[b for _, b in with_weak]])[..., None],
                     points, np.nan), None)
        if centre is not None:
            add(_ray_sphere(extrinsics, labels[False][0], only_weak, centre, radius, list(range(C))), None)
    for c in range(C):  # view c labelling the person mirrored (a detector's left/right swap, whole or partial)
        obs = np.where((np.arange(C) == c)[:, None, None], labels[True][0], labels[False][0])
        vis = np.where((np.arange(C) == c)[:, None], labels[True][1], labels[False][1])
        add(_pair_points(extrinsics, obs, vis, [p for p in pairs if c in p]), c)
        if centre is not None:
            add(_ray_sphere(extrinsics, obs, vis, centre, radius, [c]), c)
    cand = np.moveaxis(np.concatenate(cands).reshape(-1, T, n, 3), 0, 2)
    return cand, np.array(mirror), length


def choose_over_time(
    X: np.ndarray, xy: np.ndarray, seen: np.ndarray, extrinsics: np.ndarray, focal: np.ndarray,
    threshold_px: float, joints: tuple[str, ...], perm: np.ndarray | None = None, weak: np.ndarray | None = None,
    weak_weight: float = 0.0,
) -> TemporalChoice:
    """Re-choose the limb joints' points over the take (see the module docstring).

    X (T, J, 3) robust points; xy (C, T, J, 2) undistorted normalized observations; seen (C, T, J) the views
    to use; extrinsics (C, 3, 4); focal (C,) px; ``threshold_px`` the inlier threshold; ``joints`` the
    skeleton's names; ``perm`` (J,) each joint's left/right mirror (candidates then also read one view's labels
    mirrored); ``weak`` (C, T, J) views that offer candidate points (see the module docstring), and are scored
    at ``weak_weight`` of a seen view (each as a seen view is, with its labels as detected; 0: not at all).
    Joints outside the limb chains are returned as they were.
    """
    X = np.array(X, float)
    out = X.copy()
    perm = np.arange(X.shape[1]) if perm is None else np.asarray(perm)
    for level in limb_levels(joints):
        js = np.array([j for j, _ in level])
        parents = np.array([p for _, p in level])
        cand, mirror, length = _level_candidates(level, X, out, xy, seen, perm, extrinsics, weak)
        obs, vis, obs_m, vis_m = xy[:, :, js], seen[:, :, js], xy[:, :, perm[js]], seen[:, :, perm[js]]
        unary, agree = _project_cost(cand, extrinsics, focal, obs, vis, obs_m, vis_m, mirror, threshold_px)
        unary = unary + MIRROR_COST * mirror.sum(1)  # a label swap is rarer than a noisy view
        if weak is not None and weak_weight > 0:  # the weak views' say, at their weight
            only = weak[:, :, js] & ~vis
            said, _ = _project_cost(cand, extrinsics, focal, obs, only, obs_m, only, np.zeros_like(mirror),
                                    threshold_px)
            unary = unary + weak_weight * np.where(np.isfinite(said), said, 0.0)
        # the robust point (candidate 0), where three or more views agree on it, stands unless another is
        # clearly better
        unary[..., 1:] += np.where(agree[..., 0] >= 3, LEAVE_COST, 0.0)[..., None]
        if length is not None:
            unary = unary + _segment_cost(cand, out[:, parents], length)
        cand, unary, kind = _prune(cand, unary)
        path = _viterbi(cand, unary, _step_scale(X[:, js]))
        mirrored = mirror[np.take_along_axis(kind, path[..., None], -1)[..., 0]]  # (T, n, C)
        flip = np.moveaxis(mirrored, -1, 0)  # (C, T, n)
        chosen = _refit(np.take_along_axis(cand, path[..., None, None], 2)[:, :, 0], extrinsics, focal,
                        np.where(flip[..., None], obs_m, obs), np.where(flip, vis_m, vis), threshold_px)
        has_views = np.isfinite(unary).any(-1)
        out[:, js] = np.where(has_views[..., None], chosen, np.nan)
    moved = np.linalg.norm(out - X, axis=-1)
    changed = (np.isfinite(out).all(-1) != np.isfinite(X).all(-1)) | (np.nan_to_num(moved) > 1e-6)
    return TemporalChoice(out, changed)
