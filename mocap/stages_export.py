"""The export stage runner: read the session's body motion and 3D keypoints, call the exporters, write
``export/<take>.<rig>.<ext>`` (animation), ``export/<take>.apose.<ext>`` (rest mesh), ``export/<take>.<ext>``
(keypoints, AMASS) and ``report/export.json``.

From ``body.npz`` (AMASS-style keys, see :mod:`export.amass`): BVH, FBX, GLB, USDZ of the body retargeted
onto a rig (``rig``, default Mixamo; ``"body"`` keeps the body model's own skeleton), FBX, GLB and USD
carrying the body's mesh skinned to that rig (the avatar, :mod:`export.avatar`: the rig's joints moved into
the body); OBJ/PLY/GLB of the rest mesh in an A-pose, closed; and the AMASS npz itself for SMPL bodies. From
``keypoints3d.npz``: TRC and C3D. The rig's name in the file names keeps exports to different rigs apart.
A format whose input is missing is skipped with a warning in the report; asking only for such formats is
an error that says which file is missing.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from mocap_studio.export.amass import (
    AmassMotion,
    motion_from_body,
    read_amass,
    rig_from_body,
    skinned_mesh_from_body,
    write_amass,
)
from mocap_studio.export.avatar import avatar_vertex_error_m, body_avatar, rest_mesh_apose
from mocap_studio.export.bvh import write_bvh
from mocap_studio.export.c3d import write_c3d_keypoints
from mocap_studio.export.fbx import write_fbx
from mocap_studio.export.gltf import write_glb, write_mesh_glb
from mocap_studio.export.mesh import SkinnedMesh, is_watertight, write_obj_yup
from mocap_studio.export.motion import Motion
from mocap_studio.export.retarget import RetargetConfig, retarget
from mocap_studio.export.rig import load_rig
from mocap_studio.export.trc import keypoints_frame_rate, write_trc_keypoints
from mocap_studio.export.usd import write_usd
from mocap_studio.inputs import read_checked, read_keypoints3d
from mocap_studio.reconstruction.body.io import write_ply
from mocap_studio.session import Session, StageReport
from mocap_studio.stages import Progress

log = logging.getLogger(__name__)

STAGE = "export"
RIG_FORMATS = ("bvh", "fbx", "glb", "usdz", "usd")
"""Animation files: named ``<take>.<rig>.<ext>``."""
REST_FORMATS = {"obj": "apose.obj", "ply": "apose.ply", "apose_glb": "apose.glb"}
"""The rest mesh in an A-pose, closed: format -> file name after ``<take>.``."""
BODY_FORMATS = RIG_FORMATS + tuple(REST_FORMATS) + ("amass",)
KEYPOINT_FORMATS = ("trc", "c3d")
FORMATS = BODY_FORMATS + KEYPOINT_FORMATS


@dataclass(frozen=True)
class ExportConfig:
    """The ``[export]`` table of session.toml."""

    formats: tuple[str, ...] = ("bvh", "fbx", "glb", "usdz", "obj", "apose_glb", "trc")
    """Which files to write: any of bvh, fbx, glb, usdz, usd (``<take>.<rig>.<ext>``), obj, ply, apose_glb (the
    A-pose rest mesh, ``<take>.apose.<ext>``), amass (from body.npz), trc, c3d (from keypoints3d.npz)."""
    rig: str = "mixamo"
    """Target rig for the animation: a preset in configs/retarget, a rig TOML, or "body" for the body
    model's own skeleton with its skinned mesh."""
    avatar: bool = True
    """FBX, GLB and USD carry the body's mesh skinned to the rig, the rig's joints moved into the body (its
    names, hierarchy and rest pose kept, the performer's bone lengths). False: the rig's preset skeleton and
    bone lengths, no mesh."""
    smpl_model_dir: str = ""
    """Folder holding the user's SMPL model files (needed to export an SMPL body.npz)."""
    trc_axes: str = "opensim"
    """TRC axes: "opensim" (Y up, X forward) or "zup" (the capture world)."""
    frame_rate: float = 0.0
    """Frame rate of the keypoints; 0 takes the session's, else the keypoints' frame times."""
    blender_preview: bool = True
    """When both FBX and BVH are written and Blender is installed in the project cache (make blender-check):
    import them in Blender and render three frames into report/export/blender_preview.png."""

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown export format(s) {unknown}; choose from {list(FORMATS)}")


