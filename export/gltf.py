"""glTF 2.0 / GLB writer (pygltflib): skeleton as nodes, skinned mesh, and the animation.

The file is Y-up in metres, as glTF requires (``asset.extras`` says so too). One node per joint carries the
rest offset as its translation; the animation has a rotation channel per joint and a translation channel for
the root, sampled at every frame with LINEAR interpolation (a key per frame, so the pose at each frame is
exact). The skinned mesh's inverse bind matrices are the inverses of the joints' rest world transforms.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pygltflib as gl
from mocap_studio.common.fileio import atomic_path
from mocap_studio.export.mesh import SkinnedMesh, vertex_normals
from mocap_studio.export.motion import Z_UP_TO_Y_UP, Motion
from mocap_studio.reconstruction.body.io import checked_mesh

log = logging.getLogger(__name__)


class _Buffer:
    """Accumulates binary data for one glTF buffer, 4-byte aligned, and makes views and accessors."""

    def __init__(self, doc: gl.GLTF2) -> None:
        self.doc = doc
        self.chunks: list[bytes] = []
        self.size = 0

    def add(
        self,
        data: np.ndarray,
        component: int,
        kind: str,
        target: int | None = None,
        minmax: bool = False,
        normalized: bool = False,
    ) -> int:
        raw = np.ascontiguousarray(data).tobytes()
        view = gl.BufferView(buffer=0, byteOffset=self.size, byteLength=len(raw), target=target)
        self.chunks.append(raw)
        self.size += len(raw)
        pad = (-self.size) % 4
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        self.doc.bufferViews.append(view)
        count = data.shape[0]
        acc = gl.Accessor(
            bufferView=len(self.doc.bufferViews) - 1,
            componentType=component,
            count=count,
            type=kind,
            normalized=normalized or None,
        )
        if minmax:
            flat = data.reshape(count, -1)
            acc.min = [float(x) for x in flat.min(0)]
            acc.max = [float(x) for x in flat.max(0)]
        self.doc.accessors.append(acc)
        return len(self.doc.accessors) - 1

    def blob(self) -> bytes:
        return b"".join(self.chunks)


def build_gltf(motion: Motion, mesh: SkinnedMesh | None = None, name: str = "") -> gl.GLTF2:
    """The glTF document (with its binary blob set) for ``motion`` and an optional skinned ``mesh``."""
    motion.check_finite(name or "motion")
    if mesh is not None:
        mesh.check_skeleton(motion)
    m = motion.transformed(Z_UP_TO_Y_UP)
    doc = gl.GLTF2(asset=gl.Asset(version="2.0", generator="mocap-studio"))
    doc.asset.extras = {"up_axis": "Y", "units": "metres", "source_frame": "mocap-studio Z-up world"}
    buf = _Buffer(doc)
    n_joints = m.num_joints
    rest_world = m.rest_positions_m()
    for j in range(n_joints):
        node = gl.Node(name=m.joint_names[j], translation=[float(x) for x in m.rest_offsets_m[j]])
        node.children = m.children(j) or []
        doc.nodes.append(node)
    scene_nodes = [0]
    if mesh is not None:
        mesh4 = mesh.top_k(4)
        verts = (mesh4.vertices_m @ Z_UP_TO_Y_UP.T).astype(np.float32)
        weights = mesh4.joint_weights.astype(np.float32)
        weights /= weights.sum(1, keepdims=True)
        joints = np.where(weights > 0, mesh4.joint_indices, 0).astype(np.uint16)
        prim = gl.Primitive(
            attributes=gl.Attributes(
                POSITION=buf.add(verts, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, minmax=True),
                NORMAL=buf.add(
                    vertex_normals(verts.astype(float), mesh4.faces).astype(np.float32),
                    gl.FLOAT,
                    gl.VEC3,
                    gl.ARRAY_BUFFER,
                ),
                JOINTS_0=buf.add(joints, gl.UNSIGNED_SHORT, gl.VEC4, gl.ARRAY_BUFFER),
                WEIGHTS_0=buf.add(weights, gl.FLOAT, gl.VEC4, gl.ARRAY_BUFFER),
            ),
            indices=buf.add(
                mesh4.faces.astype(np.uint32).reshape(-1), gl.UNSIGNED_INT, gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER
            ),
        )
        doc.meshes.append(gl.Mesh(name="body", primitives=[prim]))
        ibm = np.broadcast_to(np.eye(4, dtype=np.float32), (n_joints, 4, 4)).copy()
        ibm[:, :3, 3] = -rest_world
        # glTF matrices are column-major: store the transpose of each row-major matrix
        ibm_acc = buf.add(
            np.ascontiguousarray(ibm.transpose(0, 2, 1)).reshape(n_joints, 16), gl.FLOAT, gl.MAT4
        )
        doc.skins.append(
            gl.Skin(name="skeleton", joints=list(range(n_joints)), inverseBindMatrices=ibm_acc, skeleton=0)
        )
        doc.nodes.append(gl.Node(name="body", mesh=0, skin=0))
        scene_nodes.append(len(doc.nodes) - 1)
    doc.scenes.append(gl.Scene(name=name or m.name or "scene", nodes=scene_nodes))
    doc.scene = 0
    if m.num_frames:
        _add_animation(doc, buf, m)
    blob = buf.blob()
    doc.buffers.append(gl.Buffer(byteLength=len(blob)))
    doc.set_binary_blob(blob)
    return doc


def _add_animation(doc: gl.GLTF2, buf: _Buffer, m: Motion) -> None:
    times = (np.arange(m.num_frames) / m.frame_rate).astype(np.float32)
    t_acc = buf.add(times, gl.FLOAT, gl.SCALAR, minmax=True)
    quat = m.local_quat_wxyz[..., [1, 2, 3, 0]].astype(np.float32)  # glTF wants x, y, z, w
    quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
    anim = gl.Animation(name=m.name or "motion")
    root_t = buf.add(m.root_translation_m.astype(np.float32), gl.FLOAT, gl.VEC3)
    anim.samplers.append(gl.AnimationSampler(input=t_acc, output=root_t, interpolation="LINEAR"))
    anim.channels.append(
        gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(node=0, path="translation"))
    )
    for j in range(m.num_joints):
        acc = buf.add(np.ascontiguousarray(quat[:, j]), gl.FLOAT, gl.VEC4)
        anim.samplers.append(gl.AnimationSampler(input=t_acc, output=acc, interpolation="LINEAR"))
        anim.channels.append(
            gl.AnimationChannel(
                sampler=len(anim.samplers) - 1, target=gl.AnimationChannelTarget(node=j, path="rotation")
            )
        )
    doc.animations.append(anim)


def write_glb(path: str | os.PathLike, motion: Motion, mesh: SkinnedMesh | None = None) -> Path:
    """Write a binary glTF (.glb) with the skeleton, optional skinned mesh and the animation."""
    path = Path(path)
    doc = build_gltf(motion, mesh, name=path.stem)
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"".join(doc.save_to_bytes()))
    log.debug("wrote %s", path)
    return path


def write_mesh_glb(path: str | os.PathLike, vertices_m: np.ndarray, faces: np.ndarray) -> Path:
    """A static mesh as GLB: ``vertices_m`` (V, 3) metres in the Z-up world, ``faces`` (F, 3)."""
    v, f = checked_mesh(vertices_m, faces, path)
    doc = gl.GLTF2(asset=gl.Asset(version="2.0", generator="mocap-studio"))
    doc.asset.extras = {"up_axis": "Y", "units": "metres"}
    buf = _Buffer(doc)
    verts = (v @ Z_UP_TO_Y_UP.T).astype(np.float32)
    prim = gl.Primitive(
        attributes=gl.Attributes(
            POSITION=buf.add(verts, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, minmax=True),
            NORMAL=buf.add(
                vertex_normals(verts.astype(float), f).astype(np.float32), gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER
            ),
        ),
        indices=buf.add(f.astype(np.uint32).reshape(-1), gl.UNSIGNED_INT, gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER),
    )
    doc.meshes.append(gl.Mesh(name="mesh", primitives=[prim]))
    doc.nodes.append(gl.Node(name="mesh", mesh=0))
    doc.scenes.append(gl.Scene(nodes=[0]))
    doc.scene = 0
    blob = buf.blob()
    doc.buffers.append(gl.Buffer(byteLength=len(blob)))
    doc.set_binary_blob(blob)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"".join(doc.save_to_bytes()))
    return path


def _read_accessor(doc: gl.GLTF2, blob: bytes, acc_index: int) -> np.ndarray:
    acc = doc.accessors[acc_index]
    view = doc.bufferViews[acc.bufferView]
    width = {gl.SCALAR: 1, gl.VEC3: 3, gl.VEC4: 4, gl.MAT4: 16}[acc.type]
    dtype = {gl.FLOAT: "<f4", gl.UNSIGNED_SHORT: "<u2", gl.UNSIGNED_INT: "<u4", gl.UNSIGNED_BYTE: "u1"}[acc.componentType]
    arr = np.frombuffer(blob, dtype, acc.count * width, (view.byteOffset or 0) + (acc.byteOffset or 0))
    return arr.reshape(acc.count, width).astype(float)


def _evaluate_glb(path: str | os.PathLike) -> tuple[gl.GLTF2, bytes, list[int], np.ndarray, np.ndarray]:
    """A GLB written here evaluated at each animation key: the document, its blob, the joint nodes, and their
    world rotations (T, J, 3, 3) and positions (T, J, 3) in the file's Y-up metres (nodes, TRS, one animation)."""
    from mocap_studio.common.rotations import quat_wxyz_to_rotmat

    doc = gl.GLTF2().load(str(path))
    blob = doc.binary_blob()
    skin = doc.skins[0] if doc.skins else None
    joint_nodes = skin.joints if skin else [i for i, n in enumerate(doc.nodes) if n.mesh is None]
    anim = doc.animations[0]
    n_keys = doc.accessors[anim.samplers[0].input].count
    trans = {
        i: np.tile(np.array(n.translation or [0, 0, 0], float), (n_keys, 1)) for i, n in enumerate(doc.nodes)
    }
    rots = {
        i: np.tile(np.array(n.rotation or [0, 0, 0, 1], float), (n_keys, 1)) for i, n in enumerate(doc.nodes)
    }
    for ch in anim.channels:
        out = _read_accessor(doc, blob, anim.samplers[ch.sampler].output)
        (trans if ch.target.path == "translation" else rots)[ch.target.node] = out
    parent = {c: i for i, n in enumerate(doc.nodes) for c in (n.children or [])}
    world_r: dict[int, np.ndarray] = {}
    world_t: dict[int, np.ndarray] = {}

    def solve(i: int) -> None:
        if i in world_t:
            return
        r = quat_wxyz_to_rotmat(rots[i][:, [3, 0, 1, 2]])
        if i in parent:
            solve(parent[i])
            p = parent[i]
            world_r[i] = world_r[p] @ r
            world_t[i] = world_t[p] + np.einsum("tab,tb->ta", world_r[p], trans[i])
        else:
            world_r[i], world_t[i] = r, trans[i]

    for i in joint_nodes:
        solve(i)
    return (doc, blob, list(joint_nodes), np.stack([world_r[i] for i in joint_nodes], axis=1),
            np.stack([world_t[i] for i in joint_nodes], axis=1))


