"""The take report's own checks: every figure a stage reports against its normal range, joint-angle jumps, and
stages older than the stages they read. A take whose figures are out of range is never called clean.

Each check gives (text, advice, source stage). Normal ranges are the ones below; they were chosen from the
virtual studio (where every figure is well inside them) and real phone takes (where they catch what went
wrong): a figure outside is worth a look, not necessarily a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

__all__ = ["angle_jump_checks", "figure_checks", "freshness_checks"]

Check = tuple[str, str, str]

MIN_FRAMES_DETECTED = 0.8
MIN_CAMERA_USE = 0.5
MIN_MEAN_CAMERAS = 2.5
MIN_TRIANGULATED = 0.9
MIN_JOINT_TRIANGULATED = 0.8
MAX_REPROJECTION_PX = 10.0
MAX_RAW_BONE_VARIATION = 0.05
MAX_RAW_TO_FILTERED_JITTER = 4.0
MAX_FIT_RESIDUAL_MEDIAN_MM = 25.0
MAX_FIT_RESIDUAL_P95_MM = 75.0
MAX_FOOT_SLIDING_MM_S = 20.0
MAX_ANGLE_STEP_DEG_AT_60 = 20.0


def _num(figures: Mapping[str, Any], key: str) -> float | None:
    value = figures.get(key)
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None


def _detect_checks(figures: Mapping[str, Any], stage: str) -> list[Check]:
    out = []
    for camera, f in (figures.get("per_camera") or {}).items():
        seen = f.get("frames_detected")
        if isinstance(seen, (int, float)) and seen < MIN_FRAMES_DETECTED:
            out.append((f"camera {camera}: the performer was kept in only {100 * seen:.0f} % of frames",
                        "check the camera's view of the performer and its calibration", stage))
    return out


def _triangulate_camera_joint_checks(figures: Mapping[str, Any], stage: str) -> list[Check]:
    out = []
    for camera, f in (figures.get("per_camera") or {}).items():
        used = f.get("used_fraction")
        if isinstance(used, (int, float)) and used < MIN_CAMERA_USE:
            out.append((f"camera {camera}: used for only {100 * used:.0f} % of the triangulated joints",
                        "its detections or its calibration disagree with the other cameras", stage))
    for joint, f in (figures.get("per_joint") or {}).items():
        tri = f.get("triangulated")
        if isinstance(tri, (int, float)) and tri < MIN_JOINT_TRIANGULATED:
            out.append((f"joint {joint}: triangulated in only {100 * tri:.0f} % of frames",
                        "the joint was hidden or detected inconsistently; its gaps are interpolated or missing",
                        stage))
    return out


def _triangulate_checks(figures: Mapping[str, Any], stage: str, cameras: int) -> list[Check]:
    out = []
    tri = _num(figures, "fraction_triangulated")
    if tri is not None and tri < MIN_TRIANGULATED:
        out.append((f"only {100 * tri:.0f} % of joints were triangulated (normal: {100 * MIN_TRIANGULATED:.0f} % "
                    "or more)", "see the per-camera and per-joint figures below", stage))
    used = _num(figures, "mean_cameras_used")
    if used is not None and cameras >= 3 and used < MIN_MEAN_CAMERAS:
        out.append((f"joints were triangulated from {used:.1f} cameras on average out of {cameras}",
                    "two views leave no check on each other: improve the views that are rarely used", stage))
    err = _num(figures, "mean_reprojection_error_px")
    if err is not None and err > MAX_REPROJECTION_PX:
        out.append((f"mean reprojection error {err:.1f} px (normal: below {MAX_REPROJECTION_PX:.0f} px)",
                    "check the calibration against these recordings", stage))
    raw = _num(figures, "raw_bone_length_variation")
    if raw is not None and raw > MAX_RAW_BONE_VARIATION:
        out.append((f"segment lengths of the raw triangulation vary by {100 * raw:.0f} % (normal: below "
                    f"{100 * MAX_RAW_BONE_VARIATION:.0f} %); the filtered output hides this",
                    "the detections disagree between cameras: see the per-camera figures", stage))
    jr, jf = _num(figures, "raw_jitter_mean_acceleration_m_s2"), _num(figures, "jitter_mean_acceleration_m_s2")
    if jr is not None and jf and jr / jf > MAX_RAW_TO_FILTERED_JITTER:
        out.append((f"the raw triangulation is {jr / jf:.0f}x as jittery as the filtered output ({jr:.0f} against "
                    f"{jf:.0f} m/s^2): the filter removed most of the measured motion", "", stage))
    return out + _triangulate_camera_joint_checks(figures, stage)


def _fit_checks(figures: Mapping[str, Any], stage: str) -> list[Check]:
    out = []
    med, p95 = _num(figures, "keypoint_residual_median_mm"), _num(figures, "keypoint_residual_p95_mm")
    if med is not None and med > MAX_FIT_RESIDUAL_MEDIAN_MM:
        out.append((f"the body is {med:.0f} mm (median) from its keypoints (normal: below "
                    f"{MAX_FIT_RESIDUAL_MEDIAN_MM:.0f} mm)", "the keypoints or the body model disagree", stage))
    if p95 is not None and p95 > MAX_FIT_RESIDUAL_P95_MM:
        out.append((f"5 % of keypoints are more than {p95:.0f} mm from the body (normal: below "
                    f"{MAX_FIT_RESIDUAL_P95_MM:.0f} mm)", "", stage))
    slide = _num(figures, "foot_sliding_mm_s")
    if slide is not None and slide > MAX_FOOT_SLIDING_MM_S:
        out.append((f"feet slide {slide:.0f} mm/s while in contact (normal: below {MAX_FOOT_SLIDING_MM_S:.0f})",
                    "", stage))
    for key, value in figures.items():
        if "flips" in key and isinstance(value, (int, float)) and value > 0:
            out.append((f"{key.replace('_', ' ')}: {value:g}", "a joint turned more than 90 degrees in a frame",
                        stage))
    return out


def figure_checks(stage_reports: Mapping[str, Mapping[str, Any]], cameras: int) -> list[Check]:
    """Every stage's figures against their normal ranges (see the module's constants)."""
    out: list[Check] = []
    for stage in ("detect", "import-keypoints"):
        if stage in stage_reports:
            out += _detect_checks(stage_reports[stage].get("figures", {}), stage)
    if "triangulate" in stage_reports:
        out += _triangulate_checks(stage_reports["triangulate"].get("figures", {}), "triangulate", cameras)
    if "fit" in stage_reports:
        out += _fit_checks(stage_reports["fit"].get("figures", {}), "fit")
    return out


def angle_jump_checks(angles: Mapping[str, np.ndarray], times_s: np.ndarray) -> list[Check]:
    """Joint angles that jump more than 20 degrees in a 60 fps frame (scaled to the take's rate)."""
    if len(times_s) < 2:
        return []
    dt = float(np.median(np.diff(times_s)))
    limit = MAX_ANGLE_STEP_DEG_AT_60 * dt * 60.0
    out = []
    for name, series in angles.items():
        step = np.abs(np.diff(np.asarray(series, float)))
        jumps = np.flatnonzero(step > limit)
        if jumps.size:
            out.append((f"joint angle {name}: jumps by more than {limit:.0f} degrees in one frame {jumps.size} "
                        f"time(s), the largest {np.nanmax(step):.0f} degrees at frame {int(jumps[0]) + 1}",
                        "a detection error or a flipped limb; see the angle plot", "report"))
    return out


READS: dict[str, tuple[str, ...]] = {
    "sync": ("detect", "import-keypoints"),
    "triangulate": ("calibrate", "detect", "import-keypoints", "sync"),
    "fit": ("triangulate", "detect"),
    "export": ("fit",),
}
"""The stages whose outputs each stage reads (the fit reads triangulate's keypoints and, for the silhouettes,
detect's masks.npz)."""


def _written(report: Mapping[str, Any]) -> datetime | None:
    when = report.get("written")
    try:
        return datetime.strptime(when, "%Y-%m-%dT%H:%M:%S%z") if isinstance(when, str) else None
    except ValueError:
        return None


def freshness_checks(stage_reports: Mapping[str, Mapping[str, Any]]) -> list[Check]:
    """A stage whose report is older than that of a stage whose outputs it reads (see ``READS``)."""
    out = []
    for stage, sources in READS.items():
        mine = _written(stage_reports.get(stage, {}))
        if mine is None:
            continue
        newer = [s for s in sources if (w := _written(stage_reports.get(s, {}))) is not None and w > mine]
        if newer:
            out.append((f"stage {stage} is older than {', '.join(newer)}, whose outputs it reads",
                        "run `mocap run` to redo what is out of date", stage))
    return out
