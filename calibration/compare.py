"""Compare a calibrated rig with a reference rig (truth, or another tool's calibration)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.common.rotations import average_rotations, rotation_angle_deg


def kabsch(source: np.ndarray, target: np.ndarray, with_scale: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """(R, t, s) minimising |s R source + t - target| over points (N, 3) (Umeyama)."""
    source, target = np.asarray(source, float), np.asarray(target, float)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3:
        raise ValueError(f"source and target must both be (N, 3), got {source.shape} and {target.shape}")
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    u, sig, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    D = np.diag([1.0, 1.0, d])
    R = u @ D @ vt
    s = float(np.trace(np.diag(sig) @ D) / np.sum(a * a)) if with_scale else 1.0
    return R, mu_t - s * R @ mu_s, s


@dataclass(frozen=True)
class RigComparison:
    """Per-camera differences after aligning the rigs (rotation from the orientations, translation and
    optional scale from the centres)."""

    cameras: tuple[str, ...]
    centre_error_m: np.ndarray
    rotation_error_deg: np.ndarray
    focal_error_rel: np.ndarray
    scale: float
    rotation: np.ndarray
    """(3, 3) with ``translation`` (3,) and ``scale``: reference-world point = scale * rotation @ estimate + t."""
    translation: np.ndarray

    def summary(self) -> dict[str, float]:
        """Mean and maximum centre (mm) and rotation (degrees) errors, and the largest focal error (%)."""
        return {
            "centre_error_mean_mm": float(1000 * self.centre_error_m.mean()),
            "centre_error_max_mm": float(1000 * self.centre_error_m.max()),
            "rotation_error_mean_deg": float(self.rotation_error_deg.mean()),
            "rotation_error_max_deg": float(self.rotation_error_deg.max()),
            "focal_error_max_percent": float(100 * np.abs(self.focal_error_rel).max()),
        }


def compare_rigs(estimate: CameraRig, reference: CameraRig, with_scale: bool = False) -> RigComparison:
    """Align ``estimate`` to ``reference`` on the shared cameras (by name) and measure the differences."""
    names = tuple(n for n in reference.names if n in estimate)
    if len(names) < 2:
        raise ValueError(f"need at least two cameras in common to compare rigs; shared: {list(names)}")
    est, ref = estimate.subset(names), reference.subset(names)
    # The rotation comes from the cameras' orientations, not from the centres: the centres of a ring of
    # cameras at one height are nearly coplanar, which leaves the tilt of a centre-only fit poorly defined.
    R = average_rotations(np.stack([b.R.T @ a.R for a, b in zip(est, ref, strict=True)]))
    _, _, s = kabsch(est.centers, ref.centers, with_scale)
    t = ref.centers.mean(0) - s * R @ est.centers.mean(0)
    aligned = est.transformed(R, t, s)
    centre = np.linalg.norm(aligned.centers - ref.centers, axis=1)
    rot = np.array([rotation_angle_deg(a.R, b.R) for a, b in zip(aligned, ref, strict=True)])
    focal = np.array([a.K[0, 0] / b.K[0, 0] - 1 for a, b in zip(aligned, ref, strict=True)])
    return RigComparison(names, centre, rot, focal, s, R, t)
