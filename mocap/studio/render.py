"""Rendering the performer: open3d's ``RaycastingScene`` (Embree on the CPU; no GPU or Vulkan needed).

Every pixel's ray goes through the camera's real lens model (:meth:`Camera.rays`, distortion included),
so the rendered body lies exactly where the true camera projects it. The body is coloured by region (skin,
hair, shirt, trousers, shoes, from each vertex's dominant skinning bone) and lambert-shaded under a key
light plus a soft headlight; the floor has a tiled, speckled texture and the walls are a plain grey. The
floor and background are static, so they are ray-traced once per camera and only the body is cast per frame.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from mocap_studio.calibration.camera import Camera

log = logging.getLogger(__name__)

SKIN = (0.80, 0.62, 0.50)
HAIR = (0.20, 0.14, 0.10)
SHIRT = (0.15, 0.35, 0.70)
TROUSERS = (0.20, 0.20, 0.25)
SHOES = (0.85, 0.85, 0.85)
WALL = (0.62, 0.64, 0.66)
KEY_LIGHT = np.array([0.35, -0.6, 0.72]) / np.linalg.norm([0.35, -0.6, 0.72])
FLOOR_HALF_M = 5.0
"""The floor is a textured square of this half-width around the origin; beyond it, the wall colour."""


def region_colours(joint_names: tuple[str, ...], weights: np.ndarray, rest_vertices: np.ndarray) -> np.ndarray:
    """(V, 3) RGB in [0, 1] per vertex from its dominant bone: skin, hair, shirt, trousers, shoes.

    weights: (V, J) skinning weights; rest_vertices: (V, 3) rest mesh, Z up (for the hair line).
    """
    if weights.ndim != 2 or weights.shape[1] != len(joint_names) or rest_vertices.shape != (weights.shape[0], 3):
        raise ValueError(f"weights (V, {len(joint_names)}) and rest_vertices (V, 3) expected, got "
                         f"{weights.shape} and {rest_vertices.shape}")
    dominant = np.asarray(joint_names)[weights.argmax(1)]
    colours = np.tile(np.array(SKIN), (len(dominant), 1))

    def starts(*prefixes: str) -> np.ndarray:
        return np.array([str(n).startswith(prefixes) for n in dominant])

    colours[starts("spine", "clavicle", "upperarm", "breast", "pectoral", "shoulder")] = SHIRT
    colours[starts("root", "pelvis", "upperleg", "lowerleg")] = TROUSERS
    colours[starts("foot", "toe")] = SHOES
    head = starts("head")
    top = rest_vertices[:, 2].max()
    hair = head & ((rest_vertices[:, 2] > top - 0.07) | ((rest_vertices[:, 2] > top - 0.2) & (rest_vertices[:, 1] > 0.02)))
    colours[hair] = HAIR
    return colours


def floor_texture(seed: int = 0, size_px: int = 1024) -> np.ndarray:
    """(size, size, 3) RGB in [0, 1]: 0.5 m tiles in two warm greys with speckle, over 2 * FLOOR_HALF_M."""
    rng = np.random.default_rng(seed)
    coords = (np.arange(size_px) + 0.5) / size_px * 2 * FLOOR_HALF_M
    tiles = ((coords[:, None] // 0.5).astype(int) + (coords[None, :] // 0.5).astype(int)) % 2
    base = np.where(tiles[..., None] == 1, np.array([0.55, 0.50, 0.45]), np.array([0.42, 0.38, 0.34]))
    speckle = cv2.GaussianBlur(rng.normal(0, 1, (size_px, size_px)).astype(np.float32), (0, 0), 1.5)
    return np.clip(base * (1 + 0.12 * speckle[..., None]), 0, 1).astype(np.float32)


class BodyRenderer:
    """Renders one camera's view of a triangle mesh over a textured floor and plain walls.

    camera: the true camera; faces: (F, 3) triangle vertex indices; vertex_colours: (V, 3) RGB in [0, 1];
    supersample: rays per pixel side (anti-aliasing; 1 is fastest).
    """

    def __init__(self, camera: Camera, faces: np.ndarray, vertex_colours: np.ndarray, supersample: int = 1,
                 seed: int = 0):
        import open3d as o3d

        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
        if vertex_colours.ndim != 2 or vertex_colours.shape[1] != 3 or vertex_colours.shape[0] <= faces.max():
            raise ValueError(f"vertex_colours must have shape (V, 3) covering every face index, got {vertex_colours.shape}")
        self._o3d = o3d
        self.camera = camera
        self.faces = faces.astype(np.int64)
        self._faces_o3d = o3d.core.Tensor(faces.astype(np.uint32))
        self.colours = np.asarray(vertex_colours, np.float32)
        self.supersample = int(supersample)
        w, h = camera.size
        s = self.supersample
        u, v = np.meshgrid((np.arange(w * s) + 0.5) / s - 0.5, (np.arange(h * s) + 0.5) / s - 0.5)
        dirs = camera.rays(np.stack([u, v], -1)).astype(np.float32)  # (h*s, w*s, 3)
        self.dirs = dirs
        origin = np.broadcast_to(camera.center.astype(np.float32), dirs.shape)
        self._rays = np.ascontiguousarray(np.concatenate([origin, dirs], -1))
        self.background, self.floor_depth = self._static_scene(seed)

    def _static_scene(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Floor and walls, (h*s, w*s, 3) RGB and the floor's ray distance (inf where there is no floor)."""
        c = self.camera.center
        dz = self.dirs[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = np.where(dz < -1e-6, -c[2] / dz, np.inf)
        hit = c + self.dirs * np.where(np.isfinite(dist), dist, 0)[..., None]
        on_floor = np.isfinite(dist) & (np.abs(hit[..., 0]) < FLOOR_HALF_M) & (np.abs(hit[..., 1]) < FLOOR_HALF_M)
        tex = floor_texture(seed)
        n = tex.shape[0]
        mx = ((hit[..., 0] + FLOOR_HALF_M) / (2 * FLOOR_HALF_M) * n - 0.5).astype(np.float32)
        my = ((hit[..., 1] + FLOOR_HALF_M) / (2 * FLOOR_HALF_M) * n - 0.5).astype(np.float32)
        floor = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        floor *= (0.55 + 0.45 * KEY_LIGHT[2])
        height = np.clip(0.5 + 0.5 * self.dirs[..., 2:3], 0, 1)
        wall = np.array(WALL, np.float32) * (0.85 + 0.25 * height)
        image = np.where(on_floor[..., None], floor, wall).astype(np.float32)
        return image, np.where(on_floor, dist, np.inf).astype(np.float32)

    def _body_box(self, vertices: np.ndarray) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) in supersampled pixels: the mesh's projected bounding box with a margin."""
        rows, cols = self.floor_depth.shape
        cam = self.camera
        depth = (np.asarray(vertices, float) - cam.center) @ cam.R[2]
        if len(vertices) == 0 or depth.min() <= 1e-3:
            return 0, rows, 0, cols
        uv = cam.project(np.asarray(vertices, float))
        if not np.isfinite(uv).all():
            return 0, rows, 0, cols
        s, margin = self.supersample, 3
        x0, y0 = np.floor(uv.min(0) * s).astype(int) - margin * s
        x1, y1 = np.ceil(uv.max(0) * s).astype(int) + margin * s + 1
        y0, y1, x0, x1 = max(y0, 0), min(y1, rows), max(x0, 0), min(x1, cols)
        return (y0, max(y1, y0 + 1), x0, max(x1, x0 + 1)) if y0 < rows and x0 < cols else (0, 1, 0, 1)

    def render(self, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8 BGR and body mask (H, W) bool for the mesh at ``vertices`` (V, 3) metres."""
        vertices = np.asarray(vertices, np.float32)
        if vertices.ndim != 2 or vertices.shape != (len(self.colours), 3):
            raise ValueError(f"vertices must have shape ({len(self.colours)}, 3), got {vertices.shape}")
        o3d = self._o3d
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(vertices), self._faces_o3d)
        # rays only where the mesh can be: the box around its projection (the whole image when any vertex is
        # behind the camera); pixels outside it cannot see the body
        y0, y1, x0, x1 = self._body_box(vertices)
        hits = scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(self._rays[y0:y1, x0:x1])))
        t_hit = np.full(self.floor_depth.shape, np.inf, np.float32)
        t_hit[y0:y1, x0:x1] = hits["t_hit"].numpy()
        body = np.isfinite(t_hit) & (t_hit < self.floor_depth)
        image = self.background.copy()
        if body.any():
            inside = body[y0:y1, x0:x1]
            prim = hits["primitive_ids"].numpy()[inside].astype(np.int64)
            uv = hits["primitive_uvs"].numpy()[inside]
            tri = self.faces[prim]  # (N, 3)
            bary = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], -1)[..., None]
            normals = _vertex_normals(vertices, self.faces)
            n = (normals[tri] * bary).sum(1)
            n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-9
            view = -self.dirs[body]
            flip = (n * view).sum(1) < 0
            n[flip] *= -1  # back faces seen through a gap shade like front faces
            lambert = np.clip(n @ KEY_LIGHT, 0, None)
            headlight = np.clip((n * view).sum(1), 0, None)
            shade = 0.25 + 0.55 * lambert + 0.35 * headlight
            image[body] = (self.colours[tri] * bary).sum(1) * shade[:, None]
        s = self.supersample
        w, h = self.camera.size
        if s > 1:
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            body = cv2.resize(body.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.5
        bgr = np.clip(image[..., ::-1] * 255 + 0.5, 0, 255).astype(np.uint8)
        return bgr, body


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted vertex normals (not normalized) of a mesh (V, 3) with faces (F, 3)."""
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    corner = faces.reshape(-1)
    weights = np.repeat(face_n, 3, axis=0)  # each face's normal to its three corners
    return np.stack([np.bincount(corner, weights[:, k], minlength=len(vertices)) for k in range(3)], -1).astype(
        vertices.dtype)
