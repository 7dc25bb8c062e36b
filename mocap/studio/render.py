"""Rendering the performer: open3d's ``RaycastingScene`` (Embree on the CPU; no GPU or Vulkan needed).

Every pixel's ray goes through the camera's real lens model (:meth:`Camera.rays`, distortion included),
so the rendered body lies exactly where the true camera projects it. The body is coloured by region (skin,
hair, shirt, trousers, shoes, from each vertex's dominant skinning bone) and lambert-shaded under a key
light plus a soft headlight; the floor has a tiled, speckled texture and the walls are a plain grey, unless a
:class:`~mocap_studio.studio.scenery.Scenery` asks for a textured room and a platform. The floor and background
are static, so they are ray-traced once per camera and only the bodies (the performer, and a bystander when
there is one: :meth:`BodyRenderer.render_meshes`) are cast per frame.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from mocap_studio.calibration.camera import Camera
from mocap_studio.studio.scenery import Scenery

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


def region_colours(joint_names: tuple[str, ...], weights: np.ndarray, rest_vertices: np.ndarray,
                   palette: dict[str, tuple[float, float, float]] | None = None) -> np.ndarray:
    """(V, 3) RGB in [0, 1] per vertex from its dominant bone: skin, hair, shirt, trousers, shoes.

    weights: (V, J) skinning weights; rest_vertices: (V, 3) rest mesh, Z up (for the hair line); palette: RGB
    per region name ('skin', 'hair', 'shirt', 'trousers', 'shoes'), missing ones the performer's own.
    """
    colour = {"skin": SKIN, "hair": HAIR, "shirt": SHIRT, "trousers": TROUSERS, "shoes": SHOES, **(palette or {})}
    if weights.ndim != 2 or weights.shape[1] != len(joint_names) or rest_vertices.shape != (weights.shape[0], 3):
        raise ValueError(f"weights (V, {len(joint_names)}) and rest_vertices (V, 3) expected, got "
                         f"{weights.shape} and {rest_vertices.shape}")
    dominant = np.asarray(joint_names)[weights.argmax(1)]
    colours = np.tile(np.array(colour["skin"]), (len(dominant), 1))

    def starts(*prefixes: str) -> np.ndarray:
        return np.array([str(n).startswith(prefixes) for n in dominant])

    colours[starts("spine", "clavicle", "upperarm", "breast", "pectoral", "shoulder")] = colour["shirt"]
    colours[starts("root", "pelvis", "upperleg", "lowerleg")] = colour["trousers"]
    colours[starts("foot", "toe")] = colour["shoes"]
    head = starts("head")
    top = rest_vertices[:, 2].max()
    hair = head & ((rest_vertices[:, 2] > top - 0.07) | ((rest_vertices[:, 2] > top - 0.2) & (rest_vertices[:, 1] > 0.02)))
    colours[hair] = colour["hair"]
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
    """Renders one camera's view of a triangle mesh over a textured floor and plain walls (or ``scenery``).

    camera: the true camera; faces: (F, 3) triangle vertex indices; vertex_colours: (V, 3) RGB in [0, 1];
    supersample: rays per pixel side (anti-aliasing; 1 is fastest); scenery: the static set (None: the plain
    studio, exactly as before the set could change).
    """

    def __init__(self, camera: Camera, faces: np.ndarray, vertex_colours: np.ndarray, supersample: int = 1,
                 seed: int = 0, scenery: Scenery | None = None):
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
        if scenery is not None and scenery.background != "plain":
            self.background, self.floor_depth = scenery.room(camera.center, dirs)
        else:
            self.background, self.floor_depth = self._static_scene(seed)
        if scenery is not None:  # the platform and the clutter (nothing for a plain set without a platform)
            self.background, self.floor_depth = scenery.add_objects(self.background, self.floor_depth, camera.center, dirs)

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
        image, labels = self.render_meshes([(vertices, self.colours)])
        return image, labels == 0

    def render_meshes(self, meshes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8 BGR and labels (H, W) int8 for bodies sharing this renderer's faces.

        meshes: [(vertices (V, 3) metres, vertex colours (V, 3) RGB in [0, 1])]; labels: the index of the mesh
        seen at each pixel (whichever is nearest, the static set in front hiding both), -1 where none is.
        """
        if not meshes:
            raise ValueError("render_meshes needs at least one mesh")
        verts = [np.asarray(v, np.float32) for v, _ in meshes]
        for v, (_, col) in zip(verts, meshes, strict=True):
            if v.ndim != 2 or v.shape != (len(self.colours), 3) or np.shape(col) != v.shape:
                raise ValueError(f"vertices and colours must have shape ({len(self.colours)}, 3), got {v.shape} and "
                                 f"{np.shape(col)}")
        o3d = self._o3d
        scene = o3d.t.geometry.RaycastingScene()
        for v in verts:
            scene.add_triangles(o3d.core.Tensor(v), self._faces_o3d)
        # rays only where a mesh can be: the box around their projections (the whole image when any vertex is
        # behind the camera); pixels outside it cannot see a body
        y0, y1, x0, x1 = self._body_box(verts[0]) if len(verts) == 1 else self._union_box(verts)
        hits = scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(self._rays[y0:y1, x0:x1])))
        t_hit = np.full(self.floor_depth.shape, np.inf, np.float32)
        t_hit[y0:y1, x0:x1] = hits["t_hit"].numpy()
        body = np.isfinite(t_hit) & (t_hit < self.floor_depth)
        image = self.background.copy()
        labels = np.full(body.shape, -1, np.int8)
        if body.any():
            inside = body[y0:y1, x0:x1]
            which = hits["geometry_ids"].numpy()[inside].astype(np.int64) if len(verts) > 1 else np.zeros(
                int(inside.sum()), np.int64)
            labels[body] = which
            prim = hits["primitive_ids"].numpy()[inside].astype(np.int64)
            uv = hits["primitive_uvs"].numpy()[inside]
            tri = self.faces[prim]  # (N, 3)
            bary = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], -1)[..., None]
            view = -self.dirs[body]
            shaded = np.empty((len(prim), 3), np.float32)
            for k, (v, (_, col)) in enumerate(zip(verts, meshes, strict=True)):
                sel = which == k
                if sel.all():  # one mesh: no selection (the arrays stay exactly as they were)
                    shaded = self._shade(v, np.asarray(col, np.float32), tri, bary, view)
                elif sel.any():
                    shaded[sel] = self._shade(v, np.asarray(col, np.float32), tri[sel], bary[sel], view[sel])
            image[body] = shaded
        s = self.supersample
        w, h = self.camera.size
        if s > 1:
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            cover = [cv2.resize((labels == k).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
                     for k in range(len(verts))]
            labels = np.full((h, w), -1, np.int8)
            for k, c in enumerate(cover):
                labels[c > 0.5] = k
        bgr = np.clip(image[..., ::-1] * 255 + 0.5, 0, 255).astype(np.uint8)
        return bgr, labels

    def _union_box(self, verts: list[np.ndarray]) -> tuple[int, int, int, int]:
        boxes = np.array([self._body_box(v) for v in verts])
        return int(boxes[:, 0].min()), int(boxes[:, 1].max()), int(boxes[:, 2].min()), int(boxes[:, 3].max())

    def _shade(self, vertices: np.ndarray, colours: np.ndarray, tri: np.ndarray, bary: np.ndarray,
               view: np.ndarray) -> np.ndarray:
        """(N, 3) RGB of N body pixels: their triangles' corners ``tri`` (N, 3), barycentrics ``bary`` (N, 3, 1)
        and directions towards the camera ``view`` (N, 3)."""
        normals = _vertex_normals(vertices, self.faces)
        n = (normals[tri] * bary).sum(1)
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-9
        flip = (n * view).sum(1) < 0
        n[flip] *= -1  # back faces seen through a gap shade like front faces
        lambert = np.clip(n @ KEY_LIGHT, 0, None)
        headlight = np.clip((n * view).sum(1), 0, None)
        shade = 0.25 + 0.55 * lambert + 0.35 * headlight
        return (colours[tri] * bary).sum(1) * shade[:, None]


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted vertex normals (not normalized) of a mesh (V, 3) with faces (F, 3)."""
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    corner = faces.reshape(-1)
    weights = np.repeat(face_n, 3, axis=0)  # each face's normal to its three corners
    return np.stack([np.bincount(corner, weights[:, k], minlength=len(vertices)) for k in range(3)], -1).astype(
        vertices.dtype)
