"""Foot contact of a fit: where the ground is, which sole points are planted, where each contact is
anchored, and foot sliding.

The ground is estimated from the take, not assumed at Z = 0: a performer may stand on a raised platform, a
floor may not be where the calibration board lay, and a contact pinned to the wrong height drags the whole
body up or down. :func:`estimate_ground` takes the height at which the fit's still feet rest."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mocap_studio.reconstruction.body.fit_config import FitConfig
from mocap_studio.reconstruction.body.fit_signals import lowpass
from mocap_studio.reconstruction.filtering import runs

# ---------------------------------------------------------------------------------------------------
# foot contact


@dataclass(frozen=True)
class Ground:
    """The ground of a take: height ``z`` (metres, world Z) and how it was found: ``frames`` (foot-frames
    whose still sole decided it), ``spread_m`` (the median distance of those soles from it), ``source``
    ("still feet", "lowest feet": no foot was ever still, the 5th percentile of the soles, or "none": no
    foot seen, Z = 0)."""

    z: float
    frames: int
    spread_m: float
    source: str


GROUND_BAND_M = 0.05
"""Still soles farther than this above the lowest still ones are not on the ground (a foot resting on a
box, a toe-tap) and do not count."""


def _sole_speeds(soles: np.ndarray, fps: float, cfg: FitConfig) -> np.ndarray:
    """(T, P) speed (m/s) of each sole point (T, P, 3) along its path low-passed at ``contact_cutoff_hz``
    (central differences over about 1/15 s: a fit's sole wobbles with the keypoint noise)."""
    T = len(soles)
    k = max(1, int(round(fps / 30)))
    speed = np.zeros(soles.shape[:2])
    path = lowpass(soles, fps, cfg.contact_cutoff_hz)
    if T > 2 * k:
        speed[k:-k] = np.linalg.norm(path[2 * k :] - path[: -2 * k], axis=-1) * fps / (2 * k)
        speed[:k], speed[-k:] = speed[k], speed[-k - 1]
    return speed


def estimate_ground(soles: np.ndarray, clearance: np.ndarray, fps: float, cfg: FitConfig, feet: int = 2) -> Ground:
    """The ground height of a take from its fitted sole points (T, P, 3) (P = ``feet`` x points per foot,
    feet in order; NaN: not fitted) and their rest heights above the floor (P,): in every frame, each foot's
    lowest point says where the floor would be were that foot on it (its height less its clearance); over
    the frames where that foot is still (slower than ``contact_speed_m_s``), the ground is the median of
    those heights within :data:`GROUND_BAND_M` of their 10th percentile (so a foot held still in the air or
    on a box does not lift it). With no still foot, the 5th percentile of all of them."""
    if soles.ndim != 3 or soles.shape[2] != 3 or clearance.shape != (soles.shape[1],) or soles.shape[1] % feet:
        raise ValueError(
            f"soles must be (T, P, 3) with P a multiple of {feet} and clearance (P,), got {soles.shape} and {clearance.shape}"
        )
    T, P = soles.shape[:2]
    if T == 0 or not np.isfinite(soles).any():
        return Ground(0.0, 0, float("nan"), "none")
    height = (soles[..., 2] - clearance).reshape(T, feet, P // feet)
    low = np.argmin(np.where(np.isfinite(height), height, np.inf), axis=2)  # (T, feet) each foot's lowest point
    floor = np.take_along_axis(height, low[..., None], 2)[..., 0]
    speed = _sole_speeds(np.nan_to_num(soles), fps, cfg).reshape(T, feet, P // feet)
    still = (np.take_along_axis(speed, low[..., None], 2)[..., 0] < cfg.contact_speed_m_s) & np.isfinite(floor)
    if still.sum() >= max(3, int(round(0.1 * fps))):
        h = floor[still]
        h = h[h <= np.percentile(h, 10) + GROUND_BAND_M]
        z = float(np.median(h))
        return Ground(z, int(h.size), float(np.median(np.abs(h - z))), "still feet")
    h = floor[np.isfinite(floor)]
    z = float(np.percentile(h, 5))
    return Ground(z, int(h.size), float(np.median(np.abs(h - z))), "lowest feet")


def detect_contacts(
    soles: np.ndarray, clearance: np.ndarray, fps: float, cfg: FitConfig, ground_z: float = 0.0
) -> np.ndarray:
    """(T, P) bool: sole point p is low (within ``contact_height_m`` of its rest clearance over the floor)
    and still (slower than ``contact_speed_m_s``, measured on its path low-passed at
    ``contact_cutoff_hz``, as a fit's sole wobbles with the keypoint noise) for at least ``contact_min_s``;
    once still, a contact lasts while the point stays low and slower than twice that (hysteresis, so
    that a wobble of the fit does not break a contact in two).

    soles: (T, P, 3) fitted sole points (metres); clearance: (P,) their heights above the floor at rest;
    ground_z: the ground's height (:func:`estimate_ground`).
    """
    if soles.ndim != 3 or soles.shape[2] != 3 or clearance.shape != (soles.shape[1],):
        raise ValueError(f"soles must be (T, P, 3) and clearance (P,), got {soles.shape} and {clearance.shape}")
    T = len(soles)
    out = np.zeros(soles.shape[:2], dtype=bool)
    if T < 3:
        return out
    speed = _sole_speeds(soles, fps, cfg)
    low = soles[..., 2] - ground_z - clearance < cfg.contact_height_m
    still = low & (speed < cfg.contact_speed_m_s)
    held = low & (speed < 2 * cfg.contact_speed_m_s)
    shortest = max(2, int(round(cfg.contact_min_s * fps)))
    for p in range(still.shape[1]):
        for a, b in runs(held[:, p]):  # hysteresis: a contact starts still and lasts while nearly still
            out[a:b, p] = b - a >= shortest and bool(still[a:b, p].any())
    return out


def contact_anchors(
    soles: np.ndarray, clearance: np.ndarray, contact: np.ndarray, fps: float, cfg: FitConfig, ground_z: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Where each sole point in contact is held: anchors (T, P, 3) and weights (T, P) in [0, 1].

    A contact's anchor is the point's median position over the contact; its height is the point's rest
    clearance above the ground (``ground_z``) when within ``floor_tolerance_m`` of it. Weights ramp in and
    out over ``contact_ramp_s``.
    """
    anchors = np.zeros(soles.shape)
    weights = np.zeros(contact.shape)
    ramp = max(1, int(round(cfg.contact_ramp_s * fps)))
    for p in range(contact.shape[1]):
        for a, b in runs(contact[:, p]):
            pos = np.median(soles[a:b, p], axis=0)
            if abs(pos[2] - ground_z - clearance[p]) < cfg.floor_tolerance_m:
                pos[2] = ground_z + clearance[p]
            anchors[a:b, p] = pos
            r = min(ramp, (b - a) // 2)
            w = np.ones(b - a)
            if r > 0:  # no ramp where the contact runs past the take's first or last frame
                up = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, r + 1) / (r + 1))
                if a > 0:
                    w[:r] = up
                if b < len(contact):
                    w[len(w) - r :] = up[::-1]
            weights[a:b, p] = w
    return anchors, weights


def foot_sliding_mm_s(points: np.ndarray, contact: np.ndarray, fps: float) -> float:
    """Foot sliding: the mean horizontal speed (mm/s) of points (T, P, 3) over the frames where they are
    in contact (T, P) bool (both ends of a frame step in contact); 0 without contact."""
    if points.ndim != 3 or points.shape[2] != 3 or contact.shape != points.shape[:2]:
        raise ValueError(f"points must be (T, P, 3) and contact (T, P), got {points.shape} and {contact.shape}")
    both = contact[1:] & contact[:-1]
    if not both.any():
        return 0.0
    step = np.linalg.norm(points[1:, :, :2] - points[:-1, :, :2], axis=-1)
    return float(step[both].sum() * 1000.0 / (both.sum() / fps))
