"""Body measurements from a rest-pose mesh, for virtual try-on.

The mesh stands in the world frame (Z up, facing -Y, left +X, feet at Z = 0; ``BodyModel.rest_mesh``).
A circumference is what a tape measure gives: the perimeter of the convex hull of a horizontal slice
through the mesh (the slice's piece around the body part only). The arms are left out of the slices
(as a tailor lifts them): in a rest pose with the arms down, a slice at the armpits would otherwise join
arms and chest into one piece, and the chest girth would jump by tens of centimetres with the build.
Landmark heights come from the model's keypoints in the rest pose.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import ConvexHull


@dataclass(frozen=True)
class Measurements:
    """Metres. height: top of head to floor; *_circumference: tape around the body part; inseam: crotch to
    floor; shoulder_width: between the shoulder keypoints; arm_length: shoulder to elbow to wrist."""

    height: float
    chest_circumference: float
    waist_circumference: float
    hip_circumference: float
    thigh_circumference: float
    neck_circumference: float
    inseam: float
    shoulder_width: float
    arm_length: float

    def to_json(self) -> dict:
        """The measurements as a JSON-ready dict, metres rounded to 0.1 mm, with ``units``."""
        return {"units": "m", **{k: round(float(v), 4) for k, v in asdict(self).items()}}


def slice_pieces(vertices: np.ndarray, faces: np.ndarray, z: float) -> list[np.ndarray]:
    """Points (n_i, 2) of each connected piece of the mesh's cross-section at height ``z``.

    vertices (V, 3), faces (F, 3).
    """
    v = np.asarray(vertices, dtype=float)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {f.shape}")
    above = v[:, 2] > z
    fa = above[f]
    crossing = f[(fa.any(1)) & (~fa.all(1))]
    if len(crossing) == 0:
        return []
    edges = np.concatenate([crossing[:, [0, 1]], crossing[:, [1, 2]], crossing[:, [2, 0]]])
    edges = np.sort(edges, axis=1)
    cut = above[edges[:, 0]] != above[edges[:, 1]]
    # each crossing triangle links its two cut edges: union-find over edges
    tri_edges = np.sort(np.stack([crossing[:, [0, 1]], crossing[:, [1, 2]], crossing[:, [2, 0]]], 1), axis=2)
    tri_cut = above[tri_edges[..., 0]] != above[tri_edges[..., 1]]
    uniq, inv = np.unique(edges[cut], axis=0, return_inverse=True)
    key = {tuple(e): i for i, e in enumerate(uniq.tolist())}
    parent = np.arange(len(uniq))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for tri, ok in zip(tri_edges.tolist(), tri_cut.tolist(), strict=True):
        ids = [key[tuple(e)] for e, c in zip(tri, ok, strict=True) if c]
        for a, b in zip(ids[:-1], ids[1:], strict=False):
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[ra] = rb
    p0, p1 = v[uniq[:, 0]], v[uniq[:, 1]]
    s = (z - p0[:, 2]) / (p1[:, 2] - p0[:, 2])
    pts = p0[:, :2] + s[:, None] * (p1[:, :2] - p0[:, :2])
    roots = np.array([find(i) for i in range(len(uniq))])
    return [pts[roots == r] for r in np.unique(roots)]


def convex_perimeter(points: np.ndarray) -> float:
    """Perimeter of the convex hull of 2D points (n, 2)."""
    if len(points) < 3:
        return 0.0
    hull = ConvexHull(points)
    ring = points[hull.vertices]
    return float(np.linalg.norm(ring - np.roll(ring, 1, axis=0), axis=1).sum())


def _piece_near(vertices, faces, z: float, centre_xy: np.ndarray) -> np.ndarray:
    pieces = [p for p in slice_pieces(vertices, faces, z) if len(p) >= 3]
    if not pieces:
        return np.zeros((0, 2))
    return min(pieces, key=lambda p: float(np.linalg.norm(p.mean(0) - centre_xy)))


def circumference_at(vertices, faces, z: float, centre_xy: np.ndarray) -> float:
    """Tape-measure girth at height z of the slice piece nearest to ``centre_xy`` (2,)."""
    return convex_perimeter(_piece_near(vertices, faces, z, np.asarray(centre_xy, dtype=float)))


def measure(vertices: np.ndarray, faces: np.ndarray, keypoints: dict[str, np.ndarray]) -> Measurements:
    """Measurements of a rest mesh (V, 3) with faces (F, 3) and its rest keypoints (name -> (3,)); needs
    left/right hip, knee, shoulder, elbow, wrist and ear (or nose)."""
    v = np.asarray(vertices, dtype=float)
    kp = {k: np.asarray(x, dtype=float) for k, x in keypoints.items()}
    floor = v[:, 2].min()
    height = float(v[:, 2].max() - floor)
    hip = 0.5 * (kp["left_hip"] + kp["right_hip"])
    sh = 0.5 * (kp["left_shoulder"] + kp["right_shoulder"])
    knee_l = kp["left_knee"]
    head = kp.get("nose", sh + np.array([0, 0, 0.25]))
    centre = hip[:2]
    torso = sh[2] - hip[2]

    def scan(lo: float, hi: float, centre_xy: np.ndarray, pick) -> float:  # noqa: ANN001
        values = [circumference_at(v, faces, z, centre_xy) for z in np.linspace(lo, hi, 9)]
        return float(pick(values))

    chest = scan(sh[2] - 0.35 * torso, sh[2] - 0.2 * torso, sh[:2], max)
    waist = scan(hip[2] + 0.3 * torso, hip[2] + 0.6 * torso, centre, min)
    hips = scan(hip[2] - 0.15 * torso, hip[2] + 0.05 * torso, centre, max)
    # crotch: highest height at which the legs are two pieces near the body's centre line
    crotch = hip[2] - 0.3 * torso
    for z in np.linspace(hip[2], knee_l[2], 60):
        near = [p for p in slice_pieces(v, faces, z) if len(p) >= 3 and abs(p[:, 0].mean() - centre[0]) < 0.2]
        if len(near) >= 2:
            crotch = z
            break
    thigh_centre = kp["left_hip"][:2] + 0.3 * (knee_l[:2] - kp["left_hip"][:2])
    thigh = scan(crotch - 0.06, crotch - 0.01, thigh_centre, max)
    # halfway from the shoulder keypoints to the nose: lower slices catch the trapezius, whose girth changes
    # steeply with height (and with where a detector-trained shoulder landmark sits)
    neck_z = sh[2] + 0.5 * (head[2] - sh[2])
    neck = circumference_at(v, faces, neck_z, sh[:2])
    arm = float(np.linalg.norm(kp["left_elbow"] - kp["left_shoulder"]) + np.linalg.norm(kp["left_wrist"] - kp["left_elbow"]))
    return Measurements(
        height, chest, waist, hips, thigh, neck, float(crotch - floor),
        float(np.linalg.norm(kp["left_shoulder"] - kp["right_shoulder"])), arm,
    )


def measure_body(model, shape: np.ndarray) -> Measurements:  # noqa: ANN001
    """Measurements of ``model`` (a BodyModel) with ``shape`` (S,) in its rest pose."""
    rest = model.rest_mesh(shape)
    reg = model.keypoint_regressor("blazepose33")
    # the rest mesh is the model's rest vertices rotated upright and shifted; apply the same to keypoints
    import torch

    with torch.no_grad():
        raw = model.rest_vertices_torch(torch.as_tensor(np.asarray(shape, float), dtype=model.dtype)).double().numpy()
    up = raw @ model.model_to_world_rest.T
    shift = rest[0] - up[0]
    kp = reg.matrix @ (up[reg.vertex_ids] + shift)
    names = {n: kp[i] for i, n in enumerate(reg.joint_names) if reg.supported[i]}
    arm = model.skinning_weights()[:, _arm_joints(model)].sum(1) > 0.5
    return measure(rest, model.faces[~arm[model.faces].any(1)], names)


def _arm_joints(model) -> np.ndarray:  # noqa: ANN001
    """(J,) bool: the shoulder (upper arm) joints and every joint below them."""
    out = np.zeros(model.num_joints, dtype=bool)
    out[[model.semantic_joints["left_shoulder"], model.semantic_joints["right_shoulder"]]] = True
    for j in range(model.num_joints):  # parents come before children
        if model.parents[j] >= 0 and out[model.parents[j]]:
            out[j] = True
    return out
