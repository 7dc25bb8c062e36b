"""Consistency checks between views and over time that triangulation applies before any filter can hide a
fault: whole-view left/right swaps (a detector labelling a person mirrored in one camera for a run of frames),
a whole body half triangulated mirrored (most of its views mirrored at once), and gross outliers in segment
lengths (a forearm of 2 m in one frame).

Pure functions over arrays; the triangulation module calls them and reports what they found.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BoneOutliers", "body_halves", "find_view_swaps", "orient_halves", "reject_bone_outliers",
           "robust_bone_variation"]

SPREAD_MULTIPLE = 4.0  # a segment length further than this many robust deviations from its median is an outlier
MIN_SWAP_JOINTS = 4  # left/right joint pairs a view half must show (against the other views) to be judged


LOWER_BODY = ("hip", "knee", "ankle", "heel", "foot_index", "big_toe", "small_toe")
"""Joint name parts of the lower half; a detector can mirror the upper and the lower half separately."""
SWITCH_COST = 2.0  # changing a view half's labelling between two frames costs as much as two joints' cap
MIRROR_BIAS = 0.04  # a mirrored view costs this share of the cap per joint pair judged (the majority is the reference)


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


def _pair_costs(xy: np.ndarray, fundamental: Callable[[int, int], np.ndarray], group: np.ndarray, perm: np.ndarray,
                cap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epipolar costs of every camera pair's half-body labels: (same (T, P), mirrored (T, P), joint pairs judged
    (T, P)) over the pairs ``itertools.combinations(range(C), 2)``. ``same``: the two views read alike, summed
    truncated distance; ``mirrored``: one view read mirrored (mirroring both is reading both alike, so the cost
    depends only on whether the two views' readings differ). Pairs with fewer than 2 joints judged cost 0."""
    C = xy.shape[0]
    same, mirrored, counts = [], [], []
    for c, v in itertools.combinations(range(C), 2):
        F = fundamental(c, v)
        other, own, flipped = xy[v][:, group], xy[c][:, group], xy[c][:, perm[group]]
        dk, ds = _epipolar(F, own, other), _epipolar(F, flipped, other)
        ok = np.isfinite(dk) & np.isfinite(ds)
        n = ok.sum(1)
        use = n >= 2
        same.append(np.where(use, np.where(ok, np.minimum(dk, cap), 0.0).sum(1), 0.0))
        mirrored.append(np.where(use, np.where(ok, np.minimum(ds, cap), 0.0).sum(1), 0.0))
        counts.append(np.where(use, n, 0))
    return np.stack(same, 1), np.stack(mirrored, 1), np.stack(counts, 1)


