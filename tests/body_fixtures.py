"""Test helpers for the body models: a synthetic SMPL-format file and synthetic motions with known truth.

The synthetic SMPL file has the official file's keys, shapes and dtypes and is written the way those files
were: a Python 2 pickle (byte strings as Python 2 ``str``, numpy and scipy under their old module paths)
holding chumpy objects (``chumpy.ch.Ch``, written from a stand-in class) and a scipy sparse regressor.
Its geometry is Anny's body resampled to 6890 vertices, so fits and measurements on it mean something.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.sparse
from mocap_studio.reconstruction.body.smpl_model import SMPL_BODY_JOINTS, Y_UP_TO_Z_UP
from scipy.spatial import cKDTree

SMPL_V, SMPL_F, SMPL_J, SMPL_P = 6890, 13776, 24, 207
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)


class Ch:
    """Stand-in for chumpy's ``Ch``: pickled under the name ``chumpy.ch.Ch`` with its value in ``x``."""

    def __init__(self, x: np.ndarray):
        self.x = x
        self._cache = {}
        self._dirty_vars = set()


_MODULE_NAMES = {
    "numpy._core.multiarray": "numpy.core.multiarray",
    "numpy.core.multiarray": "numpy.core.multiarray",
    "scipy.sparse._csc": "scipy.sparse.csc",
    __name__: "chumpy.ch",
}


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes pickles the way Python 2's cPickle did: ``str`` as byte strings, old module paths."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    def save_global(self, obj, name=None):  # noqa: ANN001
        name = name or obj.__qualname__
        module = getattr(obj, "__module__", None) or pickle.whichmodule(obj, name)
        module = _MODULE_NAMES.get(module, module)
        self.write(pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n")
        self.memoize(obj)


Py2Pickler.dispatch[bytes] = Py2Pickler.save_py2_str
Py2Pickler.dispatch[str] = Py2Pickler.save_py2_str
Py2Pickler.dispatch[type] = Py2Pickler.save_global


def py2_pickle_dumps(obj: object) -> bytes:
    import io

    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _farthest_points(points: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = np.empty(count, dtype=np.int64)
    chosen[0] = rng.integers(len(points))
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    for i in range(1, count):
        chosen[i] = int(np.argmax(dist))
        dist = np.minimum(dist, np.linalg.norm(points - points[chosen[i]], axis=1))
    return np.sort(chosen)


def make_synthetic_smpl_arrays(anny_body, seed: int = 0) -> dict:
    """Arrays of an SMPL-format model derived from Anny (same keys, shapes and dtypes as SMPL 1.0)."""
    import torch
    from mocap_studio.reconstruction.body.anny_model import ANNY_SEMANTIC_BONES

    rng = np.random.default_rng(seed)
    dt = anny_body.dtype
    with torch.no_grad():
        shapes = [torch.as_tensor(anny_body.random_shape(rng, 1.2), dtype=dt) for _ in range(40)]
        samples = np.stack([anny_body.rest_vertices_torch(s).double().numpy() for s in shapes])
        joints_mean = anny_body.rest_joints_torch(torch.as_tensor(anny_body.default_shape(), dtype=dt)).double().numpy()
    to_smpl = Y_UP_TO_Z_UP.T  # world/Anny axes (Z up, facing -Y) -> SMPL axes (Y up, facing +Z)
    samples = samples @ to_smpl.T
    joints_mean = joints_mean @ to_smpl.T
    mean = samples.mean(0)
    keep = _farthest_points(mean, SMPL_V, seed)
    # faces: every Anny vertex joins its nearest kept vertex (vertex clustering), degenerate faces dropped
    _, cluster = cKDTree(mean[keep]).query(mean)
    faces = cluster[anny_body.faces]
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    faces = np.unique(np.sort(faces, axis=1), axis=0)
    reps = int(np.ceil(SMPL_F / len(faces)))
    faces = np.concatenate([faces] * reps)[:SMPL_F]
    v_template = mean[keep]
    dev = (samples[:, keep] - v_template).reshape(len(samples), -1)
    _, s, vt = np.linalg.svd(dev, full_matrices=False)
    shapedirs = (vt[:10] * (s[:10, None] / np.sqrt(len(samples)))).T.reshape(SMPL_V, 3, 10)
    # joint regressor: inverse-distance weights of the 6 kept vertices nearest each mapped Anny bone head
    bone_index = {n: i for i, n in enumerate(anny_body.joint_names)}
    tree = cKDTree(v_template)
    j_reg = np.zeros((SMPL_J, SMPL_V))
    smpl_names = SMPL_BODY_JOINTS + ("left_hand", "right_hand")
    for j, name in enumerate(smpl_names):
        d, ids = tree.query(joints_mean[bone_index[ANNY_SEMANTIC_BONES[name]]], k=6)
        w = 1.0 / np.maximum(d, 1e-4)
        j_reg[j, ids] = w / w.sum()
    # skinning weights: each Anny bone goes to its nearest ancestor that is an SMPL joint
    mapped = {bone_index[ANNY_SEMANTIC_BONES[n]]: j for j, n in enumerate(smpl_names)}
    owner = np.zeros(len(anny_body.joint_names), dtype=np.int64)
    for b in range(len(anny_body.joint_names)):
        a = b
        while a not in mapped:
            a = int(anny_body.parents[a])
        owner[b] = mapped[a]
    anny_w = anny_body.skinning_weights()[keep]
    weights = np.zeros((SMPL_V, SMPL_J))
    np.add.at(weights.T, owner, anny_w.T)
    weights /= weights.sum(1, keepdims=True)
    posedirs = rng.normal(0.0, 2e-4, (SMPL_V, 3, SMPL_P))
    kintree = np.array([[4294967295] + list(SMPL_PARENTS[1:]), list(range(SMPL_J))], dtype=np.int64)
    return {
        "J_regressor_prior": scipy.sparse.csc_matrix(j_reg),
        "f": faces.astype(np.uint32),
        "J_regressor": scipy.sparse.csc_matrix(j_reg),
        "kintree_table": kintree,
        "J": j_reg @ v_template,
        "weights_prior": weights.copy(),
        "weights": weights,
        "vert_sym_idxs": np.arange(SMPL_V, dtype=np.int64),
        "posedirs": posedirs,
        "pose_training_info": {"lambda_pose": 0.0, "num_steps": 0},
        "bs_style": "lbs",
        "v_template": v_template,
        "shapedirs": shapedirs,
        "bs_type": "lrotmin",
    }


def write_synthetic_smpl(path: Path, arrays: dict) -> Path:
    """Write ``arrays`` as an official-style SMPL pickle (chumpy ``shapedirs``, ``v_template``, ``J``)."""
    obj = dict(arrays)
    for key in ("shapedirs", "v_template", "J"):
        obj[key] = Ch(np.asarray(arrays[key]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(py2_pickle_dumps(obj))
    return path


# ---------------------------------------------------------------------------------------------------
# synthetic motion with known truth


def _canon_rotvecs(model, names_angles: dict[str, np.ndarray], T: int) -> np.ndarray:
    """(T, J, 3) model-axes rotvecs from {semantic joint: (T, 3) canonical-frame rotvec}."""
    M = model.model_to_world_rest
    pose = np.zeros((T, model.num_joints, 3))
    for sem, rv in names_angles.items():
        pose[:, model.semantic_joints[sem]] += rv @ M  # canonical -> model axes: M^T r
    return pose


def plausible_motion(model, shape: np.ndarray, T: int = 200, fps: float = 60.0, seed: int = 0):
    """A squat, arm swings, a torso twist, a nod and a step with the right foot; the left foot stays
    planted (its heel on the floor at Z = 0). Returns (pose (T, J, 3), trans (T, 3), sole (T, 2, 3)):
    sole is each foot's lowest rest vertex, posed (for contact truth)."""
    from mocap_studio.common.rotations import rotmat_to_rotvec, rotvec_to_rotmat

    rng = np.random.default_rng(seed)
    t = np.arange(T) / fps
    dur = T / fps
    ph = rng.uniform(0, 2 * np.pi, 6)
    x = np.array([1.0, 0, 0])
    z = np.array([0, 0, 1.0])
    y = np.array([0, 1.0, 0])
    squat = 0.35 * (1 - np.cos(2 * np.pi * t / dur)) / 2
    step = np.clip(np.sin(np.pi * (t - 0.35 * dur) / (0.3 * dur)), 0, None) * ((t > 0.35 * dur) & (t < 0.65 * dur))
    ang = {
        "left_hip": -squat[:, None] * x,
        "left_knee": 2 * squat[:, None] * x,
        "left_ankle": -squat[:, None] * x,
        "right_hip": -(squat + 0.7 * step)[:, None] * x,
        "right_knee": (2 * squat + 1.1 * step)[:, None] * x,
        "right_ankle": -(squat + 0.3 * step)[:, None] * x,
        "left_shoulder": (-0.6 * np.sin(2 * np.pi * 0.7 * t + ph[0]))[:, None] * x - 0.3 * y[None].repeat(T, 0),
        "right_shoulder": (0.6 * np.sin(2 * np.pi * 0.7 * t + ph[0]))[:, None] * x + 0.3 * y[None].repeat(T, 0),
        "left_elbow": -(0.4 + 0.5 * (1 + np.sin(2 * np.pi * 0.9 * t + ph[1])) / 2)[:, None] * x,
        "right_elbow": -(0.4 + 0.5 * (1 + np.sin(2 * np.pi * 0.9 * t + ph[2])) / 2)[:, None] * x,
        "spine2": (0.25 * np.sin(2 * np.pi * 0.4 * t + ph[3]))[:, None] * z + (0.1 * squat)[:, None] * -x,
        "spine3": (0.15 * np.sin(2 * np.pi * 0.4 * t + ph[3]))[:, None] * z,
        "neck": (0.2 * np.sin(2 * np.pi * 0.6 * t + ph[4]))[:, None] * x,
        "head": (0.3 * np.sin(2 * np.pi * 0.3 * t + ph[5]))[:, None] * z,
    }
    pose = _canon_rotvecs(model, ang, T)
    yaw = rng.uniform(-np.pi, np.pi)
    root = rotvec_to_rotmat(np.array([0, 0, yaw])) @ model.model_to_world_rest
    pose[:, 0] = rotmat_to_rotvec(root)
    # soles: lowest rest vertex of each foot (heel region)
    rest = model.rest_mesh(shape)
    w = model.skinning_weights()
    soles = []
    for side in ("left", "right"):
        foot_joints = [model.semantic_joints[f"{side}_ankle"], model.semantic_joints[f"{side}_foot"]]
        foot = np.flatnonzero(w[:, foot_joints].sum(1) > 0.5)
        soles.append(foot[np.argmin(rest[foot, 2] + 1e-3 * -rest[foot, 1])])
    out = model.evaluate(shape, pose, np.zeros((T, 3)))
    left = out.vertices[:, soles[0]]
    trans = np.array([0.3, -0.2, 0.0]) - left  # left heel fixed at (0.3, -0.2, 0)
    sole_pos = out.vertices[:, soles] + trans[:, None]
    return pose, trans, sole_pos


def noisy_keypoints(
    clean: np.ndarray,
    seed: int = 0,
    noise_m: float = 0.01,
    outliers: float = 0.05,
    missing: float = 0.03,
    skeleton: str = "blazepose33",
    fps: float = 60.0,
):
    """Keypoints3D from clean (T, K, 3): Gaussian noise per axis, outliers (0.1-0.5 m off, with errors
    overlapping the inliers'), missing points and a joint lost for 20 frames."""
    from mocap_studio.reconstruction.keypoints import Keypoints3D

    rng = np.random.default_rng(seed)
    T, K, _ = clean.shape
    xyz = clean + rng.normal(0, noise_m, clean.shape)
    err = np.abs(rng.normal(2.0, 1.0, (T, K)))
    bad = rng.random((T, K)) < outliers
    d = rng.normal(size=(T, K, 3))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    xyz[bad] += d[bad] * rng.uniform(0.1, 0.5, (bad.sum(), 1))
    err[bad] = rng.uniform(2.0, 10.0, bad.sum())
    gone = rng.random((T, K)) < missing
    if T > 40:
        gone[T // 2 : T // 2 + 20, K // 2] = True
    xyz[gone] = np.nan
    err[gone] = np.nan
    used = np.ones((T, K, 4), bool) & ~gone[..., None]
    return Keypoints3D(xyz, err, used, ("c1", "c2", "c3", "c4"), skeleton, np.arange(T) / fps)


def crowd_keypoints(clean: np.ndarray, seed: int = 0, noise_m: float = 0.012, fps: float = 30.0):
    """Keypoints3D from clean (T, K, 3) as a crowd's triangulation errs: Gaussian noise per axis, and limbs
    (an elbow and wrist, or a knee and ankle) pulled off together for runs of 5-20 frames, smoothly, by 8-25 cm
    at the peak (a limb hidden behind another performer, placed by two views that agree on a guess), about one
    run per 6 frames."""
    from mocap_studio.reconstruction.keypoints import Keypoints3D
    from mocap_studio.reconstruction.skeletons import get_format

    rng = np.random.default_rng(seed)
    T, K, _ = clean.shape
    joints = get_format("blazepose33").joints
    limbs = [[joints.index(f"{side}_{part}") for part in parts]
             for side in ("left", "right") for parts in (("elbow", "wrist"), ("knee", "ankle"))]
    xyz = clean + rng.normal(0, noise_m, clean.shape)
    for _ in range(T // 6):
        limb, n = limbs[rng.integers(len(limbs))], int(rng.integers(5, 20))
        start = int(rng.integers(0, T - n))
        d = rng.normal(size=3)
        peak = rng.uniform(0.08, 0.25) * d / np.linalg.norm(d)
        xyz[start:start + n, limb] += np.sin(np.linspace(0, np.pi, n))[:, None, None] * peak
    return Keypoints3D(xyz, np.full((T, K), 2.0), np.ones((T, K, 4), bool), ("c1", "c2", "c3", "c4"), "blazepose33",
                       np.arange(T) / fps)
