"""Body outputs: ``body.npz`` and meshes (OBJ, PLY), all written atomically; the project's one OBJ/PLY writer
(the export stage writes its meshes with it too).

body.npz keys, every model: ``model`` (name), ``shape`` (S,), ``pose_rotvec`` (T, J, 3), ``trans`` (T, 3),
``frame_times`` (T,), ``mocap_framerate`` (), ``joint_names`` (J,), ``parents`` (J,), ``contact`` (T, 2),
``shape_names`` (S,), ``ground_z`` () the ground's height under the performer (metres; absent where unknown).
For the SMPL family also the AMASS keys: ``poses`` (T, J*3), ``trans``, ``betas``
(S,), ``gender``, ``mocap_framerate``. For Anny: ``phenotypes`` (S,) (same as ``shape``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from mocap_studio.common.fileio import atomic_path, save_npz_atomic
from mocap_studio.reconstruction.body.fit_config import BodyMotion


def save_body_npz(path: str | Path, motion: BodyMotion, joint_names, parents, shape_names) -> Path:  # noqa: ANN001
    """Write a fitted take as body.npz (keys in the module docstring): ``joint_names`` (J,) and ``parents``
    (J,) of the body model's skeleton, ``shape_names`` (S,) of its shape parameters."""
    T = len(motion.pose_rotvec)
    arrays = {
        "model": np.array(motion.model), "shape": motion.shape, "pose_rotvec": motion.pose_rotvec,
        "trans": motion.trans, "frame_times": motion.frame_times, "mocap_framerate": np.array(motion.frame_rate),
        "joint_names": np.array(joint_names, dtype=str), "parents": np.asarray(parents),
        "contact": motion.contact, "shape_names": np.array(shape_names, dtype=str),
    }
    if motion.ground_z is not None:
        arrays["ground_z"] = np.array(float(motion.ground_z))
    if motion.model.startswith("smpl"):
        arrays.update(poses=motion.pose_rotvec.reshape(T, -1), betas=motion.shape, gender=np.array(motion.gender))
    else:
        arrays.update(phenotypes=motion.shape)
    return save_npz_atomic(path, **arrays)


def load_body_npz(path: str | Path) -> BodyMotion:
    """Read body.npz as :func:`save_body_npz` writes it (contacts and ground included; no fit figures)."""
    with np.load(path, allow_pickle=False) as d:
        return BodyMotion(
            str(d["model"]), d["shape"], d["pose_rotvec"], d["trans"], float(d["mocap_framerate"]),
            d["frame_times"], str(d["gender"]) if "gender" in d else "neutral", d["contact"],
            ground_z=float(d["ground_z"]) if "ground_z" in d else None,
        )


def checked_mesh(vertices_m: np.ndarray, faces: np.ndarray, path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float and faces (F, 3) int64 for a mesh writer, checked before anything is written."""
    v = np.asarray(vertices_m, float)
    f = np.asarray(faces, np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices_m must have shape (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {f.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{path}: vertices contain NaN; nothing written")
    return v, f


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit normals: the area-weighted sum of the normals of the triangles around each vertex (faces
    counter-clockwise from outside); +Y for a vertex no triangle uses."""
    v = np.asarray(vertices, float)
    f = np.asarray(faces, np.int64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    fn = np.cross(b - a, c - a)
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, f[:, k], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    return np.where(norm > 1e-12, vn / np.maximum(norm, 1e-12), [0.0, 1.0, 0.0])


def write_obj(path: str | os.PathLike, vertices_m: np.ndarray, faces: np.ndarray, decimals: int = 6) -> Path:
    """Wavefront OBJ of one mesh: ``vertices_m`` (V, 3) metres, ``faces`` (F, 3) zero-based. Axes as given
    (a comment in the file says Z up, metres; pass Y-up vertices for tools that expect them)."""
    v, f = checked_mesh(vertices_m, faces, path)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"# mocap-studio mesh: {len(v)} vertices, {len(f)} triangles; units metres, Z up\n")
        np.savetxt(fh, v, fmt=f"v %.{decimals}f %.{decimals}f %.{decimals}f")
        np.savetxt(fh, f + 1, fmt="f %d %d %d")
    return path


def write_ply(path: str | os.PathLike, vertices_m: np.ndarray, faces: np.ndarray) -> Path:
    """Binary little-endian PLY (float32 vertices, int32 triangle indices), with a comment on units/axes."""
    v, f = checked_mesh(vertices_m, faces, path)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment mocap-studio mesh; units metres, Z up\n"
        f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    face_rec = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face_rec["n"] = 3
    face_rec["i"] = f
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(header.encode("ascii"))
            fh.write(v.astype("<f4").tobytes())
            fh.write(face_rec.tobytes())
    return path


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read back a PLY written by :func:`write_ply`: vertices (V, 3) float32, faces (F, 3)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    n_v = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    n_f = int(next(h for h in header if h.startswith("element face")).split()[-1])
    v = np.frombuffer(data, "<f4", n_v * 3, end).reshape(n_v, 3)
    rec = np.frombuffer(data, [("n", "u1"), ("i", "<i4", (3,))], n_f, end + n_v * 12)
    return v, rec["i"].astype(np.int64)
