"""One performer among bystanders: choose, per frame and camera, the detected person whose keypoints agree
with the other views, and keep that identity over time.

Per frame, every pairing of two people in two cameras is a hypothesis: their joints are triangulated and
projected into every camera, where the closest person (median joint error) agrees if within that camera's
threshold. The hypothesis that most cameras agree with wins, among those whose body centre lies within
``max_speed_m_s`` of the performer's last position; when none does (the performer left the view, or at the
start), the best-supported hypothesis (re)starts the track. Vectorized over hypotheses, joints and cameras;
the loop runs over frames only, and each frame's hypotheses are scored once.

The thresholds follow the calibration the take actually has (``max_error_px = 0``, the default). A first
pass follows the performer with a gate of twice the floor (``min_error_fraction`` of each image's diagonal)
and measures, in every camera, how far the person nearest the performer lies from the performer
triangulated from the *other* cameras (leave one out, the others weighted by how well they agree, so one
camera that is off does not inflate the rest). Per camera, the threshold is the median of those errors plus
``error_mad_factor`` robust standard deviations (1.4826 x MAD) of their low cluster (a bystander's errors,
where the performer was missed, lie far above and drop out), kept between ``min_error_fraction`` and
``max_error_fraction`` of the image diagonal; a camera with too few measurements takes the pooled figure. A
second pass follows the performer with those thresholds. So a camera whose calibration is a degree off
(30-40 px) keeps its performer, while a bystander a metre or two away (hundreds of pixels) stays out. An
explicit ``max_error_px`` sets one fixed threshold for every camera instead.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.reconstruction.keypoints import Detections2D, Keypoints2D
from mocap_studio.reconstruction.triangulate import _dlt_terms, _to_cameras, _weighted_solve, match_rig

log = logging.getLogger(__name__)

__all__ = ["AssociationConfig", "Association", "associate", "associate_with_diagnostics"]

_MAD_TO_SIGMA = 1.4826
_MIN_SAMPLES = 20
"""Measurements a camera needs for its own threshold; fewer take the pooled one."""


@dataclass(frozen=True)
class AssociationConfig:
    """Settings for choosing the performer (the ``[associate]`` table; used by detect and import-keypoints)."""

    max_error_px: float = 0.0
    """A person agrees with a 3D hypothesis when its median joint reprojection error is below this, in every
    camera; 0 adapts the threshold to the take, per camera (see the module docstring)."""
    error_mad_factor: float = 4.0
    """Adaptive threshold: the median of a camera's performer errors plus this many robust standard
    deviations (1.4826 x their median absolute deviation)."""
    min_error_fraction: float = 0.01
    """Adaptive threshold floor, as a fraction of the camera's image diagonal (15 px at 1280x720, 22 px at
    1920x1080): detection noise alone reaches that far."""
    max_error_fraction: float = 0.05
    """Adaptive threshold ceiling, as a fraction of the image diagonal (73 px at 1280x720, 110 px at
    1920x1080): a bystander a metre away at 5 m is several hundred pixels off."""
    min_confidence: float = 0.3
    """Joints below this confidence are ignored when comparing people."""
    max_speed_m_s: float = 3.0
    """The performer's body centre moves at most this fast; farther hypotheses belong to someone else."""
    position_tolerance_m: float = 0.3
    """Added to the distance the performer can move between frames: a body centre triangulated from two
    noisy views jitters by more than a frame's travel at 60 fps (5 cm), and the track must not drop it."""

    def __post_init__(self) -> None:
        if self.max_error_px < 0 or self.max_speed_m_s <= 0 or self.error_mad_factor < 0 or self.position_tolerance_m < 0:
            raise ValueError("max_error_px, error_mad_factor and position_tolerance_m must be >= 0 (max_error_px 0 "
                             "adapts) and max_speed_m_s > 0")
        if not 0 < self.min_error_fraction <= self.max_error_fraction:
            raise ValueError("need 0 < min_error_fraction <= max_error_fraction (fractions of the image diagonal)")


