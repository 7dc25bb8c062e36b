"""Consistency checks between views and over time that triangulation applies before any filter can hide a
fault: whole-view left/right swaps (a detector labelling a person mirrored in one camera for a run of frames)
and gross outliers in segment lengths (a forearm of 2 m in one frame).

Pure functions over arrays; the triangulation module calls them and reports what they found.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BoneOutliers", "body_halves", "find_view_swaps", "reject_bone_outliers", "robust_bone_variation"]

SPREAD_MULTIPLE = 4.0  # a segment length further than this many robust deviations from its median is an outlier
MIN_SWAP_JOINTS = 4  # left/right joint pairs a view half must show (against the other views) to be judged


LOWER_BODY = ("hip", "knee", "ankle", "heel", "foot_index", "big_toe", "small_toe")
"""Joint name parts of the lower half; a detector can mirror the upper and the lower half separately."""
SWITCH_COST = 2.0  # changing a view half's labelling between two frames costs as much as two joints' cap
MIRROR_BIAS = 0.04  # the mirrored reading must beat the detected one by this share of the cap per joint pair


def body_halves(joints: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """The left/right joints (both sides' indices) of the upper and of the lower half of the body."""
    lower = {j for p in pairs for j in p if any(joints[j].endswith(part) for part in LOWER_BODY)}
    upper = {j for p in pairs for j in p} - lower
    return [np.array(sorted(g), dtype=int) for g in (upper, lower) if g]


def _epipolar(F: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Symmetric distance (px) of ideal pixels a (..., 2) in one view and b (..., 2) in another to each other's
    epipolar lines, ``b^T F a = 0``."""
    ha = np.concatenate([a, np.ones_like(a[..., :1])], -1)
    hb = np.concatenate([b, np.ones_like(b[..., :1])], -1)
    lb, la = ha @ F.T, hb @ F
    num = np.abs(np.sum(hb * lb, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * (num / np.linalg.norm(lb[..., :2], axis=-1) + num / np.linalg.norm(la[..., :2], axis=-1))


def _half_costs(xy: np.ndarray, fundamental: Callable[[int, int], np.ndarray], c: int, group: np.ndarray,
                perm: np.ndarray, cap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epipolar costs of view c's half-body labels as detected and mirrored against the other views' labels:
    (keep (T,), swap (T,), joint pairs judged (T,)). Each is the median over the other views of the mean
    truncated distance, times the pairs judged: one other view that is itself mirrored at the time cannot
    outvote the rest."""
    keeps, swaps, counts = [], [], []
    for v in range(xy.shape[0]):
        if v == c:
            continue
        F = fundamental(c, v)
        other, own, mirrored = xy[v][:, group], xy[c][:, group], xy[c][:, perm[group]]
        dk, ds = _epipolar(F, own, other), _epipolar(F, mirrored, other)
        ok = np.isfinite(dk) & np.isfinite(ds)
        n = ok.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            keeps.append(np.where(n >= 2, np.where(ok, np.minimum(dk, cap), 0.0).sum(1) / n, np.nan))
            swaps.append(np.where(n >= 2, np.where(ok, np.minimum(ds, cap), 0.0).sum(1) / n, np.nan))
        counts.append(n)
    n = np.sum(counts, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        keep, swap = np.nanmedian(keeps, axis=0), np.nanmedian(swaps, axis=0)
    return np.nan_to_num(keep * n), np.nan_to_num(swap * n), n


def _two_state_path(keep: np.ndarray, swap: np.ndarray, switch: float) -> np.ndarray:
    """Viterbi over (labelled as detected, mirrored) with a cost ``switch`` for changing state: (T,) bool."""
    T = len(keep)
    cost = np.stack([keep, swap], -1)
    D = cost[0].copy()
    back = np.zeros((T, 2), dtype=np.int8)
    step = np.array([[0.0, switch], [switch, 0.0]])
    for t in range(1, T):
        total = D[None, :] + step  # (to, from)
        back[t] = np.argmin(total, -1)
        D = cost[t] + total[np.arange(2), back[t]]
    path = np.zeros(T, dtype=np.int8)
    path[-1] = int(np.argmin(D))
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path.astype(bool)


def find_view_swaps(
    xy: np.ndarray,
    fundamental: Callable[[int, int], np.ndarray],
    perm: np.ndarray,
    halves: Sequence[np.ndarray],
    cap_px: float,
) -> np.ndarray:
    """Which views label which half of the body mirrored: (C, T, J) bool, True where camera c's joint j at frame
    t holds its mirror's detection (the person's left called right, as detectors do for runs of frames, for the
    whole body or only its upper or lower half).

    xy (C, T, J, 2) ideal (undistorted) pixels, NaN where unseen; ``fundamental(a, b)`` the (3, 3) matrix with
    ``u_b^T F u_a = 0``; ``perm`` (J,) each joint's mirror; ``halves`` the left/right joints of each half.
    For each view and half, its labels as detected and mirrored are put against every other view's by epipolar
    distance (truncated at ``cap_px``): this needs no 3D point, so it holds where two of the other views are
    nearly opposite and fix no depth. A two-state path over the take (a switch costs as much as two capped
    joints) decides; a half needs at least 4 joint pairs judged in a frame to count as mirrored there.
    """
    C, T, J = xy.shape[:3]
    swapped = np.zeros((C, T, J), bool)
    if C < 3:  # with two cameras there is no third view to arbitrate
        return swapped
    for c in range(C):
        for group in halves:
            keep, swap, n = _half_costs(xy, fundamental, c, group, perm, cap_px)
            judged = n >= MIN_SWAP_JOINTS
            # unjudged frames cost nothing either way: the path carries the neighbours' state through them
            keep, swap = np.where(judged, keep, 0.0), np.where(judged, swap + MIRROR_BIAS * cap_px * n, 0.0)
            mirrored = _two_state_path(keep / cap_px, swap / cap_px, SWITCH_COST)
            swapped[c][np.ix_(mirrored, group)] = True
    return swapped


@dataclass(frozen=True)
class BoneOutliers:
    """What :func:`reject_bone_outliers` removed."""

    removed: np.ndarray
    """(T, J) bool: joints set missing because their segments were far from the take's lengths."""
    raw_variation: float
    """Mean over segments of the robust spread of lengths (1.4826 MAD / median) before removal."""
    worst: tuple[str, float, int] | None
    """(segment "a-b", length m, frame) of the worst length seen, for the report."""


def _nanmedian(a: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN (NaN for all-missing columns, without a warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=0)


def robust_bone_variation(xyz: np.ndarray, segments: np.ndarray) -> float:
    """Mean over segments of 1.4826 * MAD / median of the segment's length over the take (NaN if none)."""
    if not len(segments):
        return float("nan")
    lengths = np.linalg.norm(xyz[:, segments[:, 1]] - xyz[:, segments[:, 0]], axis=-1)
    med = _nanmedian(lengths)
    mad = _nanmedian(np.abs(lengths - med))
    with np.errstate(all="ignore"):
        cv = 1.4826 * mad / med
    cv = cv[np.isfinite(cv)]
    return float(cv.mean()) if cv.size else float("nan")


def reject_bone_outliers(
    xyz: np.ndarray, segments: Sequence[tuple[int, int]], names: Sequence[str],
    tolerance: float = 0.3, min_tolerance_m: float = 0.05, iterations: int = 4,
) -> tuple[np.ndarray, BoneOutliers]:
    """Set missing the joints whose segments are far from the take's robust lengths.

    xyz (T, J, 3) raw triangulated points (NaN where missing); ``segments`` the rigid (a, b) joint pairs. A
    segment is out of range at a frame when its length differs from its median over the take by more than
    ``max(tolerance * median, min_tolerance_m)`` and 4 robust standard deviations of that segment's length. The
    joint to blame is the one with the larger share of out-of-range segments among its own (both when they
    tie); it is removed and the check repeated, so one bad joint does not take its good neighbours with it.
    Returns (xyz with NaN at the removed joints, report).
    """
    xyz = np.array(xyz, float)
    seg = np.array(segments, dtype=int).reshape(-1, 2)
    T, J = xyz.shape[:2]
    removed = np.zeros((T, J), bool)
    raw = robust_bone_variation(xyz, seg)
    if not len(seg):
        return xyz, BoneOutliers(removed, raw, None)
    lengths = np.linalg.norm(xyz[:, seg[:, 1]] - xyz[:, seg[:, 0]], axis=-1)  # (T, S)
    median = _nanmedian(lengths)
    # a segment the detector places loosely (hip width: each view puts the hips elsewhere) varies more
    spread = SPREAD_MULTIPLE * 1.4826 * _nanmedian(np.abs(lengths - median))
    allowed = np.maximum(np.maximum(tolerance * median, min_tolerance_m), np.nan_to_num(spread))
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = np.abs(lengths - median) / np.where(median > 0, median, np.nan)
    worst = None
    if np.isfinite(dev).any():
        t, s = np.unravel_index(int(np.nanargmax(dev)), dev.shape)
        worst = (f"{names[seg[s, 0]]}-{names[seg[s, 1]]}", float(lengths[t, s]), int(t))
    degree = np.zeros(J)
    np.add.at(degree, seg[:, 0], 1)
    np.add.at(degree, seg[:, 1], 1)
    for _ in range(iterations):
        lengths = np.linalg.norm(xyz[:, seg[:, 1]] - xyz[:, seg[:, 0]], axis=-1)
        with np.errstate(invalid="ignore"):
            bad = np.abs(lengths - median) > allowed  # NaN compares False
        if not bad.any():
            break
        count = np.zeros((T, J))
        np.add.at(count, (slice(None), seg[:, 0]), bad)
        np.add.at(count, (slice(None), seg[:, 1]), bad)
        share = count / np.maximum(degree, 1)
        a, b = share[:, seg[:, 0]], share[:, seg[:, 1]]  # (T, S)
        blame = np.zeros((T, J), bool)
        t_idx, s_idx = np.nonzero(bad)
        sa, sb = a[t_idx, s_idx], b[t_idx, s_idx]
        blame[t_idx[sa >= sb], seg[s_idx[sa >= sb], 0]] = True
        blame[t_idx[sb >= sa], seg[s_idx[sb >= sa], 1]] = True
        xyz[blame] = np.nan
        removed |= blame
    return xyz, BoneOutliers(removed, raw, worst)
