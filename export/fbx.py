"""FBX binary (7.4) writer, written from the format's public description; no SDK, no Blender.

File layout: a 27-byte header (``Kaydara FBX Binary  \\0``, 0x1A 0x00, version), then node records, each
``end offset (u32), property count (u32), property bytes (u32), name length (u8), name, properties, child
records, 13-byte null record``, a null record after the last top-level node, and a footer. Properties are
typed by one letter (``C`` bool, ``I`` int32, ``L`` int64, ``D`` float64, ``S`` string, ``R`` raw bytes;
``i l f d`` arrays, zlib-compressed when large).

Scene: a ``Null`` model (the armature) holding the skeleton as ``LimbNode`` models, one per joint, with their
rest offsets as ``Lcl Translation``; optionally a ``Mesh`` model whose geometry has a ``Skin`` deformer with
one ``Cluster`` per joint (vertex indices, weights, ``Transform`` and ``TransformLink`` = the joint's rest
world matrix); a ``BindPose``; and one animation stack whose curves key every frame (``Lcl Rotation`` as
XYZ Euler degrees on every joint, ``Lcl Translation`` on the root). Axes and units are stated in
``GlobalSettings`` (``UpAxis``, ``FrontAxis``, ``CoordAxis``, ``UnitScaleFactor`` in centimetres per unit):
by default Y up, centimetres, the layout Unity, Unreal and Blender import without conversion settings.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mocap_studio.common.fileio import atomic_path
from mocap_studio.common.rotations import rotmat_to_euler
from mocap_studio.export.mesh import SkinnedMesh, vertex_normals
from mocap_studio.export.motion import Z_UP_TO_Y_UP, Motion, unwrap_degrees

log = logging.getLogger(__name__)

FBX_VERSION = 7400
KTIME_PER_SECOND = 46186158000
"""FBX time unit: ticks per second."""
_HEADER = b"Kaydara FBX Binary  \x00\x1a\x00"
_NULL_RECORD = b"\x00" * 13
_FOOTER_ID = bytes.fromhex("fabcab09d0c8d466b176fb831cf7267e")
_FOOTER_MAGIC = bytes.fromhex("f85a8c6adef5d97eece90ce3758f290b")
_FILE_ID = bytes.fromhex("28b32a0db0d7c8d1f3a6c31e8cf1b8a2")
_CREATION_TIME = "1970-01-01 10:00:00:000"
_COMPRESS_MIN_BYTES = 128


# ---------------------------------------------------------------- the binary node tree
@dataclass
class _Prop:
    code: str
    value: object


@dataclass
class Node:
    """One FBX node record: a name, typed properties and child nodes."""

    name: str
    props: list[_Prop] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)

    def add(self, name: str, *values: object) -> Node:
        """Append a child whose properties are inferred from Python values (see :func:`_infer`)."""
        child = Node(name, [_infer(v) for v in values])
        self.children.append(child)
        return child


def _infer(value: object) -> _Prop:
    if isinstance(value, _Prop):
        return value
    if isinstance(value, bool):
        return _Prop("C", value)
    if isinstance(value, int):
        return _Prop("I" if -(2**31) <= value < 2**31 else "L", value)
    if isinstance(value, float):
        return _Prop("D", value)
    if isinstance(value, str):
        return _Prop("S", value.encode("utf-8"))
    if isinstance(value, bytes):
        return _Prop("R", value)
    if isinstance(value, np.ndarray):
        code = {"f": {4: "f", 8: "d"}, "i": {4: "i", 8: "l"}}[value.dtype.kind][value.dtype.itemsize]
        return _Prop(code, value)
    raise TypeError(f"no FBX property type for {type(value).__name__}")


def L(value: int) -> _Prop:  # noqa: N802 - FBX's own type letter
    """An int64 property (object ids, times)."""
    return _Prop("L", int(value))


def _encode_prop(prop: _Prop) -> bytes:
    code, v = prop.code, prop.value
    if code == "C":
        return b"C" + struct.pack("<?", bool(v))
    if code == "Y":
        return b"Y" + struct.pack("<h", v)
    if code == "I":
        return b"I" + struct.pack("<i", v)
    if code == "L":
        return b"L" + struct.pack("<q", v)
    if code == "F":
        return b"F" + struct.pack("<f", v)
    if code == "D":
        return b"D" + struct.pack("<d", v)
    if code in "SR":
        assert isinstance(v, bytes)
        return code.encode() + struct.pack("<I", len(v)) + v
    dtype = {"f": "<f4", "d": "<f8", "i": "<i4", "l": "<i8", "b": "u1"}[code]
    arr = np.ascontiguousarray(np.asarray(v).ravel(), dtype=dtype)
    raw = arr.tobytes()
    if len(raw) >= _COMPRESS_MIN_BYTES:
        data = zlib.compress(raw, 6)
        return code.encode() + struct.pack("<III", arr.size, 1, len(data)) + data
    return code.encode() + struct.pack("<III", arr.size, 0, len(raw)) + raw


def _encode_node(node: Node, offset: int, out: list[bytes]) -> int:
    """Append the record's bytes to ``out`` given its absolute file ``offset``; return the end offset."""
    name = node.name.encode("ascii")
    props = b"".join(_encode_prop(p) for p in node.props)
    head_len = 13 + len(name)
    slot = len(out)
    out.append(b"")  # the header, filled in once the end offset is known
    out.append(props)
    pos = offset + head_len + len(props)
    for child in node.children:
        pos = _encode_node(child, pos, out)
    if node.children or not node.props:
        out.append(_NULL_RECORD)
        pos += len(_NULL_RECORD)
    out[slot] = struct.pack("<IIIB", pos, len(node.props), len(props), len(name)) + name
    return pos


