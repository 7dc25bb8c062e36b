"""Person masks (silhouettes) per camera and frame: a compact file format, resampling, agreement figures, and
the distance fields the body fit compares a model's outline with.

``masks.npz`` (the detect stage's, and a synthetic take's ``truth/masks.npz``)::

    cameras        (C,) str     camera names, in the order of the other arrays
    frame_times    (C, T) float seconds on each camera's own clock (NaN: no frame)
    present        (C, T) bool  a mask was stored (the performer was seen)
    size           (2,) int     the masks' height and width in pixels
    scale          float        mask pixels per image pixel (0.25: a quarter of the image's width)
    image_size     (C, 2) int   each camera's image width and height
    bits           (C, T, ceil(H * W / 8)) uint8   the masks, row-major, bit-packed (np.packbits)

A mask pixel (i, j) covers image pixels around ((j + 0.5) / scale - 0.5, (i + 0.5) / scale - 0.5): a point at
image pixel u lies at mask pixel (u + 0.5) * scale - 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from mocap_studio.common.fileio import load_npz, save_npz_atomic

__all__ = ["MaskSet", "MaskError", "contour_distance", "contour_points", "downsample_mask", "edge_points", "image_to_mask",
           "mask_iou", "outline_offset", "outside_distance"]


class MaskError(ValueError):
    """Unusable masks: the message names the file, camera or frame and what to do."""


@dataclass(frozen=True)
class MaskSet:
    """Masks of one take: ``masks`` (C, T, H, W) bool (False where not ``present`` (C, T)), camera names (C,),
    frame times (C, T) seconds, ``scale`` mask pixels per image pixel, ``image_size`` (C, 2) width, height."""

    cameras: tuple[str, ...]
    masks: np.ndarray
    present: np.ndarray
    frame_times: np.ndarray
    scale: float
    image_size: np.ndarray

    def __post_init__(self) -> None:
        C = len(self.cameras)
        if self.masks.ndim != 4 or self.masks.shape[0] != C:
            raise MaskError(f"masks must have shape (C={C}, T, H, W), got {self.masks.shape}")
        T = self.masks.shape[1]
        for name, arr, shape in (("present", self.present, (C, T)), ("frame_times", self.frame_times, (C, T)),
                                 ("image_size", self.image_size, (C, 2))):
            if np.shape(arr) != shape:
                raise MaskError(f"{name} must have shape {shape}, got {np.shape(arr)}")
        if not 0 < self.scale <= 1:
            raise MaskError(f"scale must be in (0, 1], got {self.scale}")

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of every mask."""
        return int(self.masks.shape[2]), int(self.masks.shape[3])

    def camera_index(self, name: str) -> int:
        """Position of camera ``name``; MaskError naming the cameras there are."""
        if name not in self.cameras:
            raise MaskError(f"no masks for camera {name!r}; the masks have {list(self.cameras)}")
        return self.cameras.index(name)

    def save(self, path: str | Path) -> Path:
        """Write ``masks.npz`` (bit-packed) atomically."""
        C, T, H, W = self.masks.shape
        bits = np.packbits(self.masks.reshape(C, T, H * W).astype(bool), axis=-1)
        return save_npz_atomic(path, cameras=np.asarray(self.cameras, dtype=str), frame_times=self.frame_times,
                               present=self.present, size=np.array([H, W]), scale=np.float64(self.scale),
                               image_size=np.asarray(self.image_size, dtype=np.int64), bits=bits)

    @classmethod
    def load(cls, path: str | Path) -> MaskSet:
        """Read a ``masks.npz``; MaskError naming the file when it is not one."""
        data = load_npz(path, ("cameras", "frame_times", "present", "size", "scale", "image_size", "bits"), MaskError,
                        "write it again with `mocap detect --overwrite` (or `mocap synth` for a truth folder)")
        H, W = (int(x) for x in data["size"])
        bits = data["bits"]
        C, T = bits.shape[:2]
        if bits.shape[2] != (H * W + 7) // 8:
            raise MaskError(f"{path}: bits hold {bits.shape[2] * 8} pixels per mask, size says {H}x{W}; the file is "
                            "damaged, write it again")
        masks = np.unpackbits(bits, axis=-1, count=H * W).reshape(C, T, H, W).astype(bool)
        return cls(tuple(str(c) for c in data["cameras"]), masks, data["present"].astype(bool),
                   data["frame_times"].astype(float), float(data["scale"]), data["image_size"].astype(np.int64))

    def nearest_frames(self, camera: str, times: np.ndarray) -> np.ndarray:
        """Index of each time's nearest stored frame (T',) of ``camera`` (-1 where none within half a frame)."""
        c = self.camera_index(camera)
        t = self.frame_times[c]
        ok = np.flatnonzero(np.isfinite(t))
        if not len(ok):
            return np.full(len(times), -1)
        pos = np.clip(np.searchsorted(t[ok], times), 1, max(len(ok) - 1, 1))
        lo, hi = ok[pos - 1], ok[np.minimum(pos, len(ok) - 1)]
        best = np.where(np.abs(t[lo] - times) <= np.abs(t[hi] - times), lo, hi)
        step = np.median(np.diff(t[ok])) if len(ok) > 1 else np.inf
        return np.where(np.abs(t[best] - times) <= 0.5 * step + 1e-9, best, -1)


