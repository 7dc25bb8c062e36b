"""Temporal filtering of 3D keypoint trajectories, and bone-length consistency over a take.

All filters take ``xyz`` (T, J, 3) in metres with NaN for missing points and return the same shape; NaN
stays NaN (a filter never invents a point where triangulation found none; gap filling is triangulation's
job). Filters run over every joint and axis at once; only the recursive filters loop over frames.

- :func:`butterworth`: zero-phase low-pass (``filtfilt``), applied to each run of consecutive frames.
- :func:`one_euro`: the adaptive low-pass of Casiez et al. (2012): smooth when slow, responsive when fast.
- :func:`kalman_rts`: constant-velocity Kalman filter with a Rauch-Tung-Striebel backward pass, skipping
  missing measurements.
- :func:`bone_lengths`: moves the joints of each rigid segment (upper arm, thigh, ...) so that its length
  equals its median over the take.

:func:`smooth` applies the method chosen in :class:`FilterConfig`; the default was chosen by measurement
(see README: "Filtering").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from mocap_studio.reconstruction.skeletons import SkeletonFormat, get_format
from scipy.signal import butter, sosfiltfilt

log = logging.getLogger(__name__)

METHODS = ("none", "butterworth", "one_euro", "kalman")
__all__ = ["FilterConfig", "METHODS", "butterworth", "one_euro", "kalman_rts", "bone_lengths", "smooth"]


@dataclass(frozen=True)
class FilterConfig:
    """Settings of the trajectory filter (the ``[filter]`` table of session.toml)."""

    method: str = "butterworth"
    """One of none, butterworth, one_euro, kalman (chosen by measurement: README, "Filtering")."""
    cutoff_hz: float = 6.0
    """Butterworth cut-off frequency; human movement has little power above 6 Hz."""
    order: int = 4
    """Butterworth order (the zero-phase pass doubles it)."""
    min_cutoff_hz: float = 2.0
    """One-Euro cut-off at rest."""
    beta: float = 20.0
    """One-Euro speed coefficient (s/m): the cut-off grows by beta x the joint's speed in m/s."""
    process_noise: float = 5.0
    """Kalman: white-acceleration spectral density in m^2/s^3 (how hard the body may accelerate)."""
    measurement_noise_m: float = 0.008
    """Kalman: standard deviation of a triangulated point in metres."""
    bone_lengths: bool = True
    """Make rigid segments keep their median length over the take (after smoothing)."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"filter method must be one of {METHODS}, got {self.method!r}")
        if self.cutoff_hz <= 0 or self.order < 1 or self.min_cutoff_hz <= 0 or self.beta < 0:
            raise ValueError("cutoff_hz, min_cutoff_hz must be > 0, order >= 1, beta >= 0")
        if self.process_noise <= 0 or self.measurement_noise_m <= 0:
            raise ValueError("process_noise and measurement_noise_m must be positive")


def _check(xyz: np.ndarray, fps: float) -> np.ndarray:
    xyz = np.asarray(xyz, dtype=float)
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"xyz must have shape (T, J, 3), got {xyz.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return xyz


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a (T,) mask."""
    edges = np.diff(np.concatenate([[0], np.asarray(flags).astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def butterworth(xyz: np.ndarray, fps: float, cutoff_hz: float = 6.0, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth low-pass of (T, J, 3) trajectories. Runs too short for the filter's padding
    are left as they are."""
    xyz = _check(xyz, fps)
    T, J, _ = xyz.shape
    nyquist = fps / 2
    if cutoff_hz >= nyquist:
        log.warning("cut-off %.1f Hz is not below Nyquist (%.1f Hz): not filtering", cutoff_hz, nyquist)
        return xyz.copy()
    sos = butter(order, cutoff_hz / nyquist, output="sos")
    pad = 3 * (2 * len(sos) + 1)  # sosfiltfilt's default padding
    out = xyz.copy()
    valid = np.isfinite(xyz).all(-1)  # (T, J)
    for j in range(J):
        for s, e in runs(valid[:, j]):
            if e - s > pad:
                out[s:e, j] = sosfiltfilt(sos, xyz[s:e, j], axis=0)
    return out


def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(
    xyz: np.ndarray, fps: float, min_cutoff_hz: float = 2.0, beta: float = 20.0, d_cutoff_hz: float = 1.0
) -> np.ndarray:
    """One-Euro filter of (T, J, 3) trajectories (causal). The speed that adapts the cut-off is the
    joint's 3D speed, so the three axes of a joint share one cut-off. Restarts after a missing frame."""
    xyz = _check(xyz, fps)
    dt = 1.0 / fps
    out = np.full_like(xyz, np.nan)
    prev = np.full(xyz.shape[1:], np.nan)  # (J, 3)
    dprev = np.zeros(xyz.shape[1:])
    a_d = _alpha(np.array(d_cutoff_hz), dt)
    for t in range(xyz.shape[0]):
        x = xyz[t]
        fresh = ~np.isfinite(prev).all(-1)  # joints (re)starting
        dx = np.where(fresh[:, None], 0.0, (x - prev) / dt)
        dhat = a_d * dx + (1 - a_d) * dprev
        cutoff = min_cutoff_hz + beta * np.linalg.norm(dhat, axis=-1)  # (J,)
        a = _alpha(cutoff, dt)[:, None]
        xhat = np.where(fresh[:, None], x, a * x + (1 - a) * prev)
        seen = np.isfinite(x).all(-1)
        out[t] = np.where(seen[:, None], xhat, np.nan)
        prev = np.where(seen[:, None], xhat, np.nan)
        dprev = np.where(seen[:, None], dhat, 0.0)
    return out


def kalman_rts(
    xyz: np.ndarray, fps: float, process_noise: float = 5.0, measurement_noise_m: float = 0.008
) -> np.ndarray:
    """Constant-velocity Kalman filter plus Rauch-Tung-Striebel smoother over (T, J, 3) trajectories.

    Each coordinate is an independent [position, velocity] state; the filter predicts through missing
    frames, and the output keeps NaN where the input had no point."""
    xyz = _check(xyz, fps)
    T = xyz.shape[0]
    z = xyz.reshape(T, -1)  # (T, S) series
    S = z.shape[1]
    dt = 1.0 / fps
    F = np.array([[1.0, dt], [0.0, 1.0]])
    q = process_noise
    Q = q * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
    r = measurement_noise_m**2
    x = np.zeros((S, 2))
    P = np.broadcast_to(np.diag([1e6, 1e6]), (S, 2, 2)).copy()
    first = np.argmax(np.isfinite(z), axis=0)
    x[:, 0] = np.nan_to_num(z[first, np.arange(S)])
    xs_pred, Ps_pred = np.empty((T, S, 2)), np.empty((T, S, 2, 2))
    xs, Ps = np.empty((T, S, 2)), np.empty((T, S, 2, 2))
    for t in range(T):
        if t > 0:
            x = x @ F.T
            P = F @ P @ F.T + Q
        xs_pred[t], Ps_pred[t] = x, P
        seen = np.isfinite(z[t])
        # scalar measurement of the position: gain K = P[:, 0] / (P[0, 0] + r)
        s = P[:, 0, 0] + r
        K = P[:, :, 0] / s[:, None]
        innovation = np.where(seen, np.nan_to_num(z[t]) - x[:, 0], 0.0)
        x = x + K * innovation[:, None]
        P = np.where(seen[:, None, None], P - K[:, :, None] * P[:, None, 0, :], P)
        xs[t], Ps[t] = x, P
    smoothed = xs.copy()
    for t in range(T - 2, -1, -1):
        C = Ps[t] @ F.T @ np.linalg.inv(Ps_pred[t + 1])
        smoothed[t] = xs[t] + np.einsum("sij,sj->si", C, smoothed[t + 1] - xs_pred[t + 1])
    out = smoothed[..., 0].reshape(xyz.shape)
    return np.where(np.isfinite(xyz), out, np.nan)


def bone_lengths(xyz: np.ndarray, skeleton: str | SkeletonFormat, iterations: int = 10) -> np.ndarray:
    """Give every rigid segment (see ``skeletons.RIGID_SEGMENTS``) its median length over the take by
    moving both of its joints along the segment, a few passes over all segments (they share joints).
    xyz (T, J, 3) -> (T, J, 3)."""
    fmt = get_format(skeleton)
    xyz = np.asarray(xyz, dtype=float)
    if xyz.ndim != 3 or xyz.shape[1:] != (fmt.num_joints, 3):
        raise ValueError(f"xyz must have shape (T, {fmt.num_joints}, 3) for {fmt.name}, got {xyz.shape}")
    segments = np.array(fmt.rigid_segments, dtype=int).reshape(-1, 2)
    if not len(segments):
        return xyz.copy()
    out = xyz.copy()
    a, b = segments[:, 0], segments[:, 1]
    target = np.nanmedian(np.linalg.norm(xyz[:, b] - xyz[:, a], axis=-1), axis=0)  # (S,)
    for _ in range(iterations):
        d = out[:, b] - out[:, a]  # (T, S, 3)
        length = np.linalg.norm(d, axis=-1)
        ok = np.isfinite(length) & (length > 1e-9) & np.isfinite(target)
        scale = np.where(ok, (length - target) / np.where(ok, length, 1.0), 0.0)
        corr = 0.5 * d * scale[..., None]
        # accumulate corrections of joints shared by several segments, then average them
        delta = np.zeros_like(out)
        count = np.zeros(out.shape[:2])
        np.add.at(delta, (slice(None), a), corr)
        np.add.at(delta, (slice(None), b), -corr)
        np.add.at(count, (slice(None), a), ok)
        np.add.at(count, (slice(None), b), ok)
        out = out + delta / np.maximum(count, 1)[..., None]
    return out


def smooth(xyz: np.ndarray, fps: float, skeleton: str, config: FilterConfig | None = None) -> np.ndarray:
    """Apply the configured filter (and bone-length consistency) to (T, J, 3) trajectories."""
    config = config or FilterConfig()
    if config.method == "butterworth":
        out = butterworth(xyz, fps, config.cutoff_hz, config.order)
    elif config.method == "one_euro":
        out = one_euro(xyz, fps, config.min_cutoff_hz, config.beta)
    elif config.method == "kalman":
        out = kalman_rts(xyz, fps, config.process_noise, config.measurement_noise_m)
    else:
        out = _check(xyz, fps).copy()
    if config.bone_lengths:
        out = bone_lengths(out, skeleton)
    return out
