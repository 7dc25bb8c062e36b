"""One performer among bystanders: choose, per frame and camera, the detected person whose keypoints agree
with the other views, and keep that identity over time.

Per frame, every pairing of two people in two cameras is a hypothesis: their joints are triangulated and
projected into every camera, where the closest person (median joint error) agrees if within
``max_error_px``. The hypothesis that most cameras agree with wins, among those whose body centre lies
within ``max_speed_m_s`` of the performer's last position; when none does (the performer left the view,
or at the start), the best-supported hypothesis (re)starts the track. Vectorized over hypotheses, joints
and cameras; the loop runs over frames only.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.reconstruction.keypoints import Detections2D, Keypoints2D
from mocap_studio.reconstruction.triangulate import _dlt_terms, _to_cameras, _weighted_solve, match_rig

log = logging.getLogger(__name__)

__all__ = ["AssociationConfig", "associate"]


@dataclass(frozen=True)
class AssociationConfig:
    """Settings for choosing the performer (part of the detect and import-keypoints stages)."""

    max_error_px: float = 25.0
    """A person agrees with a 3D hypothesis when its median joint reprojection error is below this."""
    min_confidence: float = 0.3
    """Joints below this confidence are ignored when comparing people."""
    max_speed_m_s: float = 3.0
    """The performer's body centre moves at most this fast; farther hypotheses belong to someone else."""

    def __post_init__(self) -> None:
        if self.max_error_px <= 0 or self.max_speed_m_s <= 0:
            raise ValueError("max_error_px and max_speed_m_s must be positive")


def _frame_hypotheses(C: int, present: np.ndarray) -> np.ndarray:
    """(H, 4) rows (camera a, person p, camera b, person q) for every pair of present people."""
    rows = []
    for a, b in itertools.combinations(range(C), 2):
        for p in np.flatnonzero(present[a]):
            for q in np.flatnonzero(present[b]):
                rows.append((a, p, b, q))
    return np.array(rows, dtype=int).reshape(-1, 4)


def associate(
    rig: CameraRig, detections: Detections2D, config: AssociationConfig | None = None
) -> tuple[Keypoints2D, np.ndarray]:
    """Pick the performer in every camera and frame.

    detections (C, T, P, J) -> (Keypoints2D (C, T, J) of the performer, slots (C, T) int: the chosen
    person per camera and frame, -1 where the performer was not found). Cameras are matched by name.
    """
    config = config or AssociationConfig()
    C, T, P, J = detections.confidence.shape
    if P == 1:
        slots = np.where((detections.confidence[:, :, 0] > 0).any(-1), 0, -1)
        return detections.person(slots), slots
    rig = match_rig(rig, detections.camera_names, "detections")
    extrinsics = np.stack([np.hstack([c.R, c.t[:, None]]) for c in rig.cameras])
    focal = np.array([np.sqrt(c.K[0, 0] * c.K[1, 1]) for c in rig.cameras])
    xy = rig.undistort_points(detections.xy.reshape(C, -1, 2)).reshape(C, T, P, J, 2)
    good = detections.confidence >= config.min_confidence  # (C, T, P, J)
    xy = np.where(good[..., None], xy, np.nan)
    dt = np.diff(detections.frame_times, prepend=detections.frame_times[0] - 1.0)
    slots = np.full((C, T), -1, dtype=int)
    last_centre: np.ndarray | None = None
    last_time = -np.inf
    restarts = 0
    for t in range(T):
        present = good[:, t].sum(-1) >= max(3, J // 4)  # (C, P): enough joints to compare
        hyp = _frame_hypotheses(C, present)
        if not len(hyp):
            continue
        H = len(hyp)
        obs = np.full((H, J, C, 2), np.nan)
        obs[np.arange(H), :, hyp[:, 0]] = xy[hyp[:, 0], t, hyp[:, 1]]
        obs[np.arange(H), :, hyp[:, 2]] = xy[hyp[:, 2], t, hyp[:, 3]]
        obs = obs.reshape(H * J, C, 2)
        M, b = _dlt_terms(extrinsics, obs)
        w = np.isfinite(obs).all(-1).astype(float)
        X = _weighted_solve(M, b, w).reshape(H, J, 3)
        X[(w.reshape(H, J, C).sum(-1) < 2)] = np.nan
        cam = _to_cameras(extrinsics, np.nan_to_num(X))  # (H, J, C, 3)
        z = np.where(np.isfinite(X).all(-1)[..., None] & (cam[..., 2] > 1e-6), cam[..., 2], np.nan)
        proj = cam[..., :2] / z[..., None]  # (H, J, C, 2)
        diff = proj.transpose(0, 2, 1, 3)[:, :, None] - xy[None, :, t]  # (H, C, P, J, 2)
        err = np.sqrt((diff**2).sum(-1)) * focal[None, :, None, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # people with no joint in common: all-NaN
            median = np.nanmedian(np.where(np.isfinite(err), err, np.nan), axis=-1)  # (H, C, P)
        median = np.where(np.isfinite(median), median, np.inf)
        best_person = np.argmin(median, axis=-1)  # (H, C)
        best_err = np.take_along_axis(median, best_person[..., None], -1)[..., 0]
        agree = best_err < config.max_error_px
        support = agree.sum(-1) - 1e-3 * np.where(agree, best_err, 0).sum(-1) / config.max_error_px
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            centre = np.nanmean(X, axis=1)  # (H, 3)
        choice = None
        if last_centre is not None:
            reach = config.max_speed_m_s * max(detections.frame_times[t] - last_time, dt[t])
            near = np.linalg.norm(centre - last_centre, axis=-1) < reach
            if near.any():
                choice = int(np.argmax(np.where(near, support, -np.inf)))
        if choice is None:
            choice = int(np.argmax(support))
            restarts += last_centre is not None
        if agree[choice].sum() < 2:
            continue
        slots[:, t] = np.where(agree[choice], best_person[choice], -1)
        last_centre, last_time = centre[choice], detections.frame_times[t]
    if restarts:
        log.info("performer track restarted %d time(s) (lost and found again)", restarts)
    return detections.person(slots), slots
