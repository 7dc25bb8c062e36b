"""Foot contact of a fit: which sole points are planted, where each contact is anchored, and foot sliding."""

from __future__ import annotations

import numpy as np
from mocap_studio.reconstruction.body.fit_config import FitConfig
from mocap_studio.reconstruction.body.fit_signals import lowpass
from mocap_studio.reconstruction.filtering import runs

# ---------------------------------------------------------------------------------------------------
# foot contact


def detect_contacts(soles: np.ndarray, clearance: np.ndarray, fps: float, cfg: FitConfig) -> np.ndarray:
    """(T, P) bool: sole point p is low (within ``contact_height_m`` of its rest clearance over the floor)
    and still (slower than ``contact_speed_m_s``, measured on its path low-passed at
    ``contact_cutoff_hz``, as a fit's sole wobbles with the keypoint noise) for at least ``contact_min_s``;
    once still, a contact lasts while the point stays low and slower than twice that (hysteresis, so
    that a wobble of the fit does not break a contact in two).

    soles: (T, P, 3) fitted sole points (metres); clearance: (P,) their heights above the floor at rest.
    """
    if soles.ndim != 3 or soles.shape[2] != 3 or clearance.shape != (soles.shape[1],):
        raise ValueError(f"soles must be (T, P, 3) and clearance (P,), got {soles.shape} and {clearance.shape}")
    T = len(soles)
    out = np.zeros(soles.shape[:2], dtype=bool)
    if T < 3:
        return out
    k = max(1, int(round(fps / 30)))
    speed = np.zeros(soles.shape[:2])
    path = lowpass(soles, fps, cfg.contact_cutoff_hz)
    if T > 2 * k:
        speed[k:-k] = np.linalg.norm(path[2 * k :] - path[: -2 * k], axis=-1) * fps / (2 * k)
        speed[:k], speed[-k:] = speed[k], speed[-k - 1]
    low = soles[..., 2] - clearance < cfg.contact_height_m
    still = low & (speed < cfg.contact_speed_m_s)
    held = low & (speed < 2 * cfg.contact_speed_m_s)
    shortest = max(2, int(round(cfg.contact_min_s * fps)))
    for p in range(still.shape[1]):
        for a, b in runs(held[:, p]):  # hysteresis: a contact starts still and lasts while nearly still
            out[a:b, p] = b - a >= shortest and bool(still[a:b, p].any())
    return out


def contact_anchors(
    soles: np.ndarray, clearance: np.ndarray, contact: np.ndarray, fps: float, cfg: FitConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Where each sole point in contact is held: anchors (T, P, 3) and weights (T, P) in [0, 1].

    A contact's anchor is the point's median position over the contact; its height is the point's rest
    clearance (on the floor) when within ``floor_tolerance_m`` of it. Weights ramp in and out over
    ``contact_ramp_s``.
    """
    anchors = np.zeros(soles.shape)
    weights = np.zeros(contact.shape)
    ramp = max(1, int(round(cfg.contact_ramp_s * fps)))
    for p in range(contact.shape[1]):
        for a, b in runs(contact[:, p]):
            pos = np.median(soles[a:b, p], axis=0)
            if abs(pos[2] - clearance[p]) < cfg.floor_tolerance_m:
                pos[2] = clearance[p]
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
