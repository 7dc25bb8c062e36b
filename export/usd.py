"""USD / USDZ writer (usd-core): UsdSkel skeleton, SkelAnimation and a skinned mesh.

Stage metadata states the axes and units: ``upAxis = "Y"``, ``metersPerUnit = 1``, and
``timeCodesPerSecond`` = the motion's frame rate (one time code per frame). Layout::

    /Character            SkelRoot
    /Character/Skeleton   Skeleton (joints as paths, bind and rest transforms)
    /Character/Skeleton/Motion  SkelAnimation (per-joint translations, rotations, scales per frame)
    /Character/Body       Mesh with SkelBindingAPI (joint indices and weights, K per vertex)

USD path elements must be identifiers, so joint names are made valid (``mixamorig:Hips`` ->
``mixamorig_Hips``); the original names are kept in the skeleton's ``customData``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from mocap_studio.common.fileio import atomic_path
from mocap_studio.export.mesh import SkinnedMesh, vertex_normals
from mocap_studio.export.motion import Z_UP_TO_Y_UP, Motion
from pxr import Gf, Sdf, Tf, Usd, UsdGeom, UsdSkel, UsdUtils, Vt

log = logging.getLogger(__name__)


def _usd_names(names: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for name in names:
        base = Tf.MakeValidIdentifier(name) or "joint"
        cand, k = base, 1
        while cand in out:
            k += 1
            cand = f"{base}_{k}"
        out.append(cand)
    return out


def _joint_paths(motion: Motion) -> list[str]:
    names = _usd_names(motion.joint_names)
    paths: list[str] = []
    for j, p in enumerate(motion.parents):
        paths.append(names[j] if p < 0 else f"{paths[p]}/{names[j]}")
    return paths


def _matrices(rot: np.ndarray, trans: np.ndarray) -> Vt.Matrix4dArray:
    """USD row-vector matrices from column-vector rotations (N, 3, 3) and translations (N, 3)."""
    mats = np.zeros((len(rot), 4, 4))
    mats[:, :3, :3] = np.swapaxes(rot, 1, 2)
    mats[:, 3, :3] = trans
    mats[:, 3, 3] = 1.0
    return Vt.Matrix4dArray.FromNumpy(mats)


def build_stage(stage: Usd.Stage, motion: Motion, mesh: SkinnedMesh | None = None) -> None:
    """Author the skeleton, animation and optional mesh into an empty ``stage``."""
    motion.check_finite("motion")
    if mesh is not None:
        mesh.check_skeleton(motion)
    m = motion.transformed(Z_UP_TO_Y_UP)
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetTimeCodesPerSecond(m.frame_rate)
    stage.SetFramesPerSecond(m.frame_rate)
    stage.SetStartTimeCode(0)
    stage.SetEndTimeCode(max(m.num_frames - 1, 0))
    root = UsdSkel.Root.Define(stage, "/Character")
    stage.SetDefaultPrim(root.GetPrim())
    skel = UsdSkel.Skeleton.Define(stage, "/Character/Skeleton")
    joints = _joint_paths(m)
    n = m.num_joints
    eye = np.broadcast_to(np.eye(3), (n, 3, 3))
    skel.CreateJointsAttr(Vt.TokenArray(joints))
    skel.CreateJointNamesAttr(Vt.TokenArray([p.rsplit("/", 1)[-1] for p in joints]))
    skel.CreateBindTransformsAttr(_matrices(eye, m.rest_positions_m()))
    skel.CreateRestTransformsAttr(_matrices(eye, m.rest_offsets_m))
    skel.GetPrim().SetCustomDataByKey("mocap:jointNames", Vt.StringArray(list(m.joint_names)))
    anim = UsdSkel.Animation.Define(stage, "/Character/Skeleton/Motion")
    anim.CreateJointsAttr(Vt.TokenArray(joints))
    t_attr, r_attr, s_attr = (
        anim.CreateTranslationsAttr(),
        anim.CreateRotationsAttr(),
        anim.CreateScalesAttr(),
    )
    s_attr.Set(Vt.Vec3hArray.FromNumpy(np.ones((n, 3), np.float16)))
    quat = m.local_quat_wxyz.astype(np.float32)  # (T, J, 4) w, x, y, z
    for t in range(m.num_frames):
        trans = m.rest_offsets_m.copy()
        trans[0] = m.root_translation_m[t]
        t_attr.Set(Vt.Vec3fArray.FromNumpy(trans.astype(np.float32)), t)
        r_attr.Set(
            Vt.QuatfArray([Gf.Quatf(float(q[0]), float(q[1]), float(q[2]), float(q[3])) for q in quat[t]]), t
        )
    UsdSkel.BindingAPI.Apply(skel.GetPrim()).CreateAnimationSourceRel().SetTargets([anim.GetPath()])
    if mesh is not None:
        _add_mesh(stage, skel, mesh)


def _add_mesh(stage: Usd.Stage, skel: UsdSkel.Skeleton, mesh: SkinnedMesh) -> None:
    geom = UsdGeom.Mesh.Define(stage, "/Character/Body")
    verts = (mesh.vertices_m @ Z_UP_TO_Y_UP.T).astype(np.float32)
    geom.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(verts))
    geom.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(mesh.faces), 3, np.int32)))
    geom.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(mesh.faces.astype(np.int32).reshape(-1)))
    geom.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    geom.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(vertex_normals(verts, mesh.faces).astype(np.float32)))
    geom.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    geom.CreateExtentAttr(Vt.Vec3fArray.FromNumpy(np.stack([verts.min(0), verts.max(0)])))
    binding = UsdSkel.BindingAPI.Apply(geom.GetPrim())
    binding.CreateSkeletonRel().SetTargets([skel.GetPath()])
    k = mesh.joint_indices.shape[1]
    binding.CreateJointIndicesPrimvar(False, k).Set(
        Vt.IntArray.FromNumpy(mesh.joint_indices.astype(np.int32).ravel())
    )
    binding.CreateJointWeightsPrimvar(False, k).Set(
        Vt.FloatArray.FromNumpy(mesh.joint_weights.astype(np.float32).ravel())
    )
    binding.CreateGeomBindTransformAttr(Gf.Matrix4d(1.0))


def write_usd(path: str | os.PathLike, motion: Motion, mesh: SkinnedMesh | None = None) -> Path:
    """Write ``.usd``/``.usda``/``.usdc``, or a ``.usdz`` package (for AR viewers), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".usd", ".usda", ".usdc", ".usdz"):
        raise ValueError(
            f"{path}: the USD writer writes .usd, .usda, .usdc or .usdz, not {suffix or 'no suffix'}"
        )
    motion.check_finite(str(path))
    with atomic_path(path) as tmp:
        if suffix == ".usdz":
            with tempfile.TemporaryDirectory(prefix="mocap-usdz-") as folder:
                layer_path = Path(folder) / f"{path.stem}.usdc"
                stage = Usd.Stage.CreateNew(str(layer_path))
                build_stage(stage, motion, mesh)
                stage.GetRootLayer().Save()
                del stage
                if not UsdUtils.CreateNewUsdzPackage(Sdf.AssetPath(str(layer_path)), str(tmp)):
                    raise RuntimeError(f"{path}: USD could not package the USDZ file")
        else:
            stage = Usd.Stage.CreateInMemory()
            build_stage(stage, motion, mesh)
            if not stage.GetRootLayer().Export(str(tmp)):
                raise RuntimeError(f"{path}: USD could not write the file")
    log.debug("wrote %s", path)
    return path


