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

__all__ = ["BoneOutliers", "find_view_swaps", "reject_bone_outliers", "robust_bone_variation"]

# A view is mirrored when the mirrored labels fit the other views' 3D points this much better (cost ratio).
SWAP_RATIO = 0.5
MIN_SWAP_JOINTS = 4  # left/right joints a view must show to be judged


def _view_costs(project: Callable[[int, np.ndarray], np.ndarray], xy: np.ndarray, others: np.ndarray, c: int,
                joints: np.ndarray, perm: np.ndarray, cap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truncated reprojection costs of camera ``c`` as labelled and mirrored against 3D points the other
    cameras agree on: (keep (T,), swap (T,), joints judged (T,))."""
    proj = project(c, others[:, joints])  # (T, K, 2) px
    obs, mirrored = xy[c][:, joints], xy[c][:, perm[joints]]
    seen = np.isfinite(obs).all(-1) & np.isfinite(mirrored).all(-1) & np.isfinite(proj).all(-1)
    keep = np.where(seen, np.minimum(np.linalg.norm(obs - proj, axis=-1), cap), 0.0).sum(1)
    swap = np.where(seen, np.minimum(np.linalg.norm(mirrored - proj, axis=-1), cap), 0.0).sum(1)
    return keep, swap, seen.sum(1)


def _temporal_vote(decision: np.ndarray, ratio: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """Swaps come in runs: a frame that could not be judged, or judged weakly (cost ratio 0.35-0.65), between
    two neighbours that agree takes their decision."""
    out = decision.copy()
    weak = ~judged | ((ratio > 0.7 * SWAP_RATIO) & (ratio < 1.3 * SWAP_RATIO))
    for t in range(1, len(out) - 1):
        if weak[t] and decision[t - 1] == decision[t + 1]:
            out[t] = decision[t - 1]
    return out


def find_view_swaps(
    xy: np.ndarray,
    points: np.ndarray,
    project: Callable[[int, np.ndarray], np.ndarray],
    perm: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    cap_px: float,
) -> np.ndarray:
    """Which views are mirrored: (C, T) bool, True where camera c labels the person left for right at frame t.

    xy (C, T, J, 2) observed pixels (NaN where unseen); ``points`` (T, J, 3) robustly triangulated (a mirrored
    view disagrees with the others on every left/right joint, so the robust triangulation leaves it out);
    ``project(c, X)`` camera c's pixels of points (..., 3); ``perm`` (J,) each joint's mirror;
    ``pairs`` the skeleton's left/right joint pairs. A view is mirrored at a frame when its mirrored labels
    reproject onto the other cameras' points at half the (truncated at ``cap_px``) cost of its own labels, over
    at least 4 left/right joints; weak or unjudged frames between two agreeing neighbours follow them.
    """
    C, T = xy.shape[:2]
    joints = np.array(sorted({j for p in pairs for j in p}), dtype=int)
    swapped = np.zeros((C, T), bool)
    if not len(joints) or C < 3:  # with two cameras there is no third view to arbitrate
        return swapped
    for c in range(C):
        keep, swap, n = _view_costs(project, xy, points, c, joints, perm, cap_px)
        judged = n >= MIN_SWAP_JOINTS
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(keep > 0, swap / keep, 1.0)
        decision = judged & (ratio < SWAP_RATIO)
        swapped[c] = _temporal_vote(decision, ratio, judged)
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
    ``max(tolerance * median, min_tolerance_m)``. The joint to blame is the one with the larger share of
    out-of-range segments among its own (both when they tie); it is removed and the check repeated, so one bad
    joint does not take its good neighbours with it. Returns (xyz with NaN at the removed joints, report).
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
    allowed = np.maximum(tolerance * median, min_tolerance_m)
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
