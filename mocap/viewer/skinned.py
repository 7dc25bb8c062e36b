"""A skinned, animated glTF binary (the export stage's ``<take>.<rig>.glb``) read back and posed.

The export writes glTF's Y-up axes; :class:`SkinnedClip` turns everything back into the project's Z-up world
(``world = (x, -z, y)`` of glTF's ``(x, y, z)``) so it sits with the cameras and keypoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""glTF's Y-up axes to the project's Z-up world."""

_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class SkinnedClipError(ValueError):
    """A GLB that holds no skinned, animated mesh (or cannot be read)."""


@dataclass(frozen=True, eq=False)
class SkinnedClip:
    """A mesh skinned to a joint hierarchy, with the joints' animation sampled at frame times (Z-up world).

    vertices: (V, 3) bind-pose vertices. faces: (F, 3). weights: (V, B) skin weights (rows sum to 1).
    parents: (B,) each joint's parent joint, -1 for roots. names: (B,) joint names.
    bind_rotmat, bind_position: (B, 3, 3), (B, 3) each joint's world pose at bind time.
    local_rotmat, local_position: (T, B, 3, 3), (T, B, 3) each joint's pose relative to its parent
    (or, for a root, to the world in glTF axes) at ``times``. times: (T,) seconds.
    """

    vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    names: tuple[str, ...]
    bind_rotmat: np.ndarray
    bind_position: np.ndarray
    local_rotmat: np.ndarray
    local_position: np.ndarray
    times: np.ndarray

    @property
    def num_frames(self) -> int:
        """T, the animation's sampled frames."""
        return len(self.times)

    def joint_poses(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """World rotation (B, 3, 3) and position (B, 3) of every joint at ``frame`` (Z-up world)."""
        rot = self.local_rotmat[frame]
        pos = self.local_position[frame]
        B = len(self.parents)
        g_rot = np.empty((B, 3, 3))
        g_pos = np.empty((B, 3))
        for j in range(B):  # parents come first (checked on load)
            p = self.parents[j]
            if p < 0:
                g_rot[j] = Y_UP_TO_Z_UP @ rot[j]
                g_pos[j] = Y_UP_TO_Z_UP @ pos[j]
            else:
                g_rot[j] = g_rot[p] @ rot[j]
                g_pos[j] = g_rot[p] @ pos[j] + g_pos[p]
        return g_rot, g_pos

    def vertices_at(self, frame: int) -> np.ndarray:
        """(V, 3) the skinned mesh at ``frame`` (linear blend skinning), Z-up world."""
        g_rot, g_pos = self.joint_poses(frame)
        # skin matrix of joint j: G_j @ inverse(bind_j)
        s_rot = g_rot @ np.transpose(self.bind_rotmat, (0, 2, 1))
        s_pos = g_pos - np.einsum("bij,bj->bi", s_rot, self.bind_position)
        per_joint = np.einsum("bij,vj->vbi", s_rot, self.vertices) + s_pos[None]
        return np.einsum("vb,vbi->vi", self.weights, per_joint)

    def frame_at(self, time_s: float) -> int:
        """The sampled frame nearest ``time_s``."""
        return int(np.clip(np.searchsorted(self.times, time_s - 0.5 * self._step()), 0, self.num_frames - 1))

    def _step(self) -> float:
        return float(np.median(np.diff(self.times))) if self.num_frames > 1 else 0.0


def _accessor(gltf, blob: bytes, index: int) -> np.ndarray:
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    dtype = np.dtype(_COMPONENTS[acc.componentType])
    width = _WIDTH[acc.type]
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    stride = view.byteStride or dtype.itemsize * width
    if stride == dtype.itemsize * width:
        arr = np.frombuffer(blob, dtype=dtype, count=acc.count * width, offset=start).reshape(acc.count, width)
    else:
        raw = np.frombuffer(blob, dtype=np.uint8, count=stride * (acc.count - 1) + dtype.itemsize * width, offset=start)
        arr = np.stack([raw[i * stride:i * stride + dtype.itemsize * width].view(dtype) for i in range(acc.count)])
    return arr.reshape(acc.count, 4, 4).transpose(0, 2, 1) if acc.type == "MAT4" else arr


def _sample(times: np.ndarray, keys: np.ndarray, values: np.ndarray, rotation: bool) -> np.ndarray:
    """Linear (slerp for rotations) interpolation of keyframes at ``times``, held at the ends."""
    if len(keys) == 1:
        return np.repeat(values[:1], len(times), axis=0)
    t = np.clip(times, keys[0], keys[-1])
    if rotation:
        return Slerp(keys, Rotation.from_quat(values))(t).as_matrix()
    return np.stack([np.interp(t, keys, values[:, k]) for k in range(values.shape[1])], axis=1)


def load_skinned_glb(path: str | Path, times: np.ndarray | None = None) -> SkinnedClip:
    """Read a skinned, animated GLB and sample its first animation at ``times`` (default: its own key times).

    Raises :class:`SkinnedClipError` naming the file when it has no skinned mesh or no animation.
    """
    import pygltflib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run `mocap export` on the take (the glb format) to write it")
    try:
        gltf = pygltflib.GLTF2().load(str(path))
        blob = gltf.binary_blob()
    except Exception as e:  # noqa: BLE001 - pygltflib raises many kinds on a damaged file
        raise SkinnedClipError(f"{path} cannot be read as glTF binary ({type(e).__name__}: {e}); "
                               f"re-run `mocap export --overwrite`") from e
    mesh_nodes = [n for n in gltf.nodes if n.mesh is not None and n.skin is not None]
    if not mesh_nodes or not gltf.animations or blob is None:
        raise SkinnedClipError(f"{path} holds no skinned, animated mesh; export it with the avatar on "
                               f"(`mocap export` with a rig other than `body`)")
    node = mesh_nodes[0]
    skin = gltf.skins[node.skin]
    prim = gltf.meshes[node.mesh].primitives[0]
    vertices = _accessor(gltf, blob, prim.attributes.POSITION).astype(float) @ Y_UP_TO_Z_UP.T
    faces = _accessor(gltf, blob, prim.indices).reshape(-1, 3).astype(np.int64)
    joints = _accessor(gltf, blob, prim.attributes.JOINTS_0).astype(np.int64)
    w = _accessor(gltf, blob, prim.attributes.WEIGHTS_0).astype(float)
    B = len(skin.joints)
    weights = np.zeros((len(vertices), B))
    np.add.at(weights, (np.repeat(np.arange(len(vertices)), 4), joints.ravel()), w.ravel())
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    ibm = _accessor(gltf, blob, skin.inverseBindMatrices).astype(float)
    bind = np.linalg.inv(ibm)
    bind_rot = Y_UP_TO_Z_UP @ bind[:, :3, :3]
    bind_pos = bind[:, :3, 3] @ Y_UP_TO_Z_UP.T

    node_to_joint = {n: j for j, n in enumerate(skin.joints)}
    parents = np.full(B, -1, dtype=np.int64)
    for j, n in enumerate(skin.joints):
        for c in gltf.nodes[n].children or []:
            if c in node_to_joint:
                parents[node_to_joint[c]] = j
    if any(parents[j] >= j for j in range(B)):
        raise SkinnedClipError(f"{path}: the skin lists a joint before its parent; re-export with `mocap export`")

    anim = gltf.animations[0]
    key_sets = [_accessor(gltf, blob, anim.samplers[c.sampler].input)[:, 0].astype(float) for c in anim.channels]
    own_times = np.unique(np.concatenate(key_sets)) if key_sets else np.zeros(1)
    times = own_times if times is None else np.asarray(times, dtype=float)
    T = len(times)
    rest_rot = np.empty((B, 3, 3))
    rest_pos = np.empty((B, 3))
    for j, n in enumerate(skin.joints):
        nd = gltf.nodes[n]
        rest_rot[j] = Rotation.from_quat(nd.rotation).as_matrix() if nd.rotation else np.eye(3)
        rest_pos[j] = nd.translation if nd.translation else 0.0
    local_rot = np.repeat(rest_rot[None], T, axis=0)
    local_pos = np.repeat(rest_pos[None], T, axis=0)
    for c, keys in zip(anim.channels, key_sets, strict=True):
        j = node_to_joint.get(c.target.node)
        if j is None or c.target.path not in ("rotation", "translation"):
            continue
        values = _accessor(gltf, blob, anim.samplers[c.sampler].output).astype(float)
        if c.target.path == "rotation":
            local_rot[:, j] = _sample(times, keys, values, rotation=True)
        else:
            local_pos[:, j] = _sample(times, keys, values, rotation=False)
    names = tuple(gltf.nodes[n].name or f"joint_{j}" for j, n in enumerate(skin.joints))
    return SkinnedClip(vertices=vertices, faces=faces, weights=weights, parents=parents, names=names,
                       bind_rotmat=bind_rot, bind_position=bind_pos, local_rotmat=local_rot, local_position=local_pos,
                       times=times)
