"""Signal preparation for body fitting: input checks, temporal outliers, gap filling, low-pass, frame rate."""

from __future__ import annotations

import numpy as np
from mocap_studio.reconstruction.body.fit_config import FitConfig, FitError
from mocap_studio.reconstruction.body.model import SkinnedBodyModel
from mocap_studio.reconstruction.keypoints import Keypoints3D

# ---------------------------------------------------------------------------------------------------
# input checks


def _check_input(model: SkinnedBodyModel, kp: Keypoints3D, cfg: FitConfig) -> tuple[np.ndarray, np.ndarray]:
    """Targets (T, K, 3) with missing points set to 0 and weights (T, K) (0: missing); raises FitError on
    unusable input."""
    reg = model.keypoint_regressor(kp.skeleton)
    if reg.supported.sum() < 8 or reg.supported.mean() < 0.8:
        raise FitError(
            f"skeleton {kp.skeleton!r}: the {model.name} model defines only {int(reg.supported.sum())} of its "
            "joints; fit needs a detector skeleton such as blazepose33, coco17 or halpe26"
        )
    for side in ("left", "right"):
        for j in ("hip", "shoulder"):
            if f"{side}_{j}" not in reg.joint_names:
                raise FitError(f"skeleton {kp.skeleton!r} has no {side}_{j}; fit needs hips and shoulders")
    xyz = np.asarray(kp.xyz, dtype=float)
    valid = np.isfinite(xyz).all(-1) & reg.supported[None]
    err = np.nan_to_num(np.asarray(kp.error, dtype=float), nan=0.0, posinf=1e6)
    w = valid / (1.0 + (err / cfg.error_scale_px) ** 2)
    observed = valid.sum(1) >= cfg.min_joints
    if not observed.any():
        raise FitError(
            f"no frame of the take has {cfg.min_joints} or more valid keypoints (of {kp.num_frames} frames); "
            "check triangulation (keypoints3d.npz is all NaN or nearly so)"
        )
    w[~observed] = 0.0
    return np.where(valid[..., None], xyz, 0.0), w


def _drop_temporal_outliers(target: np.ndarray, weight: np.ndarray, fps: float, cfg: FitConfig) -> np.ndarray:
    """Weights (T, K) with 0 for keypoints farther than ``outlier_sigmas`` keypoint sigmas from their
    running median over about 0.1 s (isolated gross errors, before any fitting can be pulled by them).

    target (T, K, 3), weight (T, K) (0: missing)."""
    from scipy.ndimage import median_filter

    if len(target) < 5:
        return weight
    width = max(5, int(round(fps / 10)) | 1)
    xyz = _fill_nan(np.where(weight[..., None] > 0, target, np.nan))
    med = median_filter(np.nan_to_num(xyz), size=(width, 1, 1), mode="nearest")
    far = np.linalg.norm(target - med, axis=-1) > cfg.outlier_sigmas * cfg.keypoint_sigma_m
    return np.where(far, 0.0, weight)


def _fill_nan(xyz: np.ndarray) -> np.ndarray:
    """(T, K, 3) -> the same with NaN runs linearly interpolated over time (held at the ends)."""
    out = xyz.copy()
    t = np.arange(len(xyz))
    for k in range(xyz.shape[1]):
        ok = np.isfinite(xyz[:, k]).all(-1)
        if ok.sum() == 0 or ok.all():
            continue
        for d in range(3):
            out[:, k, d] = np.interp(t, t[ok], xyz[ok, k, d])
    return out


def lowpass(xyz: np.ndarray, fps: float, cutoff_hz: float) -> np.ndarray:
    """(T, K, 3) with NaN -> gaps filled by linear interpolation, then the zero-phase Butterworth low-pass of
    reconstruction.filtering (the reference filter of the jitter figures). Joints never seen stay 0."""
    from mocap_studio.reconstruction.filtering import butterworth

    filled = np.nan_to_num(_fill_nan(np.asarray(xyz, dtype=float)), nan=0.0)
    if len(xyz) < 16 or cutoff_hz <= 0 or cutoff_hz >= fps / 2:
        return filled
    return np.ascontiguousarray(butterworth(filled, fps, cutoff_hz, order=4))


def _frame_rate(times: np.ndarray) -> float:
    d = np.diff(np.asarray(times, dtype=float))
    d = d[np.isfinite(d) & (d > 0)]
    if d.size == 0:
        raise FitError("cannot tell the frame rate from the keypoints' frame times; pass frame_rate")
    return float(1.0 / np.median(d))