def read_usd_joint_positions(path: str | os.PathLike) -> tuple[list[str], np.ndarray, float]:
    """Joint names (as authored in the skeleton), world positions (T, J, 3) in the stage's units and axes,
    evaluated by ``pxr.UsdSkel`` at every time code, and the stage's up axis as 'Y' or 'Z'."""
    stage = Usd.Stage.Open(str(path))
    if stage is None:
        raise ValueError(f"{path}: USD could not open the file")
    skel_prim = next(p for p in stage.Traverse() if p.IsA(UsdSkel.Skeleton))
    skel = UsdSkel.Skeleton(skel_prim)
    cache = UsdSkel.Cache()
    root = UsdSkel.Root(skel_prim.GetParent())
    cache.Populate(root, Usd.PrimDefaultPredicate)
    query = cache.GetSkelQuery(skel)
    start, end = int(stage.GetStartTimeCode()), int(stage.GetEndTimeCode())
    frames = []
    for t in range(start, end + 1):
        xf = UsdGeom.XformCache(t)
        mats = np.array(query.ComputeJointWorldTransforms(xf, False))  # (J, 4, 4) row vectors, animated
        frames.append(mats[:, 3, :3])
    names = list(skel_prim.GetCustomDataByKey("mocap:jointNames") or skel.GetJointNamesAttr().Get())
    return names, np.array(frames), stage.GetTimeCodesPerSecond()


def read_usd_skinned_points(path: str | os.PathLike, frames: np.ndarray) -> np.ndarray:
    """The skinned mesh of a USD file as ``pxr.UsdSkel`` deforms it at time codes ``frames`` (N,): points
    (N, V, 3) in the stage's units and axes (UsdSkel's own skinning: the skeleton's animation, bind
    transforms, the mesh's joint indices and weights and geomBindTransform)."""
    stage = Usd.Stage.Open(str(path))
    if stage is None:
        raise ValueError(f"{path}: USD could not open the file")
    root_prim = next((p for p in stage.Traverse() if p.IsA(UsdSkel.Root)), None)
    if root_prim is None:
        raise ValueError(f"{path}: no SkelRoot")
    cache = UsdSkel.Cache()
    root = UsdSkel.Root(root_prim)
    cache.Populate(root, Usd.PrimDefaultPredicate)
    bindings = cache.ComputeSkelBindings(root, Usd.PrimDefaultPredicate)
    if not bindings or not bindings[0].GetSkinningTargets():
        raise ValueError(f"{path}: no mesh is bound to the skeleton")
    binding = bindings[0]
    query = cache.GetSkelQuery(binding.GetSkeleton())
    target = binding.GetSkinningTargets()[0]
    mesh = UsdGeom.Mesh(target.GetPrim())
    out = []
    for t in np.asarray(frames):
        xforms = query.ComputeSkinningTransforms(Usd.TimeCode(float(t)))
        points = mesh.GetPointsAttr().Get(Usd.TimeCode(float(t)))
        if not target.ComputeSkinnedPoints(xforms, points, Usd.TimeCode(float(t))):
            raise RuntimeError(f"{path}: UsdSkel could not skin the mesh at time {t}")
        out.append(np.array(points, float))
    return np.stack(out)
