"""The virtual studio's set: what stands still around the performer.

Two backgrounds:

- ``plain``: the original studio (a tiled floor and plain grey walls far away; drawn by
  :class:`~mocap_studio.studio.render.BodyRenderer` itself, unchanged);
- ``textured``: a closed room (``ROOM_HALF_M`` square, ``ROOM_HEIGHT_M`` high) with a plank floor, walls painted
  in seeded colours and hung with posters, doors, windows and shelves of books, and clutter standing along
  the walls (cabinets, crates, tables, bins), always farther from the centre than every camera so that it never
  stands between a camera and the performer.

Either may hold a raised platform: a box ``platform_height_m`` high with a plank top, on the floor at Z = 0,
on which the performer stands. Everything here is static, so it is ray-traced once per camera (analytically for
the room, with open3d's ``RaycastingScene`` for the boxes) and only the bodies are cast per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BACKGROUNDS = ("plain", "textured")
ROOM_HALF_M = 6.0
"""Half the width of the textured room (walls at x, y = +-ROOM_HALF_M), unless a camera stands farther out."""
ROOM_HEIGHT_M = 3.0
"""Height of the textured room's ceiling."""
TEXELS_PER_M = 80
"""Texture resolution of the textured room's floor and walls."""
_LIGHT = np.array([0.35, -0.6, 0.72]) / np.linalg.norm([0.35, -0.6, 0.72])


@dataclass(frozen=True)
class Platform:
    """A box the performer stands on: top at ``height_m``, footprint ``[x0, x1] x [y0, y1]`` metres."""

    height_m: float
    x0: float
    x1: float
    y0: float
    y1: float

    def to_json(self) -> dict:
        """The platform as plain numbers (for the truth)."""
        return {"height_m": self.height_m, "min_xy_m": [self.x0, self.y0], "max_xy_m": [self.x1, self.y1]}


@dataclass(frozen=True)
class Scenery:
    """The static set: background kind, an optional platform, the seed of every texture and of the clutter.

    ``clear_radius_m``: no clutter stands closer than this to the vertical axis through the origin (set it
    beyond the farthest camera)."""

    background: str = "plain"
    platform: Platform | None = None
    seed: int = 0
    clear_radius_m: float = 4.8

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")

    @property
    def room_half_m(self) -> float:
        """Half the width of the textured room: ``ROOM_HALF_M``, or more when the cameras stand farther out."""
        return max(ROOM_HALF_M, self.clear_radius_m + 1.2)

    def room(self, center: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The textured room seen along rays from ``center`` (3,) in directions ``dirs`` (H, W, 3): RGB
        (H, W, 3) float32 in [0, 1] and ray distance (H, W) float32 (finite everywhere: the room is closed)."""
        return _trace_room(np.asarray(center, float), dirs, self.room_half_m, self.seed)

    def add_objects(self, image: np.ndarray, depth: np.ndarray, center: np.ndarray,
                    dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``image`` (H, W, 3) and ``depth`` (H, W) with the platform and the clutter drawn in where they are
        nearer than what is there; unchanged (the same arrays) when the set has neither."""
        boxes = self.boxes()
        if not boxes:
            return image, depth
        return _trace_boxes(image, depth, np.asarray(center, float), dirs, boxes)

    def boxes(self) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float, float], str]]:
        """Every static box: (min corner (3,), max corner (3,), RGB, kind) with kind 'platform' or 'clutter'."""
        out = []
        p = self.platform
        if p is not None and p.height_m > 0:
            out.append((np.array([p.x0, p.y0, 0.0]), np.array([p.x1, p.y1, p.height_m]), (0.52, 0.40, 0.27), "platform"))
        if self.background == "textured":
            out.extend(_clutter(self.seed, self.room_half_m, self.clear_radius_m))
        return out