def read_glb_joint_positions(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Evaluate a GLB written here at each animation key: joint names and world positions (T, J, 3) in
    the file's Y-up metres. A small independent reader for tests (nodes, TRS, one animation)."""
    doc, _, joint_nodes, _, pos = _evaluate_glb(path)
    return [doc.nodes[i].name for i in joint_nodes], pos


def read_glb_skinned_vertices(path: str | os.PathLike, frames: np.ndarray) -> np.ndarray:
    """The skinned mesh of a GLB written here as the file deforms it at animation keys ``frames`` (N,): vertices
    (N, V, 3) in the file's Y-up metres, from its own joints, inverse bind matrices, JOINTS_0 and WEIGHTS_0
    (glTF's skinning: sum of weight * jointWorld @ inverseBind, the mesh node's own transform ignored as the
    spec says)."""
    doc, blob, _, rot, pos = _evaluate_glb(path)
    if not doc.skins or not doc.meshes:
        raise ValueError(f"{path}: no skinned mesh")
    attrs = doc.meshes[0].primitives[0].attributes
    verts = _read_accessor(doc, blob, attrs.POSITION)
    joints = _read_accessor(doc, blob, attrs.JOINTS_0).astype(int)
    weights = _read_accessor(doc, blob, attrs.WEIGHTS_0)
    ibm = _read_accessor(doc, blob, doc.skins[0].inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    frames = np.asarray(frames)
    world = np.zeros((len(frames), rot.shape[1], 4, 4))
    world[..., :3, :3], world[..., :3, 3], world[..., 3, 3] = rot[frames], pos[frames], 1.0
    mats = world @ ibm  # (N, J, 4, 4)
    v = np.c_[verts, np.ones(len(verts))]
    return np.einsum("vk,nvkab,vb->nva", weights, mats[:, joints], v)[..., :3]