def mask_size(image_width: int, image_height: int, scale: float) -> tuple[int, int]:
    """(H, W) of a mask at ``scale`` of an image of the given size."""
    return max(1, round(image_height * scale)), max(1, round(image_width * scale))


def downsample_mask(mask: np.ndarray, size: tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """A (H, W) bool or [0, 1] float mask resampled by area to ``size`` (h, w): a pixel is in where the mean of
    what it covers is at least ``threshold`` (0.5: at least half of it, for a true mask; a detector's soft mask
    may need another, see ``DetectionConfig.mask_threshold``)."""
    if mask.ndim != 2:
        raise MaskError(f"mask must have shape (H, W), got {mask.shape}")
    h, w = size
    small = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return small >= threshold


def image_to_mask(uv: np.ndarray, scale: float) -> np.ndarray:
    """Image pixel coordinates (..., 2) to mask pixel coordinates (..., 2) (see the module docstring)."""
    return (np.asarray(uv, dtype=float) + 0.5) * scale - 0.5


def outline_offset(mask: np.ndarray, points: np.ndarray, within_px: float = 3.0) -> np.ndarray:
    """The signed distance (pixels; positive: the point lies outside ``mask``) from ``mask``'s contour to each
    point (N, 2) x, y in its pixels, e.g. a true outline's :func:`contour_points`, the contour field
    (:func:`contour_distance`) interpolated bilinearly there; points farther than ``within_px`` (a limb the mask
    missed, a gap it filled) are NaN. Averaged over a body's outline it is how far the mask's edge lies inside
    the true one: negative for a mask too wide."""
    from scipy.ndimage import map_coordinates

    pts = np.asarray(points, float).reshape(-1, 2)
    d = map_coordinates(contour_distance(np.asarray(mask, bool)), [pts[:, 1], pts[:, 0]], order=1, mode="nearest")
    return np.where(np.abs(d) <= within_px, d, np.nan)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of one shape (NaN when both are empty)."""
    if a.shape != b.shape:
        raise MaskError(f"masks of different shapes {a.shape} and {b.shape}")
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def outside_distance(mask: np.ndarray) -> np.ndarray:
    """(H, W) float32: each pixel's distance (pixels) to the nearest mask pixel (0 inside the mask)."""
    if not mask.any():
        return np.full(mask.shape, 1e3, np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def edge_points(mask: np.ndarray, border: int = 1) -> np.ndarray:
    """(N, 2) x, y of the mask's boundary pixels (inside pixels with an outside 4-neighbour), those within
    ``border`` pixels of the image's edge left out (a body cut by the frame has no outline there)."""
    m = mask.astype(np.uint8)
    eroded = cv2.erode(m, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8), borderType=cv2.BORDER_REPLICATE)
    ys, xs = np.nonzero(m & (1 - eroded))
    H, W = mask.shape
    keep = (xs >= border) & (ys >= border) & (xs < W - border) & (ys < H - border)
    return np.stack([xs[keep], ys[keep]], 1).astype(float)


def contour_distance(mask: np.ndarray) -> np.ndarray:
    """(H, W) float32: each pixel centre's signed distance (pixels) to the mask's contour, placed halfway between
    inside and outside pixel centres (negative inside). A pixel is in the mask where the body covers its centre
    (or half its area), so the body's true outline lies anywhere between the last inside and the first outside
    centre: halfway is its unbiased place, where the inside centres (:func:`outside_distance`'s zero) lie half a
    pixel inside it on average. Interpolated bilinearly the field crosses zero halfway between 4-neighbours
    (within 0.03 pixels of the midline on a 45-degree edge)."""
    if not mask.any():
        return np.full(mask.shape, 1e3, np.float32)
    if mask.all():
        return np.full(mask.shape, -1e3, np.float32)
    out = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    inn = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.where(mask, 0.5 - inn, out - 0.5).astype(np.float32)


def contour_points(mask: np.ndarray, border: int = 1) -> np.ndarray:
    """(N, 2) x, y of points on the mask's contour placed halfway between pixel centres: the midpoint of every
    inside pixel and outside 4-neighbour pair (see :func:`contour_distance`); pairs with a pixel within
    ``border`` pixels of the image's edge are left out (a body cut by the frame has no outline there)."""
    m = np.asarray(mask, bool)
    H, W = m.shape
    ys, xs = np.nonzero(m[:-1] != m[1:])  # pixel (y, x) and (y + 1, x)
    keep = (ys >= border) & (ys + 1 <= H - 1 - border) & (xs >= border) & (xs <= W - 1 - border)
    vertical = np.stack([xs[keep], ys[keep] + 0.5], 1)
    ys, xs = np.nonzero(m[:, :-1] != m[:, 1:])  # pixel (y, x) and (y, x + 1)
    keep = (xs >= border) & (xs + 1 <= W - 1 - border) & (ys >= border) & (ys <= H - 1 - border)
    return np.concatenate([vertical, np.stack([xs[keep] + 0.5, ys[keep]], 1)]).astype(float)