# ------------------------------------------------------------------------------------------------
# textures
# ------------------------------------------------------------------------------------------------
def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth noise of unit standard deviation, (H, W) float32."""
    n = cv2.GaussianBlur(rng.normal(0, 1, shape).astype(np.float32), (0, 0), sigma)
    return n / (n.std() + 1e-6)


def plank_texture(rng: np.random.Generator, size_px: tuple[int, int], plank_px: int = 14) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1]: wooden planks along the first axis, each its own shade, with grain and joints."""
    h, w = size_px
    rows = np.arange(h) // plank_px
    shade = rng.uniform(0.8, 1.15, rows.max() + 1)[rows]
    base = np.array([0.55, 0.40, 0.26], np.float32)[None, None] * shade[:, None, None]
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), sigmaX=6.0, sigmaY=0.6)
    tex = base * (1 + 0.1 * grain[..., None] / (grain.std() + 1e-6))
    tex[(np.arange(h) % plank_px) == 0] *= 0.55  # the joints between planks
    return np.clip(tex, 0, 1).astype(np.float32)


def _rect(tex: np.ndarray, x0: int, y0: int, w: int, h: int, colour) -> None:  # noqa: ANN001
    tex[max(y0, 0):max(y0 + h, 0), max(x0, 0):max(x0 + w, 0)] = colour


