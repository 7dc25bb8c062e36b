"""Person masks (silhouettes) per camera and frame: a compact file format, resampling, agreement figures, and
the distance fields the body fit compares a model's outline with.

A person covers a tenth to a fifth of a frame, so each mask is kept (in memory and on file) as its bounding box
and the box's pixels, bit-packed (:class:`PackedMasks`): a full-size 1280x720 mask of a studio performer takes
about 10 kB in memory (1.5 kB compressed on file), not 115 kB packed whole or 920 kB as a bool array, and a take's
masks at the image's full size fit in memory.

``masks.npz`` (the detect stage's, and a synthetic take's ``truth/masks.npz``)::

    cameras        (C,) str     camera names, in the order of the other arrays
    frame_times    (C, T) float seconds on each camera's own clock (NaN: no frame)
    present        (C, T) bool  a mask was stored (the performer was seen)
    size           (2,) int     the masks' height and width in pixels
    scale          float        mask pixels per image pixel (0.25: a quarter of the image's width)
    image_size     (C, 2) int   each camera's image width and height
    boxes          (C, T, 4) int32  each mask's bounding box x0, y0, x1, y1 in mask pixels, x1 and y1 excluded
                                (all 0: an empty mask)
    offsets        (C, T) int64 where each box's bits start in ``bits``
    bits           (B,) uint8   every box's pixels, row-major, bit-packed (np.packbits), each padded to whole bytes
    blur           float        the segmenter's blur: a Gaussian's sigma as a fraction of each mask box's longer
                                side (0: exact masks, as the virtual studio's truth; absent in older files: 0)
    outline_allowance (P,) float how far outside the segmenter's outline the body's may lie, by body part
                                (:data:`OUTLINE_PARTS`; mask pixels; negative: inside; empty: exact masks); absent in
                                older files: MediaPipe's (:data:`MEDIAPIPE_OUTLINE_ALLOWANCE_PX`) where ``blur`` > 0 (only
                                its masks had a blur then), none where 0

Files written before the boxes (``bits`` (C, T, ceil(H * W / 8)), whole masks) are read too.

A segmenter's masks are not the body's outline thresholded: they are close to the outline blurred (a Gaussian of
sigma ``blur`` times the person's size) and then thresholded, so convex tips (the head's top, hands, feet) come out
short and concave corners (armpits, crotch) filled. :func:`unblurred_contour` undoes that to first order for the fit.
What is left after that differs by body part: MediaPipe's arms and feet come out thin, its head wide, and its hands
are no outline at all (fingers lost or merged). ``outline_allowance`` says how far outside the masks each part of the
body may lie, and the fit allows for it.

A mask pixel (i, j) covers image pixels around ((j + 0.5) / scale - 0.5, (i + 0.5) / scale - 0.5): a point at
image pixel u lies at mask pixel (u + 0.5) * scale - 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from mocap_studio.common.fileio import load_npz, save_npz_atomic
from scipy.ndimage import map_coordinates

__all__ = ["MEDIAPIPE_OUTLINE_ALLOWANCE_PX", "OUTLINE_PARTS", "MaskError", "MaskPacker", "MaskSet", "PackedMasks",
           "contour_distance", "contour_points", "downsample_mask", "edge_points", "image_to_mask", "mask_iou",
           "outline_offset", "outside_distance", "pack_mask", "unblurred_contour"]


OUTLINE_PARTS = ("head", "neck", "trunk", "arms", "hands", "thighs", "shins", "feet")
"""The body parts a segmenter's outline allowance is given for (``MaskSet.outline_allowance``), each the surface a body
model's joints move most (``fit_silhouette.body_parts``): the head (and eyes); the neck; the trunk (pelvis, spine, collar
bones); the arms (upper and lower); the hands (from the wrists); the thighs; the shins; the feet (from the ankles)."""

MEDIAPIPE_OUTLINE_ALLOWANCE_PX = (-0.15, 0.11, 0.04, 0.15, 4.0, 0.04, -0.06, 0.21)
"""How far outside MediaPipe's masks (at ``DetectionConfig.mask_threshold`` 0.55, full size, their blur undone by
:func:`unblurred_contour`) the body's outline lies on each part of :data:`OUTLINE_PARTS`, in mask pixels (negative:
inside). Measured on five studio takes (seeds 132, 133, 134, 137, 138; 1280x720, four cameras, every fourth frame):
the true outline's points, each given the part of the true body's nearest projected vertex, in the unblurred
contour's signed field, their mean within 3 px: head -0.15, neck +0.11, trunk +0.04, arms +0.15, hands +0.20, thighs
+0.04, shins -0.06, feet +0.21; take by take within 0.02-0.09 of these (the neck, a few thousand points a take,
0.13). Nine more takes (the demo, 131, 135, 136, 139, 151, 153, 154, 156) gave head -0.15, neck +0.15, trunk +0.04,
arms +0.12, hands +0.19, thighs +0.04, shins -0.07, feet +0.25.

