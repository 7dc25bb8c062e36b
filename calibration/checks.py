"""Plausibility checks that stop a wrong calibration before it is written.

A calibration solver always returns numbers; on bad input (views that were not simultaneous, a wrong board
definition, too few views) they can be absurd (focal lengths of 697,354 px, an RMS of 85 px) and every later
stage would inherit them. These checks refuse such a camera with a message that names it and says what to
do, so nothing is written.

The focal-length bounds are in image diagonals (focal length in pixels over the diagonal in pixels, which
does not depend on the resolution):

- 0.15 diagonals: a pinhole fit of a lens with a 146 degree diagonal field of view, or an equidistant fisheye
  (focal = diagonal / pi for 180 degrees over the diagonal, 0.32) with room to spare. Phone ultra-wides
  (about 120 degrees, 0.29) and webcams (70-90 degrees, 0.5-0.7) lie well inside.
- 15 diagonals: a 650 mm lens on a full-frame sensor (43.3 mm diagonal), a 3.4 degree field of view; phone
  telephotos (5x-10x, 120-240 mm equivalent) are 2.8-5.5.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from mocap_studio.calibration.camera import Camera


@dataclass(frozen=True)
class PlausibilityConfig:
    """Bounds outside which a calibrated camera is refused (see the module docstring for the figures)."""

    min_focal_diagonals: float = 0.15
    """Smallest focal length accepted, in image diagonals (0.15: a 146 degree pinhole field of view)."""
    max_focal_diagonals: float = 15.0
    """Largest focal length accepted, in image diagonals (15: a 650 mm lens on a full-frame sensor)."""
    max_aspect: float = 2.0
    """Largest accepted ratio between fx and fy (either way round)."""
    max_rms_px: float = 3.0
    """Largest accepted reprojection RMS in pixels of a camera's board corners (a good board recording gives
    0.1-1 px; OpenCV's stereo photos 0.4 px)."""

    def __post_init__(self) -> None:
        if not 0 < self.min_focal_diagonals < self.max_focal_diagonals:
            raise ValueError(f"min_focal_diagonals ({self.min_focal_diagonals}) must be > 0 and below "
                             f"max_focal_diagonals ({self.max_focal_diagonals})")
        if self.max_aspect < 1:
            raise ValueError(f"max_aspect must be >= 1, got {self.max_aspect}")
        if self.max_rms_px <= 0:
            raise ValueError(f"max_rms_px must be > 0, got {self.max_rms_px}")


class ImplausibleCalibrationError(ValueError):
    """A calibrated camera whose figures cannot be right; the message names it and says what to do."""


def camera_problems(camera: Camera, rms_px: float | None = None,
                    config: PlausibilityConfig = PlausibilityConfig()) -> list[str]:
    """What is implausible about ``camera`` (and its reprojection RMS in pixels, when given); [] when nothing."""
    w, h = camera.size
    diagonal = math.hypot(w, h)
    fx, fy = float(camera.K[0, 0]), float(camera.K[1, 1])
    cx, cy = float(camera.K[0, 2]), float(camera.K[1, 2])
    problems = []
    lo, hi = config.min_focal_diagonals * diagonal, config.max_focal_diagonals * diagonal
    for axis, f in (("fx", fx), ("fy", fy)):
        if not lo <= f <= hi:
            problems.append(f"focal length {axis} = {f:,.1f} px is {f / diagonal:.3g} image diagonals ({w}x{h}); "
                            f"real lenses lie between {lo:,.0f} and {hi:,.0f} px "
                            f"({config.min_focal_diagonals}-{config.max_focal_diagonals} diagonals)")
    if max(fx, fy) > config.max_aspect * min(fx, fy):
        problems.append(f"fx = {fx:,.1f} px and fy = {fy:,.1f} px differ by more than {config.max_aspect}x")
    if not (0 <= cx <= w and 0 <= cy <= h):
        problems.append(f"the principal point ({cx:,.1f}, {cy:,.1f}) px lies outside the {w}x{h} image")
    if not np.all(np.isfinite(camera.dist)):
        problems.append("its distortion coefficients are not finite")
    if rms_px is not None and not (np.isfinite(rms_px) and rms_px <= config.max_rms_px):
        problems.append(f"its board corners reproject with an RMS of {rms_px:.2f} px (at most {config.max_rms_px} px "
                        "is accepted)")
    return problems


def check_cameras(cameras: Iterable[Camera], rms_px: Mapping[str, float] | None = None,
                  config: PlausibilityConfig = PlausibilityConfig(), advice: str = "") -> None:
    """Raise :class:`ImplausibleCalibrationError` listing every implausible camera by name (with ``advice``
    on what to do appended); return quietly when all are plausible. ``rms_px``: camera name -> RMS."""
    found = []
    for cam in cameras:
        problems = camera_problems(cam, (rms_px or {}).get(cam.name), config)
        if problems:
            found.append(f"camera {cam.name!r}: " + "; ".join(problems))
    if found:
        raise ImplausibleCalibrationError(
            "refusing to write this calibration, its figures cannot be right:\n  " + "\n  ".join(found)
            + ("\n" + advice if advice else "")
        )