ModelLoader = Callable[[str, str, ExportConfig], object]


def export_body_model(name: str, gender: str, config: ExportConfig) -> object:
    """The body model a body.npz names, from the one factory (:func:`stages_body.load_body_model`): "anny"
    (built in), or an SMPL-family model from ``smpl_model_dir``."""
    from mocap_studio.stages_body import load_body_model

    if name in ("smpl", "smplh", "smplx") and not config.smpl_model_dir:
        raise FileNotFoundError(
            f"body.npz holds an {name.upper()} body: set smpl_model_dir in session.toml [export] to the "
            "folder with your SMPL model files (they cannot be shipped)"
        )
    try:
        return load_body_model(name, gender, config.smpl_model_dir)
    except ValueError as e:
        raise ValueError(f"body.npz: {e}") from e


def read_body(path: Path) -> AmassMotion:
    """``body.npz`` as ``mocap fit`` writes it (any model: Anny's has no AMASS keys), or an AMASS-style file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            ours = {"model", "shape", "pose_rotvec", "trans", "mocap_framerate"} <= set(npz.files)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable body file ({e}); run `mocap fit --overwrite` to write it again") from e
    if not ours:
        return read_amass(path)
    from mocap_studio.reconstruction.body.io import load_body_npz

    fitted = load_body_npz(path)
    # a body written without contacts (the virtual studio's truth) stores none: retargeting detects them
    contact = fitted.contact if fitted.contact is not None and len(fitted.contact) else None
    return AmassMotion(pose_rotvec=fitted.pose_rotvec, trans=fitted.trans, betas=np.asarray(fitted.shape, float),
                       gender=fitted.gender, frame_rate=fitted.frame_rate, model=fitted.model,
                       contact=contact, ground_z=fitted.ground_z)


def file_name(stem: str, fmt: str, rig: str = "") -> str:
    """The export file name of format ``fmt`` for take ``stem``: ``<stem>.<rig>.<ext>`` for animations (the rig's
    name made safe for file names), ``<stem>.apose.<ext>`` for the rest mesh, else ``<stem>.<ext>``."""
    if fmt in RIG_FORMATS:
        safe = re.sub(r"[^A-Za-z0-9_-]+", "_", rig).strip("_") or "rig"
        return f"{stem}.{safe}.{fmt}"
    if fmt in REST_FORMATS:
        return f"{stem}.{REST_FORMATS[fmt]}"
    return f"{stem}.{'amass.npz' if fmt == 'amass' else fmt}"


def exported_file(folder: Path, stem: str, fmt: str, rig: str = "") -> Path:
    """The file a reader should open: the current name (:func:`file_name`), else the name exports had before
    they carried the rig (``<stem>.<ext>``) where only that exists."""
    path = folder / file_name(stem, fmt, rig)
    old = folder / f"{stem}.{fmt}"
    return old if not path.exists() and old.exists() else path


def _rig_name(config: ExportConfig) -> str:
    """The rig's name as file names carry it: "body", a preset's name, or a rig TOML's ``name``."""
    return "body" if config.rig == "body" else load_rig(config.rig).name


def _avatar_figures(model: object, shape: np.ndarray, body: AmassMotion, anim: Motion, avatar) -> dict:  # noqa: ANN001
    """How far the avatar's vertices (as the files deform them) are from the body model's own at 5 frames."""
    frames = np.unique(np.linspace(0, anim.num_frames - 1, 5).round().astype(int))
    n_joints = len(model.joint_names)  # type: ignore[attr-defined]
    truth = model.evaluate(shape, body.pose_rotvec[frames, :n_joints], body.trans[frames]).vertices  # type: ignore[attr-defined]
    err, offset = avatar_vertex_error_m(anim, avatar, np.asarray(truth), frames)
    return {"frames": frames.tolist(), "vertex_error_mm": {k: round(float(1000 * np.percentile(err, q)), 2)
                                                           for k, q in (("median", 50), ("p95", 95), ("max", 100))},
            "floor_offset_mm": [round(float(1000 * x), 1) for x in offset],
            "rig_height_m": round(float(avatar.mesh.vertices_m[:, 2].max()), 4)}