def encode_fbx(top_level: list[Node], version: int = FBX_VERSION) -> bytes:
    """The complete binary file for ``top_level`` nodes (version 7400: 32-bit record offsets)."""
    out: list[bytes] = [_HEADER + struct.pack("<I", version)]
    pos = len(out[0])
    for node in top_level:
        pos = _encode_node(node, pos, out)
    out.append(_NULL_RECORD)
    pos += len(_NULL_RECORD)
    out.append(_FOOTER_ID)
    pos += len(_FOOTER_ID)
    pad = (-pos) % 16 or 16
    out.append(
        b"\x00" * pad + struct.pack("<I", 0) + struct.pack("<I", version) + b"\x00" * 120 + _FOOTER_MAGIC
    )
    data = b"".join(out)
    if len(data) >= 2**32:
        raise ValueError("FBX 7.4 files are limited to 4 GiB; export fewer frames or a smaller mesh")
    return data


# ---------------------------------------------------------------- Properties70 helpers
def _p70(parent: Node) -> Node:
    return parent.add("Properties70")


def _p(props: Node, name: str, type_: str, label: str, flags: str, *values: object) -> None:
    props.add("P", name, type_, label, flags, *values)


def _matrix16(mat4: np.ndarray) -> np.ndarray:
    """FBX stores 4x4 matrices column by column (translation in elements 12..14)."""
    return np.ascontiguousarray(np.asarray(mat4, float).T).reshape(16)


