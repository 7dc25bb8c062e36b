"""The body stage runner: read keypoints3d.npz (and the synchronized 2D keypoints triangulation used), fit the
body, write body.npz, the rest mesh, measurements and the stage report. Thin: the work is in
``reconstruction.body``. :func:`load_body_model` is the project's one body model factory (fit, export,
report and demo use it)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from mocap_studio.common.cache import project_cache_dir
from mocap_studio.common.fileio import write_json_atomic
from mocap_studio.inputs import read_keypoints3d, read_rig, read_synced_keypoints2d
from mocap_studio.reconstruction.body.fit_silhouette import SilhouetteInput
from mocap_studio.reconstruction.body.fitting import FitConfig, fit_sequence
from mocap_studio.reconstruction.body.io import save_body_npz, write_obj, write_ply
from mocap_studio.reconstruction.body.measurements import measure_body
from mocap_studio.reconstruction.body.uncertainty import (
    measurement_uncertainty,
    measurements_document,
    restart_valleys,
    untrusted_warning,
)
from mocap_studio.reconstruction.filtering import runs
from mocap_studio.reconstruction.keypoints import Keypoints3D
from mocap_studio.reconstruction.silhouettes import MaskError, MaskSet
from mocap_studio.session import Session, StageReport
from mocap_studio.stages import Progress

if TYPE_CHECKING:
    from mocap_studio.calibration.camera import CameraRig
    from mocap_studio.reconstruction.keypoints import Keypoints2D

logger = logging.getLogger(__name__)
STAGE = "fit"


def load_body_model(name: str = "anny", gender: str = "neutral", model_dir: str | Path = "",
                    num_betas: int | None = None):  # noqa: ANN201 - a BodyModel
    """The body model named ``name``: "anny" (built in), or "smpl", "smplh", "smplx" from the user's model files
    in ``model_dir`` (default ``<repo>/.cache/body_models``) with ``num_betas`` shape coefficients (default the
    loader's)."""
    if name == "anny":
        from mocap_studio.reconstruction.body.anny_model import AnnyBody

        return AnnyBody()
    if name not in ("smpl", "smplh", "smplx"):
        raise ValueError(f"unknown body model {name!r}; expected anny, smpl, smplh or smplx")
    from mocap_studio.reconstruction.body.smpl_model import load_smpl

    folder = Path(model_dir) if model_dir else project_cache_dir() / "body_models"
    if num_betas is None:
        return load_smpl(folder, name, gender)
    return load_smpl(folder, name, gender, num_betas)


def fit_body_model(cfg: FitConfig):  # noqa: ANN201 - a BodyModel
    """The body model a fit config names (its model, gender, model folder and shape coefficients)."""
    return load_body_model(cfg.model, cfg.gender, cfg.model_dir, cfg.num_betas)


def empty_runs(valid: np.ndarray, frame_times: np.ndarray) -> list[str]:
    """Warnings for runs of frames with no keypoint at all (T, J) bool: the performer out of view, or hidden."""
    return [
        f"frames {start}-{stop - 1} ({frame_times[start]:.2f}-{frame_times[stop - 1]:.2f} s): no keypoints (the "
        f"performer out of view or hidden); the body there is interpolated from the frames around it"
        for start, stop in runs(~np.asarray(valid).any(axis=1))
    ]


def quality_warnings(figures: dict) -> list[str]:
    """Warnings from a fit's quality figures: feet, hands or head turned over in one frame (flips, where the
    keypoints jump, as when triangulation takes a bystander for the performer), a fit jerkier than the
    keypoints it read."""
    out = []
    if figures.get("flips"):
        frames = figures.get("flip_frames", [])
        shown = ", ".join(str(f) for f in frames[:10]) + (" ..." if len(frames) > 10 else "")
        out.append(f"{figures['flips']} turns of a foot, hand or head beyond {figures.get('flip_bound_deg', 90):g} degrees in "
                   f"one frame (frames {shown}): check the keypoints there (a bystander, a left/right swap)")
    if figures.get("jerk_ratio", 0) > 1:
        out.append(f"the fitted motion is jerkier than the keypoints it read ({figures['fitted_jerk_m_s3']:.0f} vs "
                   f"{figures['keypoints_jerk_m_s3']:.0f} m/s^3)")
    return out


def _camera_views(session: Session, kp: Keypoints3D, warnings: list[str]) -> tuple[CameraRig | None, Keypoints2D | None]:
    """The rig and the 2D keypoints triangulation used (keypoints2d_synced.npz, on the 3D keypoints' timeline),
    for the fit's reprojection term; (None, None) when the session has no such keypoints or no calibration
    (imported 3D keypoints), or they do not line up with the 3D keypoints (a warning says so)."""
    if not (session.keypoints2d_synced_path.exists() and session.calibration_path.exists()):
        if session.keypoints2d_path.exists() and session.calibration_path.exists():
            warnings.append(f"{session.keypoints2d_synced_path.name} is missing: fitted to the 3D keypoints only; "
                            f"run `mocap triangulate {session.root} --overwrite` to write it")
        return None, None
    kp2d = read_synced_keypoints2d(session).keypoints
    rig = read_rig(session, fit_to_recordings=True)
    same_times = kp2d.num_frames == kp.num_frames and np.allclose(kp2d.frame_times, kp.frame_times, atol=1e-4)
    if kp2d.skeleton != kp.skeleton or not same_times or not any(c in rig for c in kp2d.camera_names):
        warnings.append(
            f"{session.keypoints2d_synced_path.name} ({kp2d.skeleton}, {kp2d.num_frames} frames) does not line up with "
            f"{session.keypoints3d_path.name} ({kp.skeleton}, {kp.num_frames} frames) or {session.calibration_path.name}: "
            "fitted to the 3D keypoints only; run `mocap triangulate` again to bring them in line"
        )
        return None, None
    return rig, kp2d


def _measurements_json(model, motion, kp: Keypoints3D, meas) -> dict:  # noqa: ANN001
    """measurements.json: the rest-pose measurements with one sigma each from the keypoints the fit read (and the
    silhouettes, where the shape was fitted to them, and the valleys the silhouette fit's restarts ended in)."""
    sil = motion.figures.get("silhouettes", {})
    sil_info = sil.get("shape_information")
    valleys = restart_valleys(sil.get("restarts", []))
    try:
        unc = measurement_uncertainty(model, motion.shape, motion.pose_rotvec, motion.trans, kp.xyz, kp.skeleton,
                                      silhouette_info=None if sil_info is None else np.asarray(sil_info),
                                      valleys=valleys or None)
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as e:
        logger.warning("fit: no uncertainty for the measurements: %s", e)
        return measurements_document(meas, model.name, None, f"no uncertainty: {e}")
    return measurements_document(meas, model.name, unc)


def _silhouettes(session: Session, kp: Keypoints3D, rig: CameraRig | None, warnings: list[str]) -> SilhouetteInput | None:
    """The performer's masks (masks.npz) matched to the 3D keypoints' frames: each camera's frame nearest the
    keypoints' time on its own clock (the offsets of keypoints2d_synced.npz); None (with a warning) when the
    session has no masks or they cannot be used."""
    if not session.masks_path.exists():
        return None
    if rig is None or not session.keypoints2d_synced_path.exists():
        warnings.append(f"{session.masks_path.name} is not used: the fit needs the calibration and "
                        f"{session.keypoints2d_synced_path.name} to place the masks; run `mocap triangulate` again")
        return None
    try:
        masks = MaskSet.load(session.masks_path)
    except MaskError as e:
        warnings.append(f"{e}: fitted to the keypoints alone")
        return None
    offsets = read_synced_keypoints2d(session).offsets_s
    cams = [c for c in masks.cameras if c in rig and c in offsets]
    if not cams:
        warnings.append(f"{session.masks_path.name}: none of its cameras {list(masks.cameras)} is calibrated and synced; "
                        "fitted to the keypoints alone")
        return None
    index = np.full((len(masks.cameras), kp.num_frames), -1)
    for i, c in enumerate(masks.cameras):
        if c in cams:
            index[i] = masks.nearest_frames(c, np.asarray(kp.frame_times, float) - offsets[c])
    return SilhouetteInput(rig, masks, index)


def fit_config_for(session: Session, config: FitConfig) -> FitConfig:
    """The settings the fit uses for ``session``: ``config``, with ``crowd_robust_scale`` as ``robust_scale``
    where the take has several people (``[associate] people`` other than 1: each person's folder, and the take's
    own fit of its performer)."""
    from mocap_studio.stages_keypoints import several_people

    return replace(config, robust_scale=config.crowd_robust_scale) if several_people(session) else config


def run_fit(session: Session, config: FitConfig | None = None, overwrite: bool = False, *,
            progress: Progress | None = None, meshes: bool = False) -> StageReport:
    """Fit the body for ``session`` -> body.npz, body_rest.obj/.ply, measurements.json (and with ``meshes`` one
    OBJ per frame under export/meshes/). ``config`` None reads session.toml's [fit]; a several-people take's
    fits use its ``crowd_robust_scale`` (:func:`fit_config_for`)."""
    session.require()
    cfg = fit_config_for(session, config or session.stage_config(STAGE, FitConfig))
    outputs = [session.body_path, session.root / "body_rest.obj", session.root / "body_rest.ply",
               session.root / "measurements.json"]
    if not session.keypoints3d_path.exists():
        raise FileNotFoundError(f"{session.keypoints3d_path} is missing; run `mocap triangulate {session.root}` first")
    views = [session.keypoints2d_synced_path, session.calibration_path] if cfg.reprojection or cfg.fits_silhouettes else []
    if cfg.fits_silhouettes:
        views.append(session.masks_path)
    # crowd_robust_scale is in robust_scale where the fit uses it: left out, a lone performer's fit stays up to date
    settings = {k: v for k, v in asdict(cfg).items() if k not in (*FitConfig.RUNTIME_KEYS, "crowd_robust_scale")}
    fp = session.inputs_fingerprint([session.keypoints3d_path, *views], {**settings, "meshes": meshes})
    if not overwrite and session.is_up_to_date(STAGE, fp, outputs):
        logger.info("fit: up to date (use --overwrite to redo)")
        return session.previous_report(STAGE)
    start = time.monotonic()
    kp = read_keypoints3d(session)
    model = fit_body_model(cfg)
    rate = session.config().frame_rate or None
    warnings: list[str] = []
    rig, kp2d = _camera_views(session, kp, warnings) if cfg.reprojection or cfg.fits_silhouettes else (None, None)
    sil = _silhouettes(session, kp, rig, warnings) if cfg.fits_silhouettes else None
    if cfg.scan and sil is None:
        raise FileNotFoundError(f"{session.masks_path}: a scan fits the shape to the performer's masks; run "
                                f"`mocap detect {session.root} --overwrite` (it writes them), then `mocap triangulate`")
    if not cfg.reprojection:
        kp2d = None
    motion = fit_sequence(model, kp, cfg, frame_rate=rate, rig=rig if kp2d is not None or sil is not None else None,
                          keypoints2d=kp2d, silhouettes=sil, progress=progress)
    rest = model.rest_mesh(motion.shape)
    meas = measure_body(model, motion.shape)
    meas_doc = _measurements_json(model, motion, kp, meas)
    # everything computed before anything is written: no partial outputs on failure
    save_body_npz(session.body_path, motion, model.joint_names, model.parents, model.shape_names)
    write_obj(outputs[1], rest, model.faces)
    write_ply(outputs[2], rest, model.faces)
    write_json_atomic(outputs[3], meas_doc)
    if meshes:
        out = model.evaluate(motion.shape, motion.pose_rotvec, motion.trans)
        for i, v in enumerate(out.vertices):
            write_obj(session.export_dir / "meshes" / f"frame_{i:06d}.obj", v, model.faces)
    warnings += empty_runs(kp.valid, kp.frame_times) + quality_warnings(motion.figures)
    if (untrusted := untrusted_warning(meas_doc)) is not None:
        warnings.append(untrusted)
    for w in warnings:
        logger.warning("fit: %s", w)
    report = StageReport(
        STAGE, fp, tuple(str(o) for o in outputs),
        {**motion.figures, "robust_scale": cfg.robust_scale, "measurements": meas.to_json()},
        tuple(warnings), seconds=time.monotonic() - start,
    )
    session.write_stage_report(report)
    return report
