"""Refine a calibration from the performer: a bundle adjustment over 2D keypoint correspondences of a
moving person or animal, for when the board was imprecise, moved, or is gone.

The points are triangulated with the current cameras, a well-spread subset of those that reproject
consistently is chosen, and cameras and points are adjusted together with a robust loss; this repeats
with a tighter consistency threshold. The refined rig is then moved back onto the starting rig by the
similarity transform that best maps its camera centres onto the old ones, so the world frame and the
metric scale (which keypoints alone cannot fix) are kept.

Triangulation is passed in as a function (the reconstruction stage owns it; calibration does not import
later stages).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from mocap_studio.calibration.bundle import BundleConfig, bundle_adjust_points
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.calibration.compare import kabsch

log = logging.getLogger(__name__)

Triangulator = Callable[[CameraRig, np.ndarray], np.ndarray]
"""triangulate(rig, uv (C, N, 2) observed pixels with NaN) -> points (N, 3) with NaN."""


@dataclass(frozen=True)
class RefineConfig:
    """Settings of the refinement from keypoints."""

    max_points: int = 20000
    """At most this many 3D points take part in each bundle adjustment (spread over camera pairs)."""
    thresholds_px: tuple[float, ...] = (40.0, 15.0, 8.0)
    """Rounds of adjustment; in each, only points whose worst view reprojects within this many pixels
    (and within the 80th percentile of their camera combination) are used."""
    refine_intrinsics: bool = False
    """Also refine focal lengths and principal points (only with many well-spread keypoints)."""
    loss_scale_px: float = 2.0
    """Where the robust loss starts to down-weight residuals."""
    seed: int = 0
    """Seed of the random choice of points."""


@dataclass(frozen=True)
class RefineResult:
    """A rig refined on keypoints, with the median reprojection errors before and after (overall and per camera)."""

    rig: CameraRig
    median_error_before_px: float
    median_error_after_px: float
    per_camera_median_before_px: dict[str, float]
    per_camera_median_after_px: dict[str, float]
    points_used: int
    seconds: float


def reprojection_errors(rig: CameraRig, uv: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(C, N) pixel distance between observations ``uv`` (C, N, 2) and the projections of ``points``
    (N, 3); NaN where either is missing."""
    return np.linalg.norm(rig.project(points) - uv, axis=-1)


def _choose(errors: np.ndarray, threshold: float, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of points to adjust: seen twice or more, and whose worst view is within ``threshold`` and
    within the 80th percentile of its camera combination (so a camera that starts far off still takes
    part, with its most consistent points), spread evenly over the camera combinations."""
    seen_mask = np.isfinite(errors)
    seen = np.flatnonzero(seen_mask.sum(0) >= 2)
    if not len(seen):
        return seen
    worst = np.nanmax(errors[:, seen], axis=0)
    key = np.packbits(seen_mask[:, seen], axis=0, bitorder="little")
    key = np.ascontiguousarray(key.T).view(np.dtype((np.void, key.shape[0]))).ravel()
    groups = np.unique(key, return_inverse=True)[1].ravel()
    n_groups = groups.max() + 1
    order = np.lexsort((worst, groups))
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    p80 = worst[order[starts + (0.8 * (counts - 1)).astype(int)]]
    keep = worst <= np.minimum(threshold, p80[groups])
    good, good_groups = seen[keep], groups[keep]
    if len(good) <= max_points:
        return good
    # round-robin over camera combinations: the i-th point of every combination before any (i+1)-th
    perm = rng.permutation(len(good))
    by_group = perm[np.argsort(good_groups[perm], kind="stable")]
    g_counts = np.bincount(good_groups, minlength=n_groups)
    g_starts = np.concatenate([[0], np.cumsum(g_counts)[:-1]])
    rank = np.empty(len(good), dtype=np.int64)
    rank[by_group] = np.arange(len(good)) - np.repeat(g_starts, g_counts)
    pick = by_group[np.argsort(rank[by_group], kind="stable")][:max_points]
    return np.sort(good[pick])


def refine_with_keypoints(rig: CameraRig, uv: np.ndarray, triangulate: Triangulator,
                          config: RefineConfig = RefineConfig()) -> RefineResult:
    """Refine ``rig`` from keypoint observations ``uv`` (C, N, 2) in the rig's camera order (NaN where a
    camera did not see a point; N is frames x joints, flattened)."""
    start = time.perf_counter()
    uv = np.asarray(uv, float)
    if uv.ndim != 3 or uv.shape[0] != len(rig) or uv.shape[2] != 2:
        raise ValueError(f"uv must have shape ({len(rig)}, N, 2) in the rig's camera order, got {uv.shape}")
    if (np.isfinite(uv).all(-1).sum(0) >= 2).sum() < 50:
        raise ValueError("fewer than 50 keypoints are seen by two or more cameras; refinement needs a moving "
                         "subject seen by several cameras at once")
    rng = np.random.default_rng(config.seed)
    errors0 = reprojection_errors(rig, uv, triangulate(rig, uv))
    current = rig
    used = 0
    for threshold in config.thresholds_px:
        points = triangulate(current, uv)
        errors = reprojection_errors(current, uv, points)
        chosen = _choose(errors, threshold, config.max_points, rng)
        used = len(chosen)
        if used < 50:
            log.warning("only %d consistent points at %.1f px; stopping the refinement", used, threshold)
            break
        bundle = BundleConfig(refine_intrinsics=config.refine_intrinsics, refine_distortion=False,
                              loss="soft_l1", loss_scale_px=config.loss_scale_px, outlier_threshold_px=threshold,
                              max_evaluations=50, tolerance=1e-6)
        result = bundle_adjust_points(list(current), uv[:, chosen], points[chosen], bundle)
        refined = CameraRig(tuple(result.cameras))
        # keypoints fix neither the world frame nor the scale: put the refined rig back onto the old one
        R, t, s = kabsch(refined.centers, rig.centers, with_scale=True)
        current = refined.transformed(R, t, s)
        log.info("refinement round (threshold %.0f px): %d points, rms %.2f px", min(threshold, 1e4), used,
                 result.rms_px)
    errors1 = reprojection_errors(current, uv, triangulate(current, uv))

    def per_camera(err):
        return {n: float(np.nanmedian(err[c])) if np.isfinite(err[c]).any() else float("nan")
                for c, n in enumerate(rig.names)}

    return RefineResult(current, float(np.nanmedian(errors0)), float(np.nanmedian(errors1)), per_camera(errors0),
                        per_camera(errors1), used, time.perf_counter() - start)