def _body_outputs(
    session: Session, config: ExportConfig, stem: str, formats: list[str], loader: ModelLoader,
    retarget_config: RetargetConfig,
) -> tuple[list[Path], dict]:
    body = read_checked(session, session.body_path, lambda: read_body(session.body_path))
    model = loader(body.model, body.gender, config)
    n_joints = len(model.joint_names)  # type: ignore[attr-defined]
    pose = body.pose_rotvec[:, :n_joints]
    shape = body.betas[: len(model.default_shape())]  # type: ignore[attr-defined]
    motion = motion_from_body(model, shape, pose, body.trans, body.frame_rate, name=stem)  # type: ignore[arg-type]
    full_mesh = skinned_mesh_from_body(model, shape, max_influences=n_joints)  # type: ignore[arg-type]
    figures: dict = {"frames": motion.num_frames, "frame_rate": motion.frame_rate, "body_model": body.model}
    anim: Motion = motion
    anim_mesh: SkinnedMesh | None = full_mesh.top_k(4)
    body_rig = rig_from_body(model, motion, full_mesh)  # type: ignore[arg-type]
    rig_name = "body"
    if config.rig != "body" and any(f in RIG_FORMATS for f in formats):
        target = load_rig(config.rig)
        rig_name = target.name
        avatar = body_avatar(motion, body_rig, full_mesh, target) if config.avatar else None
        anim = retarget(motion, body_rig, avatar.rig if avatar else target, retarget_config,
                        contacts=body.contact, ground_z=body.ground_z)
        anim_mesh = avatar.mesh if avatar else None
        figures["rig"] = target.name
        if avatar is not None:
            figures["avatar"] = _avatar_figures(model, shape, body, anim, avatar)
    elif config.rig != "body":
        rig_name = _rig_name(config)
    apose: tuple[np.ndarray, np.ndarray] | None = None
    if any(f in REST_FORMATS for f in formats):
        apose = rest_mesh_apose(motion, body_rig, full_mesh)
        figures["apose"] = {"vertices": len(apose[0]), "triangles": len(apose[1]),
                            "holes_closed": len(apose[0]) - full_mesh.num_vertices,
                            "watertight": is_watertight(apose[1]), "height_m": round(float(apose[0][:, 2].max()), 4)}
        if not figures["apose"]["watertight"]:
            log.warning("export: the %s mesh is not closed after filling its holes (edges shared by more than two "
                        "triangles, or holes that touch): try-on tools may refuse it", body.model)
    out: list[Path] = []
    folder = session.export_dir
    for fmt in formats:
        path = folder / file_name(stem, fmt, rig_name)
        if fmt == "bvh":
            out.append(write_bvh(path, anim))
        elif fmt == "fbx":
            out.append(write_fbx(path, anim, anim_mesh))
        elif fmt == "glb":
            out.append(write_glb(path, anim, anim_mesh))
        elif fmt in ("usdz", "usd"):
            out.append(write_usd(path, anim, anim_mesh))
        elif fmt == "obj" and apose is not None:
            out.append(write_obj_yup(path, *apose))
        elif fmt == "ply" and apose is not None:
            out.append(write_ply(path, *apose))
        elif fmt == "apose_glb" and apose is not None:
            out.append(write_mesh_glb(path, *apose))
        elif fmt == "amass":
            out.append(write_amass(path, body.pose_rotvec, body.trans, body.betas, body.frame_rate, body.gender, body.model))
    return out, figures


