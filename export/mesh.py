"""Skinned meshes: the type the writers share, and linear blend skinning (OBJ / PLY files are written by
:mod:`reconstruction.body.io`).

A :class:`SkinnedMesh` is the rest-pose mesh of a :class:`~export.motion.Motion`'s skeleton: vertices in
world coordinates (metres, Z up) with the skeleton in its rest pose (all local rotations identity), and up to
K joint influences per vertex. A body model's mesh and skinning weights become one of these; the synthetic
:func:`capsule_mesh` stands in for tests.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mocap_studio.common.fileio import atomic_path
from mocap_studio.export.motion import Z_UP_TO_Y_UP, Motion
from mocap_studio.reconstruction.body.io import checked_mesh, vertex_normals

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SkinnedMesh:
    """A triangle mesh bound to a skeleton. V vertices, F triangles, K influences per vertex."""

    vertices_m: np.ndarray
    """(V, 3) rest-pose vertex positions, metres, world frame of the motion (Z up)."""
    faces: np.ndarray
    """(F, 3) int vertex indices, counter-clockwise seen from outside."""
    joint_indices: np.ndarray
    """(V, K) int joints influencing each vertex (indices into the motion's joints)."""
    joint_weights: np.ndarray
    """(V, K) weights, non-negative, summing to 1 per vertex (unused slots weight 0)."""

    def __post_init__(self) -> None:
        v = np.asarray(self.vertices_m, dtype=float)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"vertices_m must have shape (V, 3), got {v.shape}")
        f = np.asarray(self.faces, dtype=np.int64)
        if f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"faces must have shape (F, 3), got {f.shape}")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(f"faces index vertices 0..{len(v) - 1}, found {f.min()}..{f.max()}")
        ji = np.asarray(self.joint_indices, dtype=np.int64)
        jw = np.asarray(self.joint_weights, dtype=float)
        if ji.ndim != 2 or ji.shape[0] != len(v) or jw.shape != ji.shape:
            raise ValueError(
                f"joint_indices and joint_weights must both have shape (V={len(v)}, K), got {ji.shape} and "
                f"{jw.shape}"
            )
        if np.any(jw < 0) or not np.allclose(jw.sum(1), 1.0, atol=1e-6):
            raise ValueError("joint_weights must be non-negative and sum to 1 for every vertex")
        for name, arr in (("vertices_m", v), ("faces", f), ("joint_indices", ji), ("joint_weights", jw)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def num_vertices(self) -> int:
        """V, the number of vertices."""
        return len(self.vertices_m)

    def check_skeleton(self, motion: Motion) -> None:
        """Raise ValueError when the mesh refers to joints the motion does not have."""
        if self.joint_indices.size and self.joint_indices.max() >= motion.num_joints:
            raise ValueError(
                f"mesh is skinned to joint index {self.joint_indices.max()} but the motion has "
                f"{motion.num_joints} joints; the mesh belongs to another skeleton"
            )

    def top_k(self, k: int = 4) -> SkinnedMesh:
        """The same mesh with at most ``k`` influences per vertex (largest kept, renormalized)."""
        if self.joint_indices.shape[1] <= k:
            pad = k - self.joint_indices.shape[1]
            return SkinnedMesh(
                self.vertices_m,
                self.faces,
                np.pad(self.joint_indices, ((0, 0), (0, pad))),
                np.pad(self.joint_weights, ((0, 0), (0, pad))),
            )
        order = np.argsort(-self.joint_weights, axis=1)[:, :k]
        w = np.take_along_axis(self.joint_weights, order, 1)
        return SkinnedMesh(
            self.vertices_m,
            self.faces,
            np.take_along_axis(self.joint_indices, order, 1),
            w / w.sum(1, keepdims=True),
        )

    def dense_weights(self, num_joints: int) -> np.ndarray:
        """(V, J) weight of every joint on every vertex."""
        dense = np.zeros((self.num_vertices, num_joints))
        np.add.at(dense, (np.arange(self.num_vertices)[:, None], self.joint_indices), self.joint_weights)
        return dense


def skin(mesh: SkinnedMesh, motion: Motion, frames: np.ndarray | slice | None = None) -> np.ndarray:
    """Linear blend skinning: posed vertices (T, V, 3) in metres for the motion's frames (all by default)."""
    mesh.check_skeleton(motion)
    rot, pos = motion.world_transforms()
    sel = slice(None) if frames is None else frames
    rot, pos = rot[sel], pos[sel]
    rest = motion.rest_positions_m()
    # vertex relative to each influencing joint at rest (rest world rotations are identity)
    rel = mesh.vertices_m[:, None, :] - rest[mesh.joint_indices]  # (V, K, 3)
    out = np.zeros((rot.shape[0], mesh.num_vertices, 3))
    for k in range(mesh.joint_indices.shape[1]):
        j = mesh.joint_indices[:, k]
        w = mesh.joint_weights[:, k]
        moved = np.einsum("tvab,vb->tva", rot[:, j], rel[:, k]) + pos[:, j]
        out += w[None, :, None] * moved
    return out


def capsule_mesh(motion: Motion, radius_m: float = 0.04, sides: int = 8, rings: int = 4) -> SkinnedMesh:
    """A synthetic skinned body: a closed tube around each bone (parent -> child), weighted to the parent
    joint and blended half-and-half with the child's at the child end. Rest pose, metres, Z up."""
    rest = motion.rest_positions_m()
    verts, faces, idx, wts = [], [], [], []
    angles = 2 * np.pi * np.arange(sides) / sides
    for j in range(1, motion.num_joints):
        p = int(motion.parents[j])
        a, b = rest[p], rest[j]
        axis = b - a
        length = np.linalg.norm(axis)
        if length < 1e-6:
            continue
        axis = axis / length
        helper = np.array([1.0, 0, 0]) if abs(axis[0]) < 0.9 else np.array([0, 1.0, 0])
        u = np.cross(axis, helper)
        u /= np.linalg.norm(u)
        w_ = np.cross(axis, u)
        base = sum(len(v) for v in verts)
        ring_pts, ring_idx, ring_w = [], [], []
        for r in range(rings + 1):
            s = r / rings
            centre = a + s * (b - a)
            rad = radius_m * (1.0 - 0.3 * s)
            ring = centre + rad * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * w_)
            child_w = 0.5 * max(0.0, (s - 0.5) / 0.5)
            ring_pts.append(ring)
            ring_idx.append(np.tile([p, j], (sides, 1)))
            ring_w.append(np.tile([1.0 - child_w, child_w], (sides, 1)))
        caps = np.array([a, b])
        pts = np.concatenate(ring_pts + [caps])
        verts.append(pts)
        idx.append(np.concatenate(ring_idx + [np.array([[p, j], [p, j]])]))
        wts.append(np.concatenate(ring_w + [np.array([[1.0, 0.0], [0.5, 0.5]])]))
        for r in range(rings):
            for s in range(sides):
                v00 = base + r * sides + s
                v01 = base + r * sides + (s + 1) % sides
                v10 = v00 + sides
                v11 = v01 + sides
                faces += [(v00, v01, v11), (v00, v11, v10)]
        cap_a, cap_b = base + (rings + 1) * sides, base + (rings + 1) * sides + 1
        last = base + rings * sides
        for s in range(sides):
            faces.append((cap_a, base + (s + 1) % sides, base + s))
            faces.append((cap_b, last + s, last + (s + 1) % sides))
    if not verts:
        raise ValueError("the motion's skeleton has no bones with length; nothing to build a mesh around")
    return SkinnedMesh(np.concatenate(verts), np.array(faces), np.concatenate(idx), np.concatenate(wts))


