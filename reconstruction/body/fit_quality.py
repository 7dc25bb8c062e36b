"""Quality figures of a fit, measured the same way in the fit's report, the tests and the benchmark.

- Orientation steps: the angle (degrees) by which a joint's world orientation turns from one frame to the
  next. A flip (a foot or a hand turned over in one frame, where keypoints barely tell two orientations
  apart) shows as a step far beyond what a body does in a frame. :data:`FLIP_DEG` (the issue's bound) is
  5400 deg/s at 60 fps: feet and the head never turn that fast, and hands only in a throw (a pitcher's
  upper arm twists at up to about 7000 deg/s), so at 60 fps and above a step beyond it is a flip.
- Smoothness: the mean norm of the second (acceleration, the project's "jitter") and third (jerk)
  derivatives of point paths over the frames where they are observed, in m/s^2 and m/s^3, compared
  between the fitted keypoints and the keypoints the fit read.
"""

from __future__ import annotations

import numpy as np

FLIP_DEG = 90.0
"""A joint whose world orientation turns more than this in one frame has flipped."""

WATCHED = ("left_ankle", "right_ankle", "left_wrist", "right_wrist", "head")
"""Joints whose orientation the keypoints determine poorly (feet, hands, head): the flip figures."""


def rotation_steps_deg(world_rotmat: np.ndarray) -> np.ndarray:
    """(T - 1, J) the angle in degrees between consecutive frames' rotations, for world_rotmat (T, J, 3, 3)."""
    r = np.asarray(world_rotmat, dtype=float)
    if r.ndim != 4 or r.shape[-2:] != (3, 3):
        raise ValueError(f"world_rotmat must have shape (T, J, 3, 3), got {r.shape}")
    rel = np.einsum("tjba,tjbc->tjac", r[:-1], r[1:])  # R_t^T R_{t+1}
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def world_rotations(local_rotmat: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """(T, J, 3, 3) world rotations from local rotations (T, J, 3, 3) and parents (J,) (parents first)."""
    out = np.array(local_rotmat, dtype=float)
    for j, p in enumerate(np.asarray(parents)):
        if p >= 0:
            out[:, j] = out[:, p] @ out[:, j]
    return out


def derivative_norm_mean(xyz: np.ndarray, fps: float, order: int) -> float:
    """Mean norm of the ``order``-th time derivative (finite differences) of paths xyz (T, K, 3), over
    the entries whose stencil is all finite (NaN: missing); NaN when there is none."""
    x = np.asarray(xyz, dtype=float)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"xyz must have shape (T, K, 3), got {x.shape}")
    d = np.diff(x, n=order, axis=0)
    n = np.linalg.norm(d, axis=-1)
    ok = np.isfinite(n)
    return float(n[ok].mean() * fps**order) if ok.any() else float("nan")


def smoothness_figures(fitted: np.ndarray, observed: np.ndarray, fps: float) -> dict[str, float]:
    """Acceleration and jerk of the fitted keypoints (T, K, 3) and of the observed ones (T, K, 3) (NaN:
    missing), both over the stencils where the observed paths are finite, and their ratios."""
    f = np.asarray(fitted, dtype=float)
    o = np.asarray(observed, dtype=float)
    if f.shape != o.shape:
        raise ValueError(f"fitted and observed must have the same shape, got {f.shape} and {o.shape}")
    masked = np.where(np.isfinite(o), f, np.nan)
    out = {}
    for order, name in ((2, "acceleration_m_s2"), (3, "jerk_m_s3")):
        a, b = derivative_norm_mean(masked, fps, order), derivative_norm_mean(o, fps, order)
        out[f"fitted_{name}"] = a
        out[f"keypoints_{name}"] = b
        out[f"{name.split('_')[0]}_ratio"] = a / b if b > 0 else float("nan")
    return out


def flip_figures(world_rotmat: np.ndarray, names: tuple[str, ...], fps: float) -> dict:
    """The largest per-frame orientation step (deg/frame) of each named joint (world_rotmat (T, J, 3, 3) in
    the order of ``names``), the largest of all, the number of steps beyond :data:`FLIP_DEG` and the frames
    they end at."""
    if len(world_rotmat) < 2:
        return {"orientation_step_max_deg": 0.0, "orientation_steps_per_joint_deg": {}, "flips": 0, "flip_frames": []}
    steps = rotation_steps_deg(world_rotmat)
    return {
        "orientation_step_max_deg": float(steps.max()),
        "orientation_steps_per_joint_deg": {n: round(float(steps[:, i].max()), 2) for i, n in enumerate(names)},
        "flips": int((steps > FLIP_DEG).sum()),
        "flip_frames": (np.flatnonzero((steps > FLIP_DEG).any(1)) + 1).tolist(),
        "flip_bound_deg": FLIP_DEG,
        "frame_rate": float(fps),
    }