def _blender_preview(session: Session, stem: str, rig: str, frames: int, frame_rate: float) -> dict:
    """Blender imports the FBX and BVH just written and renders three frames (report/export/blender_preview.png);
    skipped, with the reason, where Blender is not installed in the project cache."""
    from mocap_studio.export.blender_preview import PreviewUnavailable, render_preview

    out = session.stage_asset_dir(STAGE) / "blender_preview.png"
    picks = sorted({int(frames * q) for q in (0.2, 0.5, 0.8)}) if frames else [0]
    try:
        preview = render_preview(exported_file(session.export_dir, stem, "fbx", rig),
                                 exported_file(session.export_dir, stem, "bvh", rig), out, frame_rate, picks)
    except PreviewUnavailable as e:
        log.info("export: no Blender preview (%s)", e)
        return {"skipped": str(e)}
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        log.warning("export: Blender preview failed: %s", e)
        return {"failed": str(e)}
    log.info("export: Blender imported the FBX and BVH (bone positions agree within %.3f mm); preview %s",
             preview.fbx_bvh_difference_mm, out)
    return {"picture": str(out.relative_to(session.root)), "frames": list(preview.frames),
            "fbx_bvh_difference_mm": preview.fbx_bvh_difference_mm, "seconds": round(preview.seconds, 1)}


def run_export(
    session: Session,
    config: ExportConfig | None = None,
    overwrite: bool = False,
    *,
    progress: Progress | None = None,
    retarget_config: RetargetConfig | None = None,
    model_loader: ModelLoader = export_body_model,
) -> StageReport:
    """Export the take. Returns the stage report (also written to ``report/export.json``).

    ``config`` None reads session.toml's [export]; ``retarget_config`` None its [retarget]."""
    session.require()
    config = config or session.stage_config(STAGE, ExportConfig)
    retarget_config = retarget_config or session.stage_config("retarget", RetargetConfig)
    start = time.perf_counter()
    stem = session.config().name or session.root.name
    wanted = list(dict.fromkeys(config.formats))
    body_fmts = [f for f in wanted if f in BODY_FORMATS]
    kp_fmts = [f for f in wanted if f in KEYPOINT_FORMATS]
    have_body, have_kp = session.body_path.exists(), session.keypoints3d_path.exists()
    warnings: list[str] = []
    if body_fmts and not have_body:
        warnings.append(f"{session.body_path} is missing: skipped {body_fmts} (run the body fit first)")
        body_fmts = []
    if kp_fmts and not have_kp:
        warnings.append(f"{session.keypoints3d_path} is missing: skipped {kp_fmts} (triangulate first)")
        kp_fmts = []
    if not body_fmts and not kp_fmts:
        raise FileNotFoundError("nothing to export: " + "; ".join(warnings))
    inputs = [p for p, used in ((session.body_path, body_fmts), (session.keypoints3d_path, kp_fmts)) if used]
    fp = session.inputs_fingerprint(inputs, asdict(config) | {"retarget": asdict(retarget_config)})
    rig_name = _rig_name(config)
    planned = [session.export_dir / file_name(stem, f, rig_name) for f in body_fmts + kp_fmts]
    if not overwrite and session.is_up_to_date(STAGE, fp, planned):
        log.info("export: inputs unchanged, outputs present; skipped (use --overwrite to redo)")
        return session.previous_report(STAGE)
    session.export_dir.mkdir(parents=True, exist_ok=True)
    outputs: list[Path] = []
    figures: dict = {}
    if body_fmts:
        paths, figures = _body_outputs(session, config, stem, body_fmts, model_loader, retarget_config)
        outputs += paths
    if kp_fmts:
        kp = read_keypoints3d(session)
        rate = config.frame_rate or session.config().frame_rate or keypoints_frame_rate(kp)
        for fmt in kp_fmts:
            path = session.export_dir / file_name(stem, fmt)
            if fmt == "trc":
                outputs.append(write_trc_keypoints(path, kp, rate, axes=config.trc_axes))
            else:
                outputs.append(write_c3d_keypoints(path, kp, rate))
        figures["keypoints"] = {"frames": kp.num_frames, "joints": kp.num_joints, "frame_rate": rate}
    figures["bytes"] = {p.name: p.stat().st_size for p in outputs}
    if config.blender_preview and {"fbx", "bvh"} <= set(body_fmts):
        figures["blender_preview"] = _blender_preview(session, stem, rig_name, figures.get("frames", 0),
                                                      figures.get("frame_rate", 30.0))
    for w in warnings:
        log.warning("%s", w)
    report = StageReport(STAGE, fp, tuple(outputs), figures, tuple(warnings), time.perf_counter() - start)
    session.write_stage_report(report)
    return report


__all__ = ["ExportConfig", "FORMATS", "export_body_model", "exported_file", "file_name", "run_export"]