The hands are the exception: MediaPipe's are no outline to fit to. A quarter of the true hand's outline lies more than
3 px from theirs (take 156: 12 % outside by 6 px on average, fingers lost; 13 % inside, fingers merged or a hand
merged with the body; the 10th-90th percentiles -4.0 and +3.7 px, against -1 and +1 for every other part). Held to
them, the lost fingers pull the arms short, and the model, whose phenotypes grow its limbs, girths and height
together, makes the whole body short. So the hands' points may lie 4 px outside the masks at no cost (the masks
still ask to be covered): take 156's height -4.3 mm with their mean bias, -2.5 with 2 px, -2.2 with 4 (with the true
masks +1.3; with the true body's blurred as MediaPipe blurs, +0.2; stop 41 -5.3)."""


class MaskError(ValueError):
    """Unusable masks: the message names the file, camera or frame and what to do."""


def pack_mask(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (H, W) bool mask's bounding box (4,) int32 x0, y0, x1, y1 (x1, y1 excluded; all 0 when empty) and the
    box's pixels, row-major, bit-packed (uint8)."""
    mask = np.asarray(mask, bool)
    rows = np.flatnonzero(mask.any(1))
    if not len(rows):
        return np.zeros(4, np.int32), np.zeros(0, np.uint8)
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(0))
    x0, y0, x1, y1 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
    return np.array([x0, y0, x1, y1], np.int32), np.packbits(mask[y0:y1, x0:x1])


