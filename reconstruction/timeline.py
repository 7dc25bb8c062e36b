"""The take's one timeline: every camera's frames put on the common clock that sync.json defines.

Triangulation resamples each camera's 2D keypoints onto this timeline and writes them beside its output
(``keypoints2d_synced.npz``), so the fit and the report read the same synchronized keypoints instead of
recomputing them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from mocap_studio.capture.sync import SyncError, interpolate_gaps


def common_timeline(times: Mapping[str, np.ndarray], offsets: Mapping[str, float], fps: float | None = None,
                    min_cameras: int = 2) -> np.ndarray:
    """Frame times (N,) on the common clock while at least ``min_cameras`` cameras record (all of them when
    there are fewer), at ``fps`` (default: the fastest camera's rate).

    The instants lie on the frames of a camera at that rate (the reference camera, offset 0, when it is one),
    so that camera's frames are used as they are and the output frames line up with its video."""
    starts, ends, steps = {}, {}, {}
    for c, t in times.items():
        t = np.asarray(t, float) + offsets[c]
        starts[c], ends[c] = t[0], t[-1]
        steps[c] = float(np.median(np.diff(t))) if len(t) > 1 else math.inf
    step = 1.0 / fps if fps else min(steps.values())
    need = max(1, min(min_cameras, len(times)))
    start, end = sorted(starts.values())[need - 1], sorted(ends.values(), reverse=True)[need - 1]
    if not math.isfinite(step) or end < start:
        raise SyncError("the cameras' recordings do not overlap in time after applying the offsets")
    on_grid = [c for c in times if abs(steps[c] - step) <= 1e-6 * step] or list(times)
    anchor = min(on_grid, key=lambda c: (offsets[c] != 0.0, list(times).index(c)))
    first = starts[anchor] + step * math.ceil((start - starts[anchor]) / step - 1e-6)
    return first + step * np.arange(int(math.floor((end - first) / step + 1e-6)) + 1)


def resample_series(
    values: Mapping[str, np.ndarray],
    times: Mapping[str, np.ndarray],
    offsets: Mapping[str, float],
    timeline: np.ndarray,
) -> np.ndarray:
    """Put per-camera series on one timeline. values[camera] (T_c, ...) at times[camera] (T_c,) on the
    camera's clock; offsets[camera] s (common = camera + offset); timeline (N,) on the common clock.

    Returns (C, N, ...) in the order of ``values``: linear interpolation, NaN outside a camera's recording
    and inside its gaps. Works for keypoints (T, J, 2) and confidences (T, J) alike.
    """
    names = list(values)
    missing = [c for c in names if c not in times or c not in offsets]
    if missing:
        raise KeyError(f"no times or offset for camera(s) {missing}")
    shapes = {np.asarray(values[c]).shape[1:] for c in names}
    if len(shapes) != 1:
        raise ValueError(f"every camera's series must have the same shape per frame, got {sorted(shapes)}")
    return np.stack(
        [interpolate_gaps(np.asarray(times[c], float) + offsets[c], values[c], timeline) for c in names]
    )


__all__ = ["common_timeline", "resample_series"]