def _translation4(t: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = t
    return m


# ---------------------------------------------------------------- the scene
@dataclass(frozen=True)
class FbxAxes:
    """A target's axis and unit convention, written to GlobalSettings."""

    up: str = "Y"
    """'Y' (Unity, Unreal's importer default, Maya, Blender's FBX default) or 'Z'."""
    unit_m: float = 0.01
    """Metres per file unit: 0.01 = centimetres (FBX's own default), 1.0 = metres."""

    def basis(self) -> np.ndarray:
        """(3, 3) rotation from our Z-up world to the file's up axis (ValueError for an axis other than Y or Z)."""
        if self.up.upper() == "Y":
            return Z_UP_TO_Y_UP
        if self.up.upper() == "Z":
            return np.eye(3)
        raise ValueError(f"up must be 'Y' or 'Z', got {self.up!r}")


# the class written after an object's name where it differs from the node name (readers check it)
_NAME_CLASS = {
    ("AnimationStack", ""): "AnimStack",
    ("AnimationLayer", ""): "AnimLayer",
    ("AnimationCurveNode", ""): "AnimCurveNode",
    ("AnimationCurve", ""): "AnimCurve",
    ("Deformer", "Cluster"): "SubDeformer",
}


class _Ids:
    def __init__(self) -> None:
        self.next = 1_000_000

    def __call__(self) -> int:
        self.next += 1
        return self.next


def _euler_xyz_deg(rot: np.ndarray) -> np.ndarray:
    """FBX ``eEulerXYZ`` (R = Rz @ Ry @ Rx) in degrees: (..., 3, 3) -> (..., 3) as (x, y, z), unwrapped."""
    zyx = rotmat_to_euler(rot, "ZYX")
    return unwrap_degrees(np.degrees(zyx[..., ::-1]))


def build_fbx(
    motion: Motion,
    mesh: SkinnedMesh | None = None,
    axes: FbxAxes = FbxAxes(),
    take_name: str = "Take 001",
    armature_name: str = "Armature",
) -> list[Node]:
    """The top-level FBX nodes for ``motion`` (and an optional skinned ``mesh``) in ``axes``."""
    motion.check_finite(take_name)
    if mesh is not None:
        mesh.check_skeleton(motion)
    basis = axes.basis()
    m = motion.transformed(basis, scale=1.0 / axes.unit_m)
    ids = _Ids()
    objects = Node("Objects")
    conns = Node("Connections")
    counts: dict[str, int] = {}

    def connect(kind: str, child: int, parent: int, prop: str | None = None) -> None:
        if prop is None:
            conns.add("C", kind, L(child), L(parent))
        else:
            conns.add("C", kind, L(child), L(parent), prop)

    def obj(cls: str, obj_id: int, name: str, sub: str) -> Node:
        counts[cls] = counts.get(cls, 0) + 1
        return objects.add(cls, L(obj_id), f"{name}\x00\x01{_NAME_CLASS.get((cls, sub), cls)}", sub)

    # armature (a Null) and bones
    arm_id, arm_attr = ids(), ids()
    attr = obj("NodeAttribute", arm_attr, armature_name, "Null")
    attr.add("TypeFlags", "Null")
    model = obj("Model", arm_id, armature_name, "Null")
    _model_props(model, np.zeros(3))
    connect("OO", arm_attr, arm_id)
    connect("OO", arm_id, 0)
    bone_ids = [ids() for _ in range(m.num_joints)]
    for j, name in enumerate(m.joint_names):
        attr_id = ids()
        attr = obj("NodeAttribute", attr_id, name, "LimbNode")
        attr.add("TypeFlags", "Skeleton")
        model = obj("Model", bone_ids[j], name, "LimbNode")
        _model_props(model, m.rest_offsets_m[j])
        connect("OO", attr_id, bone_ids[j])
        connect("OO", bone_ids[j], arm_id if j == 0 else bone_ids[m.parents[j]])
    rest_world = np.array([_translation4(p) for p in m.rest_positions_m()])
    pose_nodes: list[tuple[int, np.ndarray]] = [(arm_id, np.eye(4))] + list(
        zip(bone_ids, rest_world, strict=True)
    )
    if mesh is not None:
        mesh_id = _add_mesh(objects, obj, connect, ids, mesh, basis, axes.unit_m, bone_ids, rest_world)
        pose_nodes.insert(0, (mesh_id, np.eye(4)))
    pose_id = ids()
    pose = obj("Pose", pose_id, "BindPose", "BindPose")
    pose.add("Type", "BindPose")
    pose.add("Version", 100)
    pose.add("NbPoseNodes", len(pose_nodes))
    for node_id, mat in pose_nodes:
        pn = pose.add("PoseNode")
        pn.add("Node", L(node_id))
        pn.add("Matrix", _matrix16(mat))
    stop = _add_animation(objects, obj, connect, ids, m, bone_ids, take_name)
    definitions = Node("Definitions")
    definitions.add("Version", 100)
    definitions.add("Count", sum(counts.values()) + 1)
    definitions.add("ObjectType", "GlobalSettings").add("Count", 1)
    for cls, n in counts.items():
        definitions.add("ObjectType", cls).add("Count", n)
    return [
        _header_extension(),
        Node("FileId", [_Prop("R", _FILE_ID)]),
        Node("CreationTime", [_infer(_CREATION_TIME)]),
        Node("Creator", [_infer("mocap-studio")]),
        _global_settings(axes, m.frame_rate, stop),
        _documents(take_name),
        Node("References"),
        definitions,
        objects,
        conns,
        _takes(take_name, stop),
    ]


def _model_props(model: Node, translation: np.ndarray) -> None:
    model.add("Version", 232)
    props = _p70(model)
    _p(props, "RotationActive", "bool", "", "", 1)
    _p(props, "InheritType", "enum", "", "", 1)
    _p(props, "ScalingMax", "Vector3D", "Vector", "", 0.0, 0.0, 0.0)
    _p(props, "DefaultAttributeIndex", "int", "Integer", "", 0)
    _p(props, "Lcl Translation", "Lcl Translation", "", "A", *(float(x) for x in translation))
    _p(props, "Lcl Rotation", "Lcl Rotation", "", "A", 0.0, 0.0, 0.0)
    _p(props, "Lcl Scaling", "Lcl Scaling", "", "A", 1.0, 1.0, 1.0)
    model.add("Shading", True)
    model.add("Culling", "CullingOff")


def _add_mesh(
    objects: Node,
    obj,
    connect,
    ids: _Ids,
    mesh: SkinnedMesh,
    basis: np.ndarray,
    unit_m: float,
    bone_ids: list[int],
    rest_world: np.ndarray,
) -> int:
    geom_id, mesh_id, skin_id = ids(), ids(), ids()
    geom = obj("Geometry", geom_id, "Body", "Mesh")
    verts = mesh.vertices_m @ basis.T / unit_m
    geom.add("Vertices", np.ascontiguousarray(verts, dtype=np.float64))
    poly = mesh.faces.astype(np.int32).copy()
    poly[:, 2] = -poly[:, 2] - 1  # the last index of each polygon is stored as its bitwise complement
    geom.add("PolygonVertexIndex", poly.reshape(-1))
    geom.add("GeometryVersion", 124)
    normals = geom.add("LayerElementNormal", 0)
    normals.add("Version", 101)
    normals.add("Name", "")
    normals.add("MappingInformationType", "ByVertice")
    normals.add("ReferenceInformationType", "Direct")
    normals.add("Normals", np.ascontiguousarray(vertex_normals(verts, mesh.faces), dtype=np.float64))
    layer = geom.add("Layer", 0)
    layer.add("Version", 100)
    element = layer.add("LayerElement")
    element.add("Type", "LayerElementNormal")
    element.add("TypedIndex", 0)
    model = obj("Model", mesh_id, "Body", "Mesh")
    _model_props(model, np.zeros(3))
    connect("OO", geom_id, mesh_id)
    connect("OO", mesh_id, 0)
    skin = obj("Deformer", skin_id, "Skin", "Skin")
    skin.add("Version", 101)
    skin.add("Link_DeformAcuracy", 50.0)
    connect("OO", skin_id, geom_id)
    dense = mesh.dense_weights(len(bone_ids))
    for j, bone_id in enumerate(bone_ids):
        verts_j = np.flatnonzero(dense[:, j] > 0)
        if verts_j.size == 0:
            continue
        cluster_id = ids()
        cluster = obj("Deformer", cluster_id, f"Cluster {j}", "Cluster")
        cluster.add("Version", 100)
        cluster.add("UserData", "", "")
        cluster.add("Indexes", verts_j.astype(np.int32))
        cluster.add("Weights", dense[verts_j, j].astype(np.float64))
        # Transform: mesh space -> bone space at bind time; TransformLink: the bone's bind world matrix
        cluster.add("Transform", _matrix16(np.linalg.inv(rest_world[j])))
        cluster.add("TransformLink", _matrix16(rest_world[j]))
        connect("OO", cluster_id, skin_id)
        connect("OO", bone_id, cluster_id)
    return mesh_id


def _add_animation(
    objects: Node, obj, connect, ids: _Ids, m: Motion, bone_ids: list[int], take_name: str
) -> int:
    n_frames = m.num_frames
    ticks = np.round(np.arange(n_frames) * (KTIME_PER_SECOND / m.frame_rate)).astype(np.int64)
    stop = int(ticks[-1]) if n_frames else 0
    stack_id, layer_id = ids(), ids()
    stack = obj("AnimationStack", stack_id, take_name, "")
    props = _p70(stack)
    for key in ("LocalStart", "ReferenceStart"):
        _p(props, key, "KTime", "Time", "", L(0))
    for key in ("LocalStop", "ReferenceStop"):
        _p(props, key, "KTime", "Time", "", L(stop))
    obj("AnimationLayer", layer_id, "BaseLayer", "")
    connect("OO", layer_id, stack_id)
    euler = _euler_xyz_deg(m.local_rotmat)  # (T, J, 3)
    flags = np.array([0x00000004 | 0x00000100], np.int32)  # linear interpolation, constant-free
    attr_data = np.zeros(4, np.float32)
    refcount = np.array([n_frames], np.int32)

    def curve_node(kind: str, target: int, prop: str, values: np.ndarray) -> None:
        node_id = ids()
        cn = obj("AnimationCurveNode", node_id, kind, "")
        cprops = _p70(cn)
        for axis in range(3):
            _p(cprops, f"d|{'XYZ'[axis]}", "Number", "", "A", float(values[0, axis]))
        connect("OO", node_id, layer_id)
        connect("OP", node_id, target, prop)
        for axis in range(3):
            curve_id = ids()
            curve = obj("AnimationCurve", curve_id, "", "")
            curve.add("Default", float(values[0, axis]))
            curve.add("KeyVer", 4008)
            curve.add("KeyTime", ticks)
            curve.add("KeyValueFloat", values[:, axis].astype(np.float32))
            curve.add("KeyAttrFlags", flags)
            curve.add("KeyAttrDataFloat", attr_data)
            curve.add("KeyAttrRefCount", refcount)
            connect("OP", curve_id, node_id, f"d|{'XYZ'[axis]}")

    if n_frames:
        curve_node("T", bone_ids[0], "Lcl Translation", m.root_translation_m)
        for j in range(m.num_joints):
            curve_node("R", bone_ids[j], "Lcl Rotation", euler[:, j])
    return stop


def _header_extension() -> Node:
    ext = Node("FBXHeaderExtension")
    ext.add("FBXHeaderVersion", 1003)
    ext.add("FBXVersion", FBX_VERSION)
    ext.add("EncryptionType", 0)
    stamp = ext.add("CreationTimeStamp")
    for key, value in (
        ("Version", 1000),
        ("Year", 1970),
        ("Month", 1),
        ("Day", 1),
        ("Hour", 10),
        ("Minute", 0),
        ("Second", 0),
        ("Millisecond", 0),
    ):
        stamp.add(key, value)
    ext.add("Creator", "mocap-studio")
    return ext


def _global_settings(axes: FbxAxes, frame_rate: float, stop: int) -> Node:
    gs = Node("GlobalSettings")
    gs.add("Version", 1000)
    props = _p70(gs)
    up_y = axes.up.upper() == "Y"
    # Y up: front +Z, right +X (Maya/Unity/Blender-FBX default); Z up: front -Y, right +X (Blender/3ds Max)
    for name, value in (
        ("UpAxis", 1 if up_y else 2),
        ("UpAxisSign", 1),
        ("FrontAxis", 2 if up_y else 1),
        ("FrontAxisSign", 1 if up_y else -1),
        ("CoordAxis", 0),
        ("CoordAxisSign", 1),
        ("OriginalUpAxis", 1 if up_y else 2),
        ("OriginalUpAxisSign", 1),
    ):
        _p(props, name, "int", "Integer", "", value)
    _p(props, "UnitScaleFactor", "double", "Number", "", axes.unit_m * 100.0)
    _p(props, "OriginalUnitScaleFactor", "double", "Number", "", axes.unit_m * 100.0)
    _p(props, "AmbientColor", "ColorRGB", "Color", "", 0.0, 0.0, 0.0)
    _p(props, "DefaultCamera", "KString", "", "", "Producer Perspective")
    _p(props, "TimeMode", "enum", "", "", 14)  # custom frame rate, given below
    _p(props, "TimeProtocol", "enum", "", "", 2)
    _p(props, "SnapOnFrameMode", "enum", "", "", 0)
    _p(props, "TimeSpanStart", "KTime", "Time", "", L(0))
    _p(props, "TimeSpanStop", "KTime", "Time", "", L(stop))
    _p(props, "CustomFrameRate", "double", "Number", "", float(frame_rate))
    _p(props, "CurrentTimeMarker", "int", "Integer", "", -1)
    return gs


def _documents(take_name: str) -> Node:
    docs = Node("Documents")
    docs.add("Count", 1)
    doc = docs.add("Document", L(999_999), "Scene", "Scene")
    props = _p70(doc)
    _p(props, "SourceObject", "object", "", "")
    _p(props, "ActiveAnimStackName", "KString", "", "", take_name)
    doc.add("RootNode", L(0))
    return docs


def _takes(take_name: str, stop: int) -> Node:
    takes = Node("Takes")
    takes.add("Current", take_name)
    take = takes.add("Take", take_name)
    take.add("FileName", f"{take_name.replace(' ', '_')}.tak")
    take.add("LocalTime", L(0), L(stop))
    take.add("ReferenceTime", L(0), L(stop))
    return takes


def write_fbx(
    path: str | os.PathLike, motion: Motion, mesh: SkinnedMesh | None = None, axes: FbxAxes = FbxAxes()
) -> Path:
    """Write a binary FBX 7.4 file with the skeleton, optional skinned mesh and the animation, atomically."""
    path = Path(path)
    data = encode_fbx(build_fbx(motion, mesh, axes, take_name=path.stem or "Take 001"))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    log.debug("wrote %s (%d bytes)", path, len(data))
    return path