def _cheapest_path(unary: np.ndarray, step: Callable[[int], np.ndarray]) -> np.ndarray:
    """Viterbi: the state per frame (T,) minimising the unary costs (T, S) plus ``step(t)``, the (to, from) cost
    (S, S) of going from frame t - 1's state to frame t's."""
    T, S = unary.shape
    D = unary[0].copy()
    back = np.zeros(unary.shape, dtype=np.int32)
    for t in range(1, T):
        total = D[None, :] + step(t)
        back[t] = np.argmin(total, -1)
        D = unary[t] + total[np.arange(S), back[t]]
    path = np.zeros(T, dtype=np.int32)
    path[-1] = int(np.argmin(D))
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


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
    Every pair of views is compared by epipolar distance (truncated at ``cap_px``) as read alike and with one of
    them mirrored: this needs no 3D point, so it holds where two views are nearly opposite and fix no depth.
    All cameras' readings are chosen together (every labelling of the C views with up to half of them
    mirrored, at most 3 beyond 8 cameras; each mirrored view costs a small bias so that the unmirrored
    majority is the reference): a view mirrored at the same time as another
    is itself a variable rather than a vote, and a pair whose geometry cannot tell left from right (both
    readings fit alike) weighs nothing. A path over the take (a camera's switch costs as much as two capped
    joints) decides; a view's half needs at least 4 joint pairs judged in a frame for that frame to count.
    """
    C, T, J = xy.shape[:3]
    swapped = np.zeros((C, T, J), bool)
    if C < 3 or T == 0:  # with two cameras there is no third view to arbitrate
        return swapped
    # labellings with up to half the views mirrored (the rest mirror these), at most 3 beyond 8 cameras
    most = C // 2 if C <= 8 else 3
    states = np.zeros((sum(math.comb(C, k) for k in range(most + 1)), C), bool)
    for i, views in enumerate(v for k in range(most + 1) for v in itertools.combinations(range(C), k)):
        states[i, list(views)] = True
    pairs = np.array(list(itertools.combinations(range(C), 2)))
    differ = (states[:, pairs[:, 0]] != states[:, pairs[:, 1]]).astype(float)  # (S, P)
    # changing a camera's labelling between two frames costs SWITCH_COST
    switches = SWITCH_COST * (states[:, None, :] != states[None, :, :]).sum(-1)  # (to, from)
    for group in halves:
        same, mirrored, n = _pair_costs(xy, fundamental, group, perm, cap_px)
        seen = np.zeros((T, C), int)  # joint pairs judged per view
        np.add.at(seen.T, pairs[:, 0], n.T)
        np.add.at(seen.T, pairs[:, 1], n.T)
        judged = seen >= MIN_SWAP_JOINTS
        # a view not judged in a frame costs nothing either way: the path carries its state through the frame
        unary = (same.sum(-1)[:, None] + (mirrored - same) @ differ.T  # (T, S)
                 + MIRROR_BIAS * cap_px * np.where(judged, seen, 0) @ states.T.astype(float)) / cap_px
        labelled = states[_cheapest_path(unary, lambda t: switches)]  # (T, C)
        for c in range(C):
            swapped[c][np.ix_(labelled[:, c], group)] = True
    return swapped


# orient_halves: a body half's left-to-right axis is the sum of its parts' unit left-minus-right directions
AXIS_PARTS = ((("shoulder",), ("elbow",), ("ear", "eye", "mouth")),
              (("hip",), ("knee",), ("ankle",), ("heel", "foot_index", "big_toe")))
"""Per half (upper, lower): the parts whose left and right sides give the half's axis, one vote each (a part's
pairs averaged: the face's ears, eyes and mouth vote once), so one part read the other way round (the shoulders
alone, or a face seen from behind) does not turn the axis. Not the wrists: they cross; elbows and knees stay on
their side."""
TURN_COST = 4.0  # an axis reversed between two frames (a half turned 180 degrees in one frame) costs this
"""(see :func:`_clear`: a quarter turn costs nothing either way)"""
TWIST_COST = 2.0  # the upper half's axis reversed against the lower's at one frame (a 180 degree twist)
RAW_COST = 0.2  # per view whose labels end up other than the detector's
TURN_MEMORY_S = 0.5  # across a gap the axis's memory fades with this time constant (people turn round in 0.5 s)


def _axis(X: np.ndarray, joints: Sequence[str], pairs: Sequence[tuple[int, int]],
          parts: Sequence[Sequence[str]], up: np.ndarray) -> np.ndarray:
    """(T, 3) a half's left-to-right axis across the body's ``up``: the sum of its ``parts``' unit directions (each
    part's pairs averaged); NaN where fewer than two parts are seen."""
    total = np.zeros(X.shape[::2])
    count = np.zeros(X.shape[0])
    for part in parts:
        chosen = [(a, b) for a, b in pairs if joints[a].removeprefix("left_").startswith(tuple(part))]
        if not chosen:
            continue
        d = np.stack([X[:, a] - X[:, b] for a, b in chosen], 1)  # (T, P, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            unit = _unit(_flat(np.nanmean(d, 1), up))
        ok = np.isfinite(unit).all(-1)
        total[ok] += unit[ok]
        count += ok
    return np.where((count >= 2)[:, None], total, np.nan)


def _clear(cos: np.ndarray | float) -> np.ndarray | float:
    """How clearly two axes agree (+1) or are reversed (-1): their cosine with the middle half (-0.5 to 0.5) taken
    as saying nothing, since an axis made from a noisy frame can swing a quarter turn but a mirrored one reverses."""
    return np.sign(cos) * np.clip(2 * np.abs(cos) - 1, 0, 1)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1e-9, v / n, np.nan)


def _flat(v: np.ndarray, up: np.ndarray) -> np.ndarray:
    """v with its component along the (unit) body axis ``up`` removed."""
    return v - (v * up).sum(-1, keepdims=True) * up