@dataclass(frozen=True, eq=False)
class Association:
    """The performer chosen in every camera and frame, and how.

    keypoints: (C, T, J) the performer. slots (C, T): the chosen person per camera and frame, -1 where the
    performer was not found. threshold_px (C,): the agreement threshold used per camera (NaN: one person
    per frame, nothing to choose). error_px (C, T): the chosen person's median joint error against the
    performer triangulated from the other cameras (NaN where not measurable): each camera's calibration
    checked against the rest. adaptive: thresholds measured from the take (else ``max_error_px``).
    restarts: times the track was lost and started again.
    """

    keypoints: Keypoints2D
    slots: np.ndarray
    threshold_px: np.ndarray
    error_px: np.ndarray
    adaptive: bool
    restarts: int = 0

    @property
    def found(self) -> np.ndarray:
        """(C,) fraction of frames in which the performer was found, per camera."""
        return (self.slots >= 0).mean(axis=1) if self.slots.shape[1] else np.zeros(len(self.slots))

    def figures(self, detected: np.ndarray | None = None) -> dict[str, Any]:
        """Per camera: fraction of frames found, threshold, median leave-one-out error; ``detected`` (C, T)
        bool, frames in which the camera saw anybody, adds the fraction of those found."""
        per_camera: dict[str, Any] = {}
        for c, name in enumerate(self.keypoints.camera_names):
            fair = self.error_px[c][np.isfinite(self.error_px[c])]
            row: dict[str, Any] = {
                "found": round(float(self.found[c]), 4),
                "threshold_px": round(float(self.threshold_px[c]), 2) if np.isfinite(self.threshold_px[c]) else None,
                "median_error_px": round(float(np.median(fair)), 2) if fair.size else None,
            }
            if detected is not None:
                seen = detected[c]
                row["found_of_detected"] = round(float((self.slots[c][seen] >= 0).mean()), 4) if seen.any() else 0.0
            per_camera[name] = row
        return {"adaptive_threshold": self.adaptive, "restarts": self.restarts, "per_camera": per_camera}


def _frame_hypotheses(C: int, present: np.ndarray) -> np.ndarray:
    """(H, 4) rows (camera a, person p, camera b, person q) for every pair of present people."""
    rows = []
    for a, b in itertools.combinations(range(C), 2):
        for p in np.flatnonzero(present[a]):
            for q in np.flatnonzero(present[b]):
                rows.append((a, p, b, q))
    return np.array(rows, dtype=int).reshape(-1, 4)


@dataclass(frozen=True)
class _Frame:
    """One frame's hypotheses: pair (H, 2) cameras that built each, person (H, C) the closest person per
    camera, error (H, C) its median joint error in pixels (inf: nobody comparable), centre (H, 3)."""

    pair: np.ndarray
    person: np.ndarray
    error: np.ndarray
    centre: np.ndarray


@dataclass(frozen=True)
class _Views:
    """The detections ready to compare: xy (C, T, P, J, 2) undistorted normalized coordinates (NaN where
    missing or below the confidence floor), extrinsics (C, 3, 4), focal (C,) pixels."""

    xy: np.ndarray
    extrinsics: np.ndarray
    focal: np.ndarray


def _views(rig: CameraRig, detections: Detections2D, config: AssociationConfig) -> _Views:
    C, T, P, J = detections.confidence.shape
    xy = rig.undistort_points(detections.xy.reshape(C, -1, 2)).reshape(C, T, P, J, 2)
    good = detections.confidence >= config.min_confidence  # (C, T, P, J)
    return _Views(np.where(good[..., None], xy, np.nan),
                  np.stack([np.hstack([c.R, c.t[:, None]]) for c in rig.cameras]),
                  np.array([np.sqrt(c.K[0, 0] * c.K[1, 1]) for c in rig.cameras]))


