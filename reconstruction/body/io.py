"""Body outputs: ``body.npz`` and meshes (OBJ, PLY), all written atomically.

body.npz keys, every model: ``model`` (name), ``shape`` (S,), ``pose_rotvec`` (T, J, 3), ``trans`` (T, 3),
``frame_times`` (T,), ``mocap_framerate`` (), ``joint_names`` (J,), ``parents`` (J,), ``contact`` (T, 2),
``shape_names`` (S,). For the SMPL family also the AMASS keys: ``poses`` (T, J*3), ``trans``, ``betas``
(S,), ``gender``, ``mocap_framerate``. For Anny: ``phenotypes`` (S,) (same as ``shape``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mocap_studio.common.fileio import save_npz_atomic, write_text_atomic
from mocap_studio.reconstruction.body.fitting import BodyMotion


def save_body_npz(path: str | Path, motion: BodyMotion, joint_names, parents, shape_names) -> Path:  # noqa: ANN001
    T = len(motion.pose_rotvec)
    arrays = {
        "model": np.array(motion.model), "shape": motion.shape, "pose_rotvec": motion.pose_rotvec,
        "trans": motion.trans, "frame_times": motion.frame_times, "mocap_framerate": np.array(motion.frame_rate),
        "joint_names": np.array(joint_names, dtype=str), "parents": np.asarray(parents),
        "contact": motion.contact, "shape_names": np.array(shape_names, dtype=str),
    }
    if motion.model.startswith("smpl"):
        arrays.update(poses=motion.pose_rotvec.reshape(T, -1), betas=motion.shape, gender=np.array(motion.gender))
    else:
        arrays.update(phenotypes=motion.shape)
    return save_npz_atomic(path, **arrays)


def load_body_npz(path: str | Path) -> BodyMotion:
    with np.load(path, allow_pickle=False) as d:
        return BodyMotion(
            str(d["model"]), d["shape"], d["pose_rotvec"], d["trans"], float(d["mocap_framerate"]),
            d["frame_times"], str(d["gender"]) if "gender" in d else "neutral", d["contact"],
        )


def write_obj(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Wavefront OBJ: vertices (V, 3) metres, faces (F, 3) zero-based."""
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in np.asarray(vertices, float)]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in np.asarray(faces, np.int64)]
    return write_text_atomic(path, "# units: metres, Z up\n" + "\n".join(lines) + "\n")


def write_ply(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Binary little-endian PLY: vertices (V, 3) float32, faces (F, 3)."""
    from mocap_studio.common.fileio import write_bytes_atomic

    v = np.asarray(vertices, dtype="<f4")
    f = np.asarray(faces, dtype="<i4")
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment units metres, Z up\n"
        f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode()
    face_rec = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face_rec["n"], face_rec["i"] = 3, f
    return write_bytes_atomic(path, header + v.tobytes() + face_rec.tobytes())