def _mean_named(X: np.ndarray, index: dict[str, int], names: Sequence[str]) -> np.ndarray:
    idx = [index[n] for n in names if n in index]
    if not idx:
        return np.full((X.shape[0], 3), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(X[:, idx], axis=1)


def orient_halves(
    X: np.ndarray, joints: Sequence[str], pairs: Sequence[tuple[int, int]], relabelled: np.ndarray,
    views: np.ndarray, fps: float,
) -> np.ndarray:
    """Which frames' upper and lower halves were triangulated mirrored: (T, 2) bool, True where every view's
    labels of that half should be read the other way round.

    :func:`find_view_swaps` settles which views disagree, not which side is right: where most of a half's views
    are mirrored at once (a body seen from behind taken for one seen from the front by two cameras of three, a
    walker's legs crossed in two side views), the right view is the one turned and the half is triangulated
    mirrored, 0.2-0.5 m off. A body cannot do what that shows: its left-to-right axis reverses between two
    frames (a half turning 180 degrees in 1/30 s) and the upper half's axis points against the lower's. So each
    half's orientation is chosen over the whole take by a four-state path (upper, lower: as triangulated or
    mirrored) whose costs are those reversals (``TURN_COST`` weighted by how far the axis turned, fading across a
    gap with ``TURN_MEMORY_S``; ``TWIST_COST`` between the halves) and each view read other than the detector read
    it (``RAW_COST``). Where the face or the feet point was tried as well and taken out: in crowds the detector
    places a face seen from behind anywhere, and it turned a good frame (a held-out take, 29.4 -> 32.5 mm).

    X (T, J, 3) the triangulation; ``pairs`` (left, right) joint indices; ``relabelled`` (C, T, J) bool, views
    already read mirrored; ``views`` (C, T, J) bool, observations used. Axes are taken across the body's own
    up (mid-hips to mid-shoulders), so the world's axes do not matter.
    """
    T = X.shape[0]
    flips = np.zeros((T, 2), bool)
    index = {n: i for i, n in enumerate(joints)}
    upper = ("left_shoulder", "right_shoulder")
    lower = ("left_hip", "right_hip")
    if T < 2 or not all(n in index for n in upper + lower):
        return flips
    up = _unit(_mean_named(X, index, upper) - _mean_named(X, index, lower))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        typical = _unit(np.nanmedian(up, axis=0))
    if not np.isfinite(typical).all():
        return flips
    up = np.where(np.isfinite(up).all(-1, keepdims=True), up, typical)
    axes: list[np.ndarray] = []
    groups = []
    for parts in AXIS_PARTS:
        axes.append(_axis(X, joints, pairs, parts, up))
        names = tuple(n for part in parts for n in part)
        groups.append(sorted({j for a, b in pairs for j in (a, b) if joints[a].removeprefix("left_").startswith(names)}))
    # reliability: an axis much shorter than usual (joints collapsed onto each other) says little
    rel = []
    for a in axes:
        length = np.linalg.norm(a, axis=-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            typical_len = np.nanmedian(length)
        rel.append(np.clip(np.nan_to_num(length / typical_len) if typical_len > 0 else np.zeros(T), 0, 1))
    unit = [_unit(a) for a in axes]
    # unary (T, 2 halves, 2 states): each view read other than the detector read it
    unary = np.zeros((T, 2, 2))
    for h in range(2):
        g = groups[h]
        if g:
            seen = views[:, :, g].any(-1)  # (C, T)
            turned = (relabelled[:, :, g].any(-1) & seen).sum(0)
            unary[:, h, 0] += RAW_COST * turned
            unary[:, h, 1] += RAW_COST * (seen.sum(0) - turned)
    # pairwise over time per half: the axis compared with its last known direction, memory fading over gaps
    turn = np.zeros((T, 2))  # cos between frame t's axis and the last known one, times the weight
    memory = np.exp(-1.0 / max(fps * TURN_MEMORY_S, 1e-9))
    for h in range(2):
        last, weight = None, 0.0
        for t in range(T):
            if np.isfinite(unit[h][t]).all():
                if last is not None:
                    turn[t, h] = TURN_COST * weight * rel[h][t] * _clear(float(np.dot(last, unit[h][t])))
                last, weight = unit[h][t], rel[h][t]
            weight *= memory
    twist = TWIST_COST * _clear(np.nan_to_num((unit[0] * unit[1]).sum(-1))) * np.minimum(rel[0], rel[1])
    # four states (upper flipped, lower flipped); a state's sign per half: +1 as triangulated, -1 mirrored
    states = np.array([(0, 0), (0, 1), (1, 0), (1, 1)])
    sign = 1 - 2 * states  # (4, 2)
    node = unary[:, 0][:, states[:, 0]] + unary[:, 1][:, states[:, 1]]  # (T, 4)
    node += (np.abs(twist)[:, None] - twist[:, None] * (sign[:, 0] * sign[:, 1])[None]) / 2
    agree = sign[:, None, :] * sign[None, :, :]  # (to, from, 2)
    # (to, from): nothing where the axis keeps its way between frames, the reversal's weight where it turns
    path = _cheapest_path(node, lambda t: ((np.abs(turn[t]) - turn[t] * agree) / 2).sum(-1))
    return states[path].astype(bool)


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