@dataclass(frozen=True)
class PackedMasks:
    """Masks of one size (H, W) on a grid of any shape (e.g. camera, frame), each kept as its bounding box and the
    box's pixels bit-packed: ``boxes`` (..., 4) int32 x0, y0, x1, y1 (mask pixels, x1 and y1 excluded; all 0: an
    empty mask), ``offsets`` (...) int64 where each box's bits start in ``bits`` (B,) uint8 (row-major, np.packbits,
    each box padded to whole bytes). Build one with :class:`MaskPacker` or :meth:`from_masks`."""

    size: tuple[int, int]
    boxes: np.ndarray
    offsets: np.ndarray
    bits: np.ndarray

    def __post_init__(self) -> None:
        if self.boxes.shape[-1:] != (4,) or self.offsets.shape != self.boxes.shape[:-1]:
            raise MaskError(f"boxes must have shape (..., 4) and offsets (...), got {self.boxes.shape} and "
                            f"{self.offsets.shape}")
        H, W = self.size
        b = self.boxes.reshape(-1, 4).astype(np.int64)
        empty = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
        bad = ~empty & ((b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > W) | (b[:, 3] > H))
        nbytes = np.where(empty, 0, ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) + 7) // 8)
        bad |= self.offsets.reshape(-1) + nbytes > len(self.bits)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise MaskError(f"mask {np.unravel_index(i, self.shape)}: box {b[i].tolist()} lies outside the {H}x{W} "
                            f"masks or its bits outside the {len(self.bits)} bytes; the file is damaged, write it again")

    @property
    def shape(self) -> tuple[int, ...]:
        """The grid's shape (without the masks' (H, W))."""
        return tuple(self.offsets.shape)

    @property
    def nonempty(self) -> np.ndarray:
        """(...) bool: the mask has a pixel."""
        return (self.boxes[..., 2] > self.boxes[..., 0]) & (self.boxes[..., 3] > self.boxes[..., 1])

    @property
    def nbytes(self) -> int:
        """Bytes held (boxes, offsets and bits)."""
        return int(self.boxes.nbytes + self.offsets.nbytes + self.bits.nbytes)

    def packed(self, index: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The box (4,) and bits of the mask at ``index``, as :func:`pack_mask` gives them."""
        x0, y0, x1, y1 = (int(v) for v in self.boxes[index])
        if x1 <= x0 or y1 <= y0:
            return np.zeros(4, np.int32), np.zeros(0, np.uint8)
        o = int(self.offsets[index])
        return self.boxes[index].copy(), self.bits[o:o + ((x1 - x0) * (y1 - y0) + 7) // 8]

    def crop(self, index: tuple[int, ...]) -> tuple[int, int, np.ndarray]:
        """x0, y0 and the (y1 - y0, x1 - x0) bool pixels of the mask's box at ``index`` ((0, 0) for an empty one)."""
        box, bits = self.packed(index)
        x0, y0, x1, y1 = (int(v) for v in box)
        n = (x1 - x0) * (y1 - y0)
        return x0, y0, np.unpackbits(bits, count=n).reshape(y1 - y0, x1 - x0).astype(bool)

    def mask(self, index: tuple[int, ...]) -> np.ndarray:
        """The whole (H, W) bool mask at ``index``."""
        out = np.zeros(self.size, bool)
        x0, y0, pixels = self.crop(index)
        out[y0:y0 + pixels.shape[0], x0:x0 + pixels.shape[1]] = pixels
        return out

    @classmethod
    def from_masks(cls, masks: np.ndarray) -> PackedMasks:
        """Pack whole masks (..., H, W) bool."""
        masks = np.asarray(masks, bool)
        packer = MaskPacker(masks.shape[:-2], masks.shape[-2:])
        for index in np.ndindex(*masks.shape[:-2]):
            packer.add(index, masks[index])
        return packer.build()


class MaskPacker:
    """Builds a :class:`PackedMasks` of grid ``shape`` and mask ``size`` (H, W) one mask at a time (the ones not
    added are empty)."""

    def __init__(self, shape: tuple[int, ...], size: tuple[int, int]):
        self.size = (int(size[0]), int(size[1]))
        self.boxes = np.zeros((*shape, 4), np.int32)
        self.offsets = np.zeros(shape, np.int64)
        self._chunks: list[np.ndarray] = []
        self._bytes = 0

    def add(self, index: tuple[int, ...], mask: np.ndarray) -> None:
        """Put the (H, W) mask at ``index``."""
        if np.shape(mask) != self.size:
            raise MaskError(f"mask {index} has size {np.shape(mask)}, the others {self.size}")
        self.add_packed(index, *pack_mask(mask))

    def add_packed(self, index: tuple[int, ...], box: np.ndarray, bits: np.ndarray) -> None:
        """Put a mask already packed (:func:`pack_mask`, :meth:`PackedMasks.packed`) at ``index``."""
        self.boxes[index] = box
        self.offsets[index] = self._bytes
        if len(bits):
            self._chunks.append(np.asarray(bits, np.uint8))
            self._bytes += len(bits)

    def build(self) -> PackedMasks:
        """The masks added."""
        bits = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.uint8)
        return PackedMasks(self.size, self.boxes, self.offsets, bits)


