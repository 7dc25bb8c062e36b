"""Per-camera intrinsics from board views, with the figures a person needs to trust them: RMS, how much of
the image the board covered (as a grid and a picture), and advice when coverage is poor."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from mocap_studio.calibration.camera import Camera
from mocap_studio.calibration.observations import BoardObservations

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntrinsicsConfig:
    """Settings of the per-camera intrinsic calibration."""

    max_views: int = 60
    """At most this many views per camera go into OpenCV's calibration (spread over the recording and the
    image); the bundle adjustment later uses every view."""
    min_corners: int = 6
    """Views with fewer corners are not used for intrinsics."""
    distortion: str = "k1k2p1p2"
    """Distortion model fitted here: 'k1k2' , 'k1k2p1p2', 'k1k2p1p2k3', or 'rational' (8 terms)."""
    fisheye: bool = False
    """Fit OpenCV's equidistant fisheye model instead of the pinhole model."""
    coverage_grid: tuple[int, int] = (8, 6)
    """Cells (columns, rows) of the image grid used to measure board coverage."""
    min_coverage: float = 0.5
    """Warn when the board's corners reached fewer than this fraction of the grid cells."""


@dataclass(frozen=True)
class IntrinsicsReport:
    """Per-camera figures of the intrinsic calibration."""

    camera: str
    views_used: int
    views_available: int
    rms_px: float
    coverage: float
    coverage_grid: np.ndarray
    """(rows, columns) corner counts per image cell."""
    warnings: tuple[str, ...]