def _poster(tex: np.ndarray, rng: np.random.Generator, x0: int, y0: int, w: int, h: int) -> None:
    """A framed poster: a pale ground with a few coloured blocks and stripes of 'text'."""
    _rect(tex, x0 - 2, y0 - 2, w + 4, h + 4, (0.1, 0.1, 0.1))
    _rect(tex, x0, y0, w, h, rng.uniform(0.7, 0.95, 3))
    for _ in range(rng.integers(2, 5)):
        bw, bh = int(rng.uniform(0.2, 0.7) * w), int(rng.uniform(0.1, 0.4) * h)
        _rect(tex, x0 + int(rng.uniform(0, w - bw)), y0 + int(rng.uniform(0, h - bh)), bw, bh, rng.uniform(0.05, 0.9, 3))
    for k in range(rng.integers(2, 6)):
        _rect(tex, x0 + w // 10, y0 + h - (k + 1) * max(h // 10, 3), int(w * rng.uniform(0.3, 0.8)), 2, (0.15, 0.15, 0.15))


def _shelf(tex: np.ndarray, rng: np.random.Generator, x0: int, y0: int, w: int, h: int) -> None:
    """A bookshelf: boards with rows of books of random colours and heights."""
    _rect(tex, x0, y0, w, h, (0.30, 0.22, 0.15))
    rows = max(1, h // 30)
    for r in range(rows):
        base = y0 + (r + 1) * h // rows - 3
        x = x0 + 3
        while x < x0 + w - 6:
            bw, bh = int(rng.integers(3, 8)), int(rng.integers(12, max(h // rows - 4, 13)))
            _rect(tex, x, base - bh, bw, bh, rng.uniform(0.05, 0.85, 3))
            x += bw + int(rng.integers(0, 2))
        _rect(tex, x0, base, w, 3, (0.45, 0.33, 0.22))


def wall_texture(rng: np.random.Generator, length_m: float, height_m: float) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1], row 0 at the ceiling: a painted wall with a skirting board, a door or a
    window, posters and a shelf, at ``TEXELS_PER_M``."""
    w, h = int(length_m * TEXELS_PER_M), int(height_m * TEXELS_PER_M)
    paint = rng.uniform(0.45, 0.85, 3).astype(np.float32)
    tex = paint[None, None] * (1 + 0.06 * _noise(rng, (h, w), 25.0)[..., None] + 0.03 * _noise(rng, (h, w), 1.0)[..., None])
    m = TEXELS_PER_M
    kinds = rng.permutation(["door", "window", "poster", "poster", "shelf", "poster"])[: rng.integers(4, 7)]
    slots = np.sort(rng.choice(np.arange(1, int(length_m) - 1), size=len(kinds), replace=False))
    for kind, x_m in zip(kinds, slots, strict=True):
        x0 = int((x_m + rng.uniform(-0.2, 0.2)) * m)
        if kind == "door":
            _rect(tex, x0, h - int(2.1 * m), int(0.9 * m), int(2.1 * m), rng.uniform(0.15, 0.45, 3))
            _rect(tex, x0 + int(0.75 * m), h - int(1.05 * m), 6, 3, (0.8, 0.8, 0.75))
        elif kind == "window":
            _rect(tex, x0, h - int(2.3 * m), int(1.1 * m), int(1.2 * m), (0.95, 0.95, 0.92))
            _rect(tex, x0 + 4, h - int(2.3 * m) + 4, int(1.1 * m) - 8, int(1.2 * m) - 8, (0.70, 0.82, 0.95))
            _rect(tex, x0 + int(0.55 * m) - 2, h - int(2.3 * m), 4, int(1.2 * m), (0.95, 0.95, 0.92))
        elif kind == "poster":
            pw, ph = int(rng.uniform(0.4, 0.9) * m), int(rng.uniform(0.5, 1.0) * m)
            _poster(tex, rng, x0, h - int(rng.uniform(1.3, 1.9) * m) - ph // 2, pw, ph)
        else:
            _shelf(tex, rng, x0, h - int(1.8 * m), int(0.9 * m), int(1.6 * m))
    tex[h - int(0.1 * m):] = paint * 0.5  # skirting board
    return np.clip(tex, 0, 1).astype(np.float32)


def ceiling_texture(rng: np.random.Generator, size_m: float) -> np.ndarray:
    """(N, N, 3) RGB in [0, 1]: off-white ceiling tiles with a darker grid and the odd light panel."""
    n = int(size_m * TEXELS_PER_M / 2)  # half resolution: the ceiling is barely seen
    tex = np.full((n, n, 3), 0.82, np.float32) * (1 + 0.03 * _noise(rng, (n, n), 2.0)[..., None])
    step = int(0.6 * TEXELS_PER_M / 2)
    tex[::step] *= 0.7
    tex[:, ::step] *= 0.7
    for _ in range(6):
        i, j = rng.integers(0, n // step, 2) * step
        tex[i + 2:i + step - 1, j + 2:j + step - 1] = 0.97
    return np.clip(tex, 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# the room, traced analytically
# ------------------------------------------------------------------------------------------------
def _sample(tex: np.ndarray, u_px: np.ndarray, v_px: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``tex`` at column ``u_px`` and row ``v_px`` (H, W), edges repeated."""
    return cv2.remap(tex, u_px.astype(np.float32), v_px.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _trace_room(c: np.ndarray, dirs: np.ndarray, half: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 41])
    d = dirs.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = np.where(np.abs(d[..., 0]) > 1e-9, (np.sign(d[..., 0]) * half - c[0]) / d[..., 0], np.inf)
        ty = np.where(np.abs(d[..., 1]) > 1e-9, (np.sign(d[..., 1]) * half - c[1]) / d[..., 1], np.inf)
        tz = np.where(d[..., 2] < -1e-9, -c[2] / d[..., 2],
                      np.where(d[..., 2] > 1e-9, (ROOM_HEIGHT_M - c[2]) / d[..., 2], np.inf))
    t = np.minimum(np.minimum(tx, ty), tz)
    hit = c + d * t[..., None]
    image = np.zeros(dirs.shape, np.float32)
    m = TEXELS_PER_M
    size = 2 * half
    on_flat = tz <= np.minimum(tx, ty)
    floor = on_flat & (d[..., 2] < 0)
    ceiling = on_flat & (d[..., 2] >= 0)
    planks = plank_texture(rng, (int(size * m), int(size * m)))
    image[floor] = _sample(planks, (hit[..., 0] + half) * m - 0.5, (hit[..., 1] + half) * m - 0.5)[floor]
    image[floor] *= 0.55 + 0.45 * _LIGHT[2]
    tiles = ceiling_texture(rng, size)
    image[ceiling] = _sample(tiles, (hit[..., 0] + half) * m / 2 - 0.5, (hit[..., 1] + half) * m / 2 - 0.5)[ceiling] * 0.8
    # walls: +x, -x, +y, -y; u runs along the wall, v down from the ceiling
    walls = [(~on_flat & (tx <= ty) & (d[..., 0] > 0), hit[..., 1], 0.85),
             (~on_flat & (tx <= ty) & (d[..., 0] <= 0), -hit[..., 1], 0.95),
             (~on_flat & (tx > ty) & (d[..., 1] > 0), -hit[..., 0], 0.9),
             (~on_flat & (tx > ty) & (d[..., 1] <= 0), hit[..., 0], 1.0)]
    for mask, along, light in walls:
        tex = wall_texture(rng, size, ROOM_HEIGHT_M)
        image[mask] = _sample(tex, (along + half) * m - 0.5, (ROOM_HEIGHT_M - hit[..., 2]) * m - 0.5)[mask] * light
    return np.clip(image, 0, 1), t.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# boxes: the platform and the clutter
# ------------------------------------------------------------------------------------------------
def _clutter(seed: int, half: float, clear_radius: float) -> list:
    """Cabinets, crates, tables and bins along the walls, none nearer the centre than ``clear_radius``."""
    rng = np.random.default_rng([seed, 43])
    out = []
    for _ in range(14):
        side = rng.integers(0, 4)
        along = rng.uniform(-half + 0.6, half - 0.6)
        w, depth, h = rng.uniform(0.3, 1.4), rng.uniform(0.3, 0.7), rng.uniform(0.3, 1.9)
        gap = rng.uniform(0.02, 0.4)
        inner = half - gap - depth  # the box's face towards the centre
        lo, hi = np.array([along - w / 2, inner, 0.0]), np.array([along + w / 2, half - gap, h])
        if side in (1, 3):  # the -y and -x walls mirror the +y and +x ones
            lo, hi = np.array([-hi[0], -hi[1], 0.0]), np.array([-lo[0], -lo[1], h])
        if side in (2, 3):  # the x walls: swap x and y
            lo, hi = lo[[1, 0, 2]], hi[[1, 0, 2]]
        nearest = np.hypot(*np.clip(np.zeros(2), lo[:2], hi[:2]))
        if nearest < clear_radius:
            continue
        out.append((lo, hi, tuple(rng.uniform(0.1, 0.85, 3)), "clutter"))
    return out


def _box_mesh(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(8, 3) corners and (12, 3) outward-wound triangles of the axis-aligned box [lo, hi]."""
    corners = np.array([[hi[0] if i & 1 else lo[0], hi[1] if i & 2 else lo[1], hi[2] if i & 4 else lo[2]]
                        for i in range(8)], np.float32)
    faces = np.array([[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
                      [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]], np.uint32)
    return corners, faces


def _trace_boxes(image: np.ndarray, depth: np.ndarray, c: np.ndarray, dirs: np.ndarray,
                 boxes: list) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    for lo, hi, _, _ in boxes:
        v, f = _box_mesh(lo, hi)
        scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(f))
    origin = np.broadcast_to(c.astype(np.float32), dirs.shape)
    rays = np.ascontiguousarray(np.concatenate([origin, dirs.astype(np.float32)], -1))
    hits = scene.cast_rays(o3d.core.Tensor(rays))
    t = hits["t_hit"].numpy()
    near = np.isfinite(t) & (t < depth)
    if not near.any():
        return image, depth
    gid = hits["geometry_ids"].numpy()[near].astype(np.int64)
    normals = hits["primitive_normals"].numpy()[near]
    point = c + dirs[near] * t[near][:, None]
    colours = np.array([b[2] for b in boxes], np.float32)[gid]
    # a little texture: platform planks across x, drawer lines and grain on the clutter
    stripe = np.where(np.array([b[3] == "platform" for b in boxes])[gid],
                      0.85 + 0.15 * (np.floor(point[:, 0] / 0.15) % 2) - 0.25 * (np.abs(point[:, 0] / 0.15 % 1) < 0.06),
                      1.0 - 0.3 * (np.abs(point[:, 2] / 0.35 % 1) < 0.03))
    shade = 0.3 + 0.5 * np.abs(normals @ _LIGHT) + 0.2 * np.abs((normals * dirs[near]).sum(-1))
    image = image.copy()
    depth = depth.copy()
    image[near] = np.clip(colours * (stripe * shade)[:, None], 0, 1)
    depth[near] = t[near]
    return image, depth


__all__ = ["BACKGROUNDS", "Platform", "Scenery", "plank_texture", "wall_texture", "ceiling_texture"]