@dataclass(frozen=True)
class MaskSet:
    """Masks of one take: ``packed`` (C, T) masks of one size (H, W) (empty where not ``present`` (C, T)), camera
    names (C,), frame times (C, T) seconds, ``scale`` mask pixels per image pixel, ``image_size`` (C, 2) width,
    height."""

    cameras: tuple[str, ...]
    packed: PackedMasks
    present: np.ndarray
    frame_times: np.ndarray
    scale: float
    image_size: np.ndarray
    blur: float = 0.0
    """The segmenter's blur (a Gaussian's sigma as a fraction of each mask box's longer side; 0: exact masks)."""
    outline_allowance: tuple[float, ...] = ()
    """How far outside the segmenter's outline (its blur undone) the body's may lie, by body part in
    :data:`OUTLINE_PARTS`' order (mask pixels; negative: how far inside it); empty: none (exact masks)."""

    def __post_init__(self) -> None:
        C = len(self.cameras)
        if len(self.packed.shape) != 2 or self.packed.shape[0] != C:
            raise MaskError(f"masks must have shape (C={C}, T), got {self.packed.shape}")
        T = self.packed.shape[1]
        for name, arr, shape in (("present", self.present, (C, T)), ("frame_times", self.frame_times, (C, T)),
                                 ("image_size", self.image_size, (C, 2))):
            if np.shape(arr) != shape:
                raise MaskError(f"{name} must have shape {shape}, got {np.shape(arr)}")
        if not 0 < self.scale <= 1:
            raise MaskError(f"scale must be in (0, 1], got {self.scale}")
        if not 0 <= self.blur < 0.1:
            raise MaskError(f"blur must be in [0, 0.1) (a fraction of the person's size), got {self.blur}")
        allowance = np.asarray(self.outline_allowance, float)
        if len(allowance) not in (0, len(OUTLINE_PARTS)) or not np.all(np.abs(allowance) < 5):
            raise MaskError(f"outline_allowance must give {len(OUTLINE_PARTS)} values (mask pixels, under 5) for "
                            f"{', '.join(OUTLINE_PARTS)}, or none; got {self.outline_allowance}")

    @classmethod
    def from_masks(cls, cameras: tuple[str, ...], masks: np.ndarray, present: np.ndarray, frame_times: np.ndarray,
                   scale: float, image_size: np.ndarray, blur: float = 0.0,
                   outline_allowance: tuple[float, ...] = ()) -> MaskSet:
        """A mask set from whole masks (C, T, H, W) bool."""
        if np.ndim(masks) != 4:
            raise MaskError(f"masks must have shape (C, T, H, W), got {np.shape(masks)}")
        return cls(tuple(cameras), PackedMasks.from_masks(masks), np.asarray(present, bool),
                   np.asarray(frame_times, float), float(scale), np.asarray(image_size), float(blur),
                   tuple(float(b) for b in outline_allowance))

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of every mask."""
        return self.packed.size

    @property
    def nonempty(self) -> np.ndarray:
        """(C, T) bool: a mask with a pixel was stored."""
        return self.present & self.packed.nonempty

    def mask(self, c: int, i: int) -> np.ndarray:
        """The whole (H, W) bool mask of camera index ``c``, stored frame ``i``."""
        return self.packed.mask((c, i))

    def camera_index(self, name: str) -> int:
        """Position of camera ``name``; MaskError naming the cameras there are."""
        if name not in self.cameras:
            raise MaskError(f"no masks for camera {name!r}; the masks have {list(self.cameras)}")
        return self.cameras.index(name)

    def save(self, path: str | Path) -> Path:
        """Write ``masks.npz`` (each mask's box, bit-packed) atomically."""
        H, W = self.size
        return save_npz_atomic(path, cameras=np.asarray(self.cameras, dtype=str), frame_times=self.frame_times,
                               present=self.present, size=np.array([H, W]), scale=np.float64(self.scale),
                               image_size=np.asarray(self.image_size, dtype=np.int64), boxes=self.packed.boxes,
                               offsets=self.packed.offsets, bits=self.packed.bits, blur=np.float64(self.blur),
                               outline_allowance=np.asarray(self.outline_allowance, np.float64))

    @classmethod
    def load(cls, path: str | Path) -> MaskSet:
        """Read a ``masks.npz`` (boxes, or whole masks as written before them); MaskError naming the file when it
        is not one."""
        data = load_npz(path, ("cameras", "frame_times", "present", "size", "scale", "image_size", "bits"), MaskError,
                        "; write it again with `mocap detect --overwrite` (or `mocap synth` for a truth folder)")
        H, W = (int(x) for x in data["size"])
        bits = data["bits"]
        if "boxes" in data:
            if "offsets" not in data:
                raise MaskError(f"{path}: boxes without offsets; the file is damaged, write it again")
            try:
                packed = PackedMasks((H, W), data["boxes"].astype(np.int32), data["offsets"].astype(np.int64),
                                     bits.astype(np.uint8))
            except MaskError as e:
                raise MaskError(f"{path}: {e}") from e
        else:  # whole masks, bit-packed
            if bits.ndim != 3 or bits.shape[2] != (H * W + 7) // 8:
                raise MaskError(f"{path}: bits hold {bits.shape[-1] * 8} pixels per mask, size says {H}x{W}; the "
                                "file is damaged, write it again")
            packer = MaskPacker(bits.shape[:2], (H, W))
            for index in np.ndindex(*bits.shape[:2]):
                packer.add(index, np.unpackbits(bits[index], count=H * W).reshape(H, W).astype(bool))
            packed = packer.build()
        blur = float(data["blur"]) if "blur" in data else 0.0
        if "outline_allowance" in data:
            allowance = tuple(float(b) for b in data["outline_allowance"])
        else:  # written before the allowance was: a blur then meant MediaPipe's masks
            allowance = MEDIAPIPE_OUTLINE_ALLOWANCE_PX if blur > 0 else ()
        try:
            return cls(tuple(str(c) for c in data["cameras"]), packed, data["present"].astype(bool),
                       data["frame_times"].astype(float), float(data["scale"]), data["image_size"].astype(np.int64),
                       blur, allowance)
        except MaskError as e:
            raise MaskError(f"{path}: {e}; write it again with `mocap detect --overwrite`") from e

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
    if mask.dtype == bool and mask.shape == (h, w) and 0 < threshold <= 1:
        return mask.copy()  # a true mask at its own size (the studio's truth): each pixel its own mean
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


def unblurred_contour(mask: np.ndarray, blur: float) -> tuple[np.ndarray, np.ndarray]:
    """The mask's contour (:func:`contour_distance`'s signed field (H, W) and :func:`contour_points` (N, 2)) with a
    segmenter's blur undone to first order. A segmenter's mask is close to the true outline blurred by a Gaussian of
    sigma ``blur`` times the mask box's longer side, then thresholded (MediaPipe's: ``blur`` 0.0063, measured on
    studio takes at two image sizes). That moves each piece of outline by about sigma^2 times its curvature: convex
    tips inwards (the head's top and the soles 0.7-0.8 px short at 1280x720, the body 4-5 mm too short in the fit),
    concave corners outwards. Blurring and thresholding the mask again moves it about as much once more, so the
    true outline lies about as far on the other side: the field is 2 d - d', d' the twice-blurred mask's, and each
    contour point moves by d' along the blurred mask's outward normal. The correction is capped at sigma (a thin
    part the second blur removes, a finger, is not moved further). ``blur`` 0: the plain contour."""
    d = contour_distance(mask)
    pts = contour_points(mask)
    rows = np.flatnonzero(mask.any(1))
    if blur <= 0 or not len(rows) or mask.all():
        return d, pts
    cols = np.flatnonzero(mask.any(0))
    sigma = blur * max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    if sigma < 0.05:
        return d, pts
    g = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    shift = np.clip(contour_distance(g >= 0.5) - d, -sigma, sigma)  # > 0 where blurring again erodes
    field = (d - shift).astype(np.float32)
    if not len(pts):
        return field, pts
    at = [pts[:, 1], pts[:, 0]]
    gy, gx = np.gradient(g)
    grad = np.stack([map_coordinates(gx, at, order=1), map_coordinates(gy, at, order=1)], 1)
    normal = -grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-9)  # outwards
    return field, pts + map_coordinates(shift, at, order=1)[:, None] * normal