def coverage_grid(uv: np.ndarray, size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """Count corners (M, 2) per cell of a (columns, rows) grid over an image of ``size`` -> (rows, columns)."""
    w, h = size
    cols, rows = grid
    ok = np.all(np.isfinite(uv), axis=1)
    cx = np.clip((uv[ok, 0] / w * cols).astype(int), 0, cols - 1)
    cy = np.clip((uv[ok, 1] / h * rows).astype(int), 0, rows - 1)
    counts = np.zeros((rows, cols), dtype=np.int64)
    np.add.at(counts, (cy, cx), 1)
    return counts


def _spans_plane(obs: BoardObservations, rows: np.ndarray, object_points: np.ndarray) -> bool:
    """True when the seen corners are not (nearly) on one line of the board: a homography needs a plane."""
    xy = object_points[obs.point[rows], :2]
    sv = np.linalg.svd(xy - xy.mean(axis=0), compute_uv=False)
    return bool(sv[0] > 0 and sv[1] / sv[0] > 0.15)


def _choose_views(obs: BoardObservations, c: int, config: IntrinsicsConfig,
                  object_points: np.ndarray) -> list[np.ndarray]:
    """Rows of each usable view of camera c, at most ``max_views``, preferring views that add coverage."""
    rows = obs.camera_rows(c)
    views: dict[int, list[int]] = {}
    for r in rows:
        views.setdefault(int(obs.view[r]), []).append(int(r))
    usable = [np.array(v) for v in views.values()
              if len(v) >= config.min_corners and _spans_plane(obs, np.array(v), object_points)]
    if len(usable) <= config.max_views:
        return usable
    # greedy: take views whose corners fall in the least-covered cells, so the image is filled evenly
    size = obs.image_sizes[c]
    counts = np.zeros(config.coverage_grid[::-1])
    chosen: list[np.ndarray] = []
    remaining = list(usable)
    while remaining and len(chosen) < config.max_views:
        scores = [np.sum(1.0 / (1.0 + counts[coverage_grid(obs.uv[v], size, config.coverage_grid) > 0])) for v in remaining]
        best = int(np.argmax(scores))
        v = remaining.pop(best)
        counts += coverage_grid(obs.uv[v], size, config.coverage_grid)
        chosen.append(v)
    return chosen


def _flags(config: IntrinsicsConfig) -> tuple[int, int]:
    if config.fisheye:
        return cv2.fisheye.CALIB_RECOMPUTE_EXTRINSIC | cv2.fisheye.CALIB_FIX_SKEW, 4
    table = {
        "k1k2": (cv2.CALIB_FIX_K3 | cv2.CALIB_ZERO_TANGENT_DIST, 5),
        "k1k2p1p2": (cv2.CALIB_FIX_K3, 5),
        "k1k2p1p2k3": (0, 5),
        "rational": (cv2.CALIB_RATIONAL_MODEL, 8),
    }
    if config.distortion not in table:
        raise ValueError(f"IntrinsicsConfig.distortion must be one of {sorted(table)}, got {config.distortion!r}")
    return table[config.distortion]


def calibrate_intrinsics(
    obs: BoardObservations, object_points: np.ndarray, c: int, config: IntrinsicsConfig = IntrinsicsConfig()
) -> tuple[Camera, IntrinsicsReport]:
    """Intrinsics of camera ``c`` of ``obs`` from its board views (OpenCV's planar calibration).

    Returns the camera (pose left at the identity) and its report.
    """
    name = obs.camera_names[c]
    size = obs.image_sizes[c]
    views = _choose_views(obs, c, config, object_points)
    n_available = len(obs.views_of_camera(c))
    if len(views) < 3:
        raise ValueError(
            f"camera {name!r}: the board was seen well (>= {config.min_corners} corners) in {len(views)} views; "
            "intrinsic calibration needs at least 3, ideally 20+ at different distances and tilts. "
            "Add views of the whole board close to this camera, tilted and across the image, or give its intrinsics "
            "from another calibration (mocap calibrate --intrinsics FILE)."
        )
    obj = [object_points[obs.point[v]].astype(np.float32) for v in views]
    img = [obs.uv[v].astype(np.float32) for v in views]
    flags, n_dist = _flags(config)
    w, h = size
    K0 = np.array([[max(w, h), 0, w / 2], [0, max(w, h), h / 2], [0, 0, 1]], dtype=np.float64)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
    if config.fisheye:
        rms, K, dist, _, _ = cv2.fisheye.calibrate(
            [o[:, None] for o in obj], [i[:, None] for i in img], (w, h), K0, np.zeros(4), flags=flags,
            criteria=criteria,
        )
        model = "fisheye"
    else:
        # OpenCV's solver occasionally diverges from one start (seen: RMS of hundreds of pixels); try the
        # requested model with and without the initial guess, and a simpler model, and keep the best
        attempts = [flags | cv2.CALIB_USE_INTRINSIC_GUESS, flags,
                    cv2.CALIB_FIX_K3 | cv2.CALIB_ZERO_TANGENT_DIST | cv2.CALIB_USE_INTRINSIC_GUESS]
        best = None
        for attempt_flags in attempts:
            try:
                out = cv2.calibrateCamera(obj, img, (w, h), K0.copy(), np.zeros(n_dist), flags=attempt_flags,
                                          criteria=criteria)
            except cv2.error as e:
                log.debug("camera %s: calibrateCamera failed with flags %d: %s", name, attempt_flags, e)
                continue
            if best is None or out[0] < best[0]:
                best = out
            if best[0] < 2.0:
                break
        if best is None:
            raise ValueError(f"camera {name!r}: OpenCV could not calibrate the intrinsics from {len(views)} views")
        rms, K, dist = best[0], best[1], best[2]
        model = "pinhole"
    dist = np.asarray(dist, float).ravel()[:n_dist]
    camera = Camera(name, size, K, dist, model=model)
    all_rows = obs.camera_rows(c)
    grid = coverage_grid(obs.uv[all_rows], size, config.coverage_grid)
    coverage = float(np.mean(grid > 0))
    warnings = []
    if coverage < config.min_coverage:
        warnings.append(
            f"camera {name!r}: board corners reached only {coverage:.0%} of the image; lens distortion is poorly "
            "constrained near the edges. Move the board through the corners of this camera's view, and closer."
        )
    if len(views) < 10:
        warnings.append(f"camera {name!r}: only {len(views)} good views for intrinsics; 20 or more is better.")
    if rms > 1.0:
        warnings.append(
            f"camera {name!r}: intrinsic RMS {rms:.2f} px is high: check the board definition (square size), "
            "motion blur, or a rolling-shutter camera moving the board too fast."
        )
    report = IntrinsicsReport(name, len(views), n_available, float(rms), coverage, grid, tuple(warnings))
    return camera, report