def _reprojection(
    views: _Views, obs: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate obs (N, C, 2) (NaN: not used; fewer than two views: NaN), cameras weighted by
    ``weights`` (C,), and project into every camera: -> points (N, 3), projections (N, C, 2) normalized."""
    M, b = _dlt_terms(views.extrinsics, obs)
    seen = np.isfinite(obs).all(-1)
    w = seen * (1.0 if weights is None else weights[None])
    X = _weighted_solve(M, b, w)
    X[seen.sum(-1) < 2] = np.nan
    cam = _to_cameras(views.extrinsics, np.nan_to_num(X))  # (N, C, 3)
    z = np.where(np.isfinite(X).all(-1)[..., None] & (cam[..., 2] > 1e-6), cam[..., 2], np.nan)
    return X, cam[..., :2] / z[..., None]


def _score_frames(views: _Views, min_joints: int) -> list[_Frame | None]:
    """Every frame's hypotheses, triangulated and scored in every camera (None: no hypothesis)."""
    C, T, P, J = views.xy.shape[:4]
    frames: list[_Frame | None] = []
    for t in range(T):
        xy = views.xy[:, t]  # (C, P, J, 2)
        present = np.isfinite(xy[..., 0]).sum(-1) >= min_joints  # (C, P): enough joints to compare
        hyp = _frame_hypotheses(C, present)
        if not len(hyp):
            frames.append(None)
            continue
        H = len(hyp)
        obs = np.full((H, J, C, 2), np.nan)
        obs[np.arange(H), :, hyp[:, 0]] = xy[hyp[:, 0], hyp[:, 1]]
        obs[np.arange(H), :, hyp[:, 2]] = xy[hyp[:, 2], hyp[:, 3]]
        X, proj = _reprojection(views, obs.reshape(H * J, C, 2))
        proj = proj.reshape(H, J, C, 2)
        diff = proj.transpose(0, 2, 1, 3)[:, :, None] - xy[None]  # (H, C, P, J, 2)
        err = np.sqrt((diff**2).sum(-1)) * views.focal[None, :, None, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # people with no joint in common: all-NaN
            median = np.nanmedian(err, axis=-1)  # (H, C, P)
            centre = np.nanmean(X.reshape(H, J, 3), axis=1)  # (H, 3)
        median = np.where(np.isfinite(median), median, np.inf)
        person = np.argmin(median, axis=-1)  # (H, C)
        error = np.take_along_axis(median, person[..., None], -1)[..., 0]
        frames.append(_Frame(hyp[:, [0, 2]], person, error, centre))
    return frames


@dataclass
class _Track:
    """The performer followed through the frames: slots (C, T) the agreeing person per camera (-1: none);
    nearest (C, T) the person nearest the chosen hypothesis per camera, agreeing or not (-1: none)."""

    slots: np.ndarray
    nearest: np.ndarray
    restarts: int = 0


def _leave_one_out(views: _Views, track: _Track, min_joints: int) -> np.ndarray:
    """(C, T) median joint error, in each camera, of the person nearest the performer against the performer
    triangulated from the other cameras that found it (at least two); NaN where not measurable. Measured in
    every camera, whether it agreed or not, so a camera whose calibration is off shows how far off it is.
    Three rounds: each weights the other cameras by the inverse square of their last typical error, so one
    camera that is off does not inflate the others' figures."""
    C, T, P, J = views.xy.shape[:4]

    def pick(slots: np.ndarray) -> np.ndarray:  # (C, T, J, 2), NaN where slot -1
        out = np.take_along_axis(views.xy, np.clip(slots, 0, P - 1)[:, :, None, None, None], 2)[:, :, 0]
        return np.where((slots >= 0)[..., None, None], out, np.nan)

    chosen, nearest = pick(track.slots), pick(track.nearest)
    obs = chosen.transpose(1, 2, 0, 3).reshape(T * J, C, 2)
    out = np.full((C, T), np.nan)
    weights = None
    for _ in range(3):
        for c in range(C):
            others = obs.copy()
            others[:, c] = np.nan
            proj = _reprojection(views, others, weights)[1][:, c].reshape(T, J, 2)
            err = np.linalg.norm(proj - nearest[c], axis=-1) * views.focal[c]  # (T, J)
            enough = np.isfinite(err).sum(-1) >= min_joints
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[c] = np.where(enough, np.nanmedian(err, axis=-1), np.nan)
        typical = np.array([np.median(e[np.isfinite(e)]) if np.isfinite(e).any() else np.nan for e in out])
        if not np.isfinite(typical).any():
            break
        typical = np.where(np.isfinite(typical), typical, np.nanmax(typical))
        weights = (typical.min() / np.maximum(typical, 1e-6)) ** 2
    return out


def _follow(frames: list[_Frame | None], times: np.ndarray, threshold: np.ndarray, config: AssociationConfig,
            shape: tuple[int, int]) -> _Track:
    """Choose a hypothesis per frame (most cameras agreeing, near the last position) with per-camera
    ``threshold`` (C,) pixels."""
    track = _Track(np.full(shape, -1, dtype=int), np.full(shape, -1, dtype=int))
    max_speed, tolerance = config.max_speed_m_s, config.position_tolerance_m
    dt = np.diff(times, prepend=times[0] - 1.0) if len(times) else times
    last_centre: np.ndarray | None = None
    last_time = -np.inf
    for t, frame in enumerate(frames):
        if frame is None:
            continue
        agree = frame.error < threshold[None]
        support = agree.sum(-1) - 1e-3 * np.where(agree, frame.error / threshold[None], 0).sum(-1)
        choice = None
        if last_centre is not None:
            reach = max_speed * max(times[t] - last_time, dt[t]) + tolerance
            near = np.linalg.norm(frame.centre - last_centre, axis=-1) < reach
            if near.any():
                choice = int(np.argmax(np.where(near, support, -np.inf)))
        if choice is None:
            choice = int(np.argmax(support))
            track.restarts += last_centre is not None
        if agree[choice].sum() < 2:
            continue
        track.slots[:, t] = np.where(agree[choice], frame.person[choice], -1)
        track.nearest[:, t] = np.where(np.isfinite(frame.error[choice]), frame.person[choice], -1)
        last_centre, last_time = frame.centre[choice], times[t]
    return track


def _low_cluster(values: np.ndarray, floor: float, cap: float, k: float) -> tuple[float, float]:
    """(threshold, fraction of ``values`` below it) for the low cluster of ``values``: median + k robust
    sigmas (1.4826 MAD) of the values below the threshold itself, iterated from those below ``cap`` and kept
    in [floor, cap], so a bystander's errors or a missed performer's (the nearest person is then someone
    else), far above, drop out. (NaN, 0): too few values."""
    kept = values[values < cap]
    threshold = cap
    for _ in range(10):
        if len(kept) < _MIN_SAMPLES:
            return float("nan"), 0.0
        median = float(np.median(kept))
        new = min(max(median + k * _MAD_TO_SIGMA * float(np.median(np.abs(kept - median))), floor), cap)
        if new == threshold:
            break
        threshold = new
        kept = values[values < threshold]
    return threshold, float((values < threshold).mean())


def _adaptive_thresholds(errors: np.ndarray, floor: np.ndarray, cap: np.ndarray, k: float) -> np.ndarray:
    """Per camera (C,), from its leave-one-out errors (C, T): the threshold of its low cluster
    (:func:`_low_cluster`); a camera with too few measurements takes that of every camera's errors pooled."""
    samples = [e[np.isfinite(e)] for e in errors]
    own = np.array([_low_cluster(v, f, m, k)[0] for v, f, m in zip(samples, floor, cap, strict=True)])
    pooled = _low_cluster(np.concatenate(samples), float(np.median(floor)), float(np.median(cap)), k)[0]
    out = np.where(np.isfinite(own), own, pooled)
    out = np.where(np.isfinite(out), out, 2 * floor)  # nothing measured anywhere: the first pass's gate
    return np.clip(out, floor, cap)


def associate_with_diagnostics(
    rig: CameraRig, detections: Detections2D, config: AssociationConfig | None = None
) -> Association:
    """Pick the performer in every camera and frame: detections (C, T, P, J) -> :class:`Association`
    (keypoints (C, T, J), slots (C, T), thresholds used, errors). Cameras are matched by name."""
    config = config or AssociationConfig()
    C, T, P, J = detections.confidence.shape
    if P == 1:
        slots = np.where((detections.confidence[:, :, 0] > 0).any(-1), 0, -1)
        return Association(detections.person(slots), slots, np.full(C, np.nan), np.full((C, T), np.nan),
                           adaptive=False)
    rig = match_rig(rig, detections.camera_names, "detections")
    views = _views(rig, detections, config)
    min_joints = max(3, J // 4)
    frames = _score_frames(views, min_joints)
    times = np.asarray(detections.frame_times, float)
    if config.max_error_px > 0:
        threshold = np.full(C, float(config.max_error_px))
    else:
        diagonal = np.array([np.hypot(*c.size) for c in rig.cameras], float)
        floor, cap = config.min_error_fraction * diagonal, config.max_error_fraction * diagonal
        first = _follow(frames, times, 2 * floor, config, (C, T))
        errors = _leave_one_out(views, first, min_joints)
        threshold = _adaptive_thresholds(errors, floor, cap, config.error_mad_factor)
        log.info("association thresholds from the take's reprojection errors: %s",
                 ", ".join(f"{n} {v:.1f} px" for n, v in zip(detections.camera_names, threshold, strict=True)))
    track = _follow(frames, times, threshold, config, (C, T))
    if track.restarts:
        log.info("performer track restarted %d time(s) (lost and found again)", track.restarts)
    errors = np.where(track.slots >= 0, _leave_one_out(views, track, min_joints), np.nan)
    return Association(detections.person(track.slots), track.slots, threshold, errors,
                       adaptive=config.max_error_px <= 0, restarts=track.restarts)


def associate(
    rig: CameraRig, detections: Detections2D, config: AssociationConfig | None = None
) -> tuple[Keypoints2D, np.ndarray]:
    """Pick the performer in every camera and frame.

    detections (C, T, P, J) -> (Keypoints2D (C, T, J) of the performer, slots (C, T) int: the chosen
    person per camera and frame, -1 where the performer was not found). Cameras are matched by name. See
    :func:`associate_with_diagnostics` for the thresholds used and the errors measured.
    """
    result = associate_with_diagnostics(rig, detections, config)
    return result.keypoints, result.slots




