"""Joint angles over time and repetition counting, from 3D keypoints of any skeleton format.

Angles are in degrees, computed in a body frame rebuilt at every frame from the hips and shoulders:
``up`` from the hips' midpoint to the shoulders' midpoint, ``left`` from the right hip to the left hip (made
orthogonal to ``up``), ``forward = left x up``. Those midpoints are used for every format (a format's own
``neck`` or ``pelvis`` sits elsewhere), so the same motion gives the same angles whatever the detector.

Repetitions are counted on one signal per exercise with hysteresis: a repetition starts when the signal
rises above ``enter`` and is complete when it falls back below ``exit``. A take that starts mid-repetition
(signal above ``exit`` before it was ever below) does not count that one, nor one still open at the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from mocap_studio.reconstruction.skeletons import SkeletonFormat, get_format

REQUIRED_JOINTS = tuple(
    f"{side}_{part}" for side in ("left", "right") for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
)
"""Joints the angles need, by name; every supported skeleton format has them."""

ANGLE_GROUPS: dict[str, tuple[str, ...]] = {
    "knees": ("knee_flexion_left", "knee_flexion_right"),
    "hips": ("hip_flexion_left", "hip_flexion_right"),
    "elbows": ("elbow_flexion_left", "elbow_flexion_right"),
    "shoulders": ("shoulder_flexion_left", "shoulder_flexion_right", "shoulder_abduction_left",
                  "shoulder_abduction_right"),
    "spine": ("spine_flexion", "spine_lateral_bend"),
}
"""Angles shown together, by the part of the body they describe."""


@dataclass(frozen=True)
class RepetitionConfig:
    """How repetitions are counted (the ``[report]`` table's ``repetitions`` settings)."""

    squat_enter_deg: float = 45.0
    """A squat starts when the least bent of both knees and both hips passes this flexion."""
    squat_exit_deg: float = 20.0
    """A squat is complete when that flexion falls back below this."""
    jumping_jack_enter_deg: float = 120.0
    """A jumping jack starts when the lower of both arms is raised past this (0 at the sides, 180 overhead)."""
    jumping_jack_exit_deg: float = 50.0
    """A jumping jack is complete when that arm elevation falls back below this."""
    smoothing_s: float = 0.15
    """Width of the moving average applied to a signal before counting."""
    max_gap_s: float = 0.5
    """Gaps (missing joints) up to this long are bridged by interpolation; a longer one resets the count."""
    min_repetition_s: float = 0.3
    """Shorter up-and-down excursions are taken as noise, not repetitions."""

    def __post_init__(self) -> None:
        if not self.squat_enter_deg > self.squat_exit_deg:
            raise ValueError("squat_enter_deg must be greater than squat_exit_deg")
        if not self.jumping_jack_enter_deg > self.jumping_jack_exit_deg:
            raise ValueError("jumping_jack_enter_deg must be greater than jumping_jack_exit_deg")


@dataclass(frozen=True)
class Repetitions:
    """Repetitions of one exercise.

    exercise: its name; signal: the angle counted (degrees, (T,) after smoothing); intervals: (N, 3)
    start, deepest and end time of each counted repetition in seconds; partial: a repetition still open
    when the take ends, or already under way when it begins.
    """

    exercise: str
    signal_name: str
    signal: np.ndarray
    intervals: np.ndarray
    enter_deg: float
    exit_deg: float
    partial: int = 0

    @property
    def count(self) -> int:
        """Repetitions counted."""
        return len(self.intervals)


@dataclass(frozen=True)
class JointAngles:
    """Angles over time: ``angles`` name -> (T,) degrees (NaN where a joint is missing); times (T,) s."""

    times_s: np.ndarray
    angles: Mapping[str, np.ndarray]
    repetitions: dict[str, Repetitions] = field(default_factory=dict)


def _unit(v: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between vectors a, b (..., 3)."""
    cos = np.sum(_unit(a) * _unit(b), axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _plane_angle(along: np.ndarray, down: np.ndarray) -> np.ndarray:
    """Degrees from hanging (0) through ``along`` (90) to overhead (180); from -90 (behind / across) up to
    270, so an arm overhead never jumps between +180 and -180."""
    deg = np.degrees(np.arctan2(along, down))
    return np.where(deg < -90.0, deg + 360.0, deg)


def _joints(xyz: np.ndarray, fmt: SkeletonFormat) -> dict[str, np.ndarray]:
    missing = [j for j in REQUIRED_JOINTS if j not in fmt.joints]
    if missing:
        raise ValueError(f"skeleton {fmt.name} lacks joint(s) {missing} needed for joint angles")
    return {j: xyz[:, fmt.index(j)] for j in REQUIRED_JOINTS}


def joint_angles(xyz: np.ndarray, skeleton: str | SkeletonFormat, times_s: np.ndarray) -> dict[str, np.ndarray]:
    """Joint angles in degrees from keypoints xyz (T, J, 3) metres (world Z up) of format ``skeleton``.

    Returns name -> (T,): ``knee_flexion_<side>`` (0 straight), ``hip_flexion_<side>`` (thigh against the
    trunk, negative behind it), ``elbow_flexion_<side>``, ``shoulder_flexion_<side>`` and
    ``shoulder_abduction_<side>`` (upper arm in the sagittal / frontal plane: 0 down, 90 forward / sideways,
    180 overhead, -90..270), ``shoulder_elevation_<side>`` (upper arm from the trunk's down direction, any plane),
    ``spine_flexion`` (trunk forward lean from vertical) and ``spine_lateral_bend`` (towards the left
    positive). NaN where a joint is missing.
    """
    fmt = get_format(skeleton)
    xyz = np.asarray(xyz, float)
    if xyz.ndim != 3 or xyz.shape[1:] != (fmt.num_joints, 3):
        raise ValueError(f"xyz must have shape (T, {fmt.num_joints}, 3) for {fmt.name}, got {xyz.shape}")
    if np.shape(times_s) != (xyz.shape[0],):
        raise ValueError(f"times_s must have shape ({xyz.shape[0]},), got {np.shape(times_s)}")
    p = _joints(xyz, fmt)
    mid_hip = (p["left_hip"] + p["right_hip"]) / 2
    mid_shoulder = (p["left_shoulder"] + p["right_shoulder"]) / 2
    trunk = mid_shoulder - mid_hip
    up = _unit(trunk)
    across = p["left_hip"] - p["right_hip"]
    left = _unit(across - np.sum(across * up, -1, keepdims=True) * up)
    forward = np.cross(left, up)
    out: dict[str, np.ndarray] = {}
    for side, outward in (("left", left), ("right", -left)):
        s = lambda part, side=side: p[f"{side}_{part}"]  # noqa: E731
        out[f"knee_flexion_{side}"] = 180.0 - _angle_between(s("hip") - s("knee"), s("ankle") - s("knee"))
        thigh = s("knee") - s("hip")
        sign = np.where(np.sum(thigh * forward, -1) < 0, -1.0, 1.0)
        out[f"hip_flexion_{side}"] = sign * _angle_between(thigh, -up)
        out[f"elbow_flexion_{side}"] = 180.0 - _angle_between(s("shoulder") - s("elbow"), s("wrist") - s("elbow"))
        arm = s("elbow") - s("shoulder")
        down = np.sum(arm * -up, -1)
        out[f"shoulder_flexion_{side}"] = _plane_angle(np.sum(arm * forward, -1), down)
        out[f"shoulder_abduction_{side}"] = _plane_angle(np.sum(arm * outward, -1), down)
        out[f"shoulder_elevation_{side}"] = _angle_between(arm, -up)
    # the trunk against the world vertical, in the body's own forward and left directions (horizontal)
    z = np.array([0.0, 0.0, 1.0])
    fwd_h = _unit(np.cross(left, z))
    left_h = _unit(np.cross(z, fwd_h))
    out["spine_flexion"] = np.degrees(np.arctan2(np.sum(trunk * fwd_h, -1), trunk[..., 2]))
    out["spine_lateral_bend"] = np.degrees(np.arctan2(np.sum(trunk * left_h, -1), trunk[..., 2]))
    return out


# ------------------------------------------------------------------------------------------------
# repetitions
# ------------------------------------------------------------------------------------------------
def _bridge_and_smooth(signal: np.ndarray, times: np.ndarray, config: RepetitionConfig) -> np.ndarray:
    """signal (T,) with gaps up to ``max_gap_s`` interpolated and a centred moving average applied; longer
    gaps stay NaN."""
    y = np.asarray(signal, float).copy()
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return np.full_like(y, np.nan)
    filled = np.interp(times, times[ok], y[ok])
    # a gap longer than max_gap_s stays missing: the time to the nearest valid sample on both sides
    idx = np.flatnonzero(ok)
    nxt = np.searchsorted(idx, np.arange(len(y)))
    prev_t = np.where(nxt > 0, times[idx[np.maximum(nxt - 1, 0)]], -np.inf)
    next_t = np.where(nxt < len(idx), times[idx[np.minimum(nxt, len(idx) - 1)]], np.inf)
    long_gap = ~ok & ((next_t - prev_t) > config.max_gap_s)
    filled[long_gap] = np.nan
    dt = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    half = max(int(round(config.smoothing_s / dt / 2)), 0)
    if half == 0:
        return filled
    kernel = np.ones(2 * half + 1)
    valid = np.isfinite(filled)
    num = np.convolve(np.where(valid, filled, 0.0), kernel, mode="same")
    den = np.convolve(valid.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = num / den
    return np.where(valid, smooth, np.nan)


def count_cycles(signal: np.ndarray, times_s: np.ndarray, enter: float, exit: float,
                 min_duration_s: float = 0.0) -> tuple[np.ndarray, int]:
    """Hysteresis cycles of ``signal`` (T,) at ``times_s`` (T,): up past ``enter``, back below ``exit``.

    Returns (intervals (N, 3): start (last time below ``exit``), peak and end time in seconds; partial:
    cycles seen only in part, at either end of the take or around a gap). NaN samples reset the state.
    """
    signal = np.asarray(signal, float)
    times_s = np.asarray(times_s, float)
    if signal.shape != times_s.shape or signal.ndim != 1:
        raise ValueError(f"signal and times_s must both be (T,), got {signal.shape} and {times_s.shape}")
    if not enter > exit:
        raise ValueError(f"enter ({enter}) must be greater than exit ({exit})")
    state, start, peak_i, partial, high_unseen_start = "unknown", np.nan, -1, 0, False
    intervals: list[tuple[float, float, float]] = []
    for i, v in enumerate(signal):
        if not np.isfinite(v):
            partial += state == "active"
            state, high_unseen_start = "unknown", False
            continue
        if state == "unknown":
            # a cycle already under way (at the start, or after a gap) is not counted
            high_unseen_start |= v > enter
            if v < exit:
                state, start = "rest", times_s[i]
                partial += high_unseen_start
                high_unseen_start = False
            continue
        if state == "rest":
            if v < exit:
                start = times_s[i]
            elif v > enter:
                state, peak_i = "active", i
            continue
        if v > signal[peak_i]:
            peak_i = i
        if v < exit:
            if times_s[i] - start >= min_duration_s:
                intervals.append((float(start), float(times_s[peak_i]), float(times_s[i])))
            state, start = "rest", times_s[i]
    partial += (state == "active") + high_unseen_start
    return np.array(intervals, float).reshape(-1, 3), partial


def count_repetitions(angles: Mapping[str, np.ndarray], times_s: np.ndarray,
                      config: RepetitionConfig = RepetitionConfig()) -> dict[str, Repetitions]:
    """Squats and jumping jacks counted in ``angles`` (from :func:`joint_angles`), each (T,) degrees.

    Squat signal: the least flexed of both knees and both hips (all four bend together in a squat, not in
    a lunge or a step). Jumping-jack signal: the lower of both arms' elevation (both arms go overhead).
    """
    times_s = np.asarray(times_s, float)
    with np.errstate(invalid="ignore"):
        squat = np.min(np.stack([angles[f"{j}_flexion_{s}"] for j in ("knee", "hip") for s in ("left", "right")]), 0)
        jack = np.minimum(angles["shoulder_elevation_left"], angles["shoulder_elevation_right"])
    out: dict[str, Repetitions] = {}
    for name, label, raw, enter, exit_ in (
        ("squat", "least knee/hip flexion", squat, config.squat_enter_deg, config.squat_exit_deg),
        ("jumping_jack", "lower arm elevation", jack, config.jumping_jack_enter_deg, config.jumping_jack_exit_deg),
    ):
        smooth = _bridge_and_smooth(raw, times_s, config)
        intervals, partial = count_cycles(smooth, times_s, enter, exit_, config.min_repetition_s)
        out[name] = Repetitions(name, label, smooth, intervals, enter, exit_, partial)
    return out


def analyse(xyz: np.ndarray, skeleton: str | SkeletonFormat, times_s: np.ndarray,
            config: RepetitionConfig = RepetitionConfig()) -> JointAngles:
    """Joint angles and repetitions of keypoints xyz (T, J, 3) at times_s (T,)."""
    angles = joint_angles(xyz, skeleton, np.asarray(times_s, float))
    return JointAngles(np.asarray(times_s, float), angles, count_repetitions(angles, times_s, config))