def is_watertight(faces: np.ndarray) -> bool:
    """True when every edge is shared by exactly two triangles with opposite directions."""
    f = np.asarray(faces, np.int64)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    fwd = {tuple(e) for e in edges.tolist()}
    if len(fwd) != len(edges):
        return False
    return all((b, a) in fwd for a, b in fwd)


def boundary_loops(faces: np.ndarray) -> list[list[int]]:
    """The mesh's holes: each a closed list of vertex indices along directed edges that no triangle shares
    in the opposite direction (in the faces' own winding)."""
    f = np.asarray(faces, np.int64)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).tolist()
    present = {(a, b) for a, b in edges}
    nxt: dict[int, list[int]] = {}
    for a, b in edges:
        if (b, a) not in present:
            nxt.setdefault(a, []).append(b)
    loops: list[list[int]] = []
    while nxt:
        start = next(iter(nxt))
        loop, v = [start], nxt[start].pop()
        if not nxt[start]:
            del nxt[start]
        while v != start and v in nxt:
            loop.append(v)
            w = nxt[v].pop()
            if not nxt[v]:
                del nxt[v]
            v = w
        loops.append(loop)
    return loops


def close_holes(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Close every hole (:func:`boundary_loops`) with a fan of triangles around a new vertex at the hole's
    centroid, wound like the faces around it. Returns vertices (V + holes, 3) and faces (F + boundary edges,
    3); a closed mesh comes back unchanged."""
    v = np.asarray(vertices, float)
    f = np.asarray(faces, np.int64)
    loops = boundary_loops(f)
    if not loops:
        return v, f
    new_v, new_f = [v], [f]
    count = len(v)
    for loop in loops:
        ring = np.array(loop)
        new_v.append(v[ring].mean(0, keepdims=True))
        # a boundary edge (a, b) belongs to a face that runs a -> b: the cap runs b -> a
        new_f.append(np.stack([np.roll(ring, -1), ring, np.full(len(ring), count)], axis=1))
        count += 1
    log.debug("closed %d hole(s) of %s boundary edges", len(loops), [len(lp) for lp in loops])
    return np.concatenate(new_v), np.concatenate(new_f)


def write_obj_yup(path: str | os.PathLike, vertices_m: np.ndarray, faces: np.ndarray) -> Path:
    """Wavefront OBJ for modelling and try-on tools, which read OBJ as Y up (Blender's and Marvelous
    Designer's importers, three.js): ``vertices_m`` (V, 3) metres in the Z-up world, written turned to Y up
    (x, z, -y: the body faces +Z), with vertex normals; ``faces`` (F, 3) zero-based, counter-clockwise from
    outside."""
    v, f = checked_mesh(vertices_m, faces, path)
    v = v @ Z_UP_TO_Y_UP.T
    normals = vertex_normals(v, f)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"# mocap-studio mesh: {len(v)} vertices, {len(f)} triangles; units metres, Y up, facing +Z\n")
        np.savetxt(fh, v, fmt="v %.6f %.6f %.6f")
        np.savetxt(fh, normals, fmt="vn %.4f %.4f %.4f")
        np.savetxt(fh, np.repeat(f + 1, 2, axis=1), fmt="f %d//%d %d//%d %d//%d")
    return path
