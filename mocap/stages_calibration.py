"""The calibrate stage: read the board recordings of a session (or explicit inputs), detect the board,
calibrate, and write ``calibration.toml``, the stage report and its pictures."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mocap_studio.calibration.boards import Board, load_board
from mocap_studio.calibration.calibrate import (
    CalibrationConfig,
    CalibrationResult,
    IntrinsicsOnlyResult,
    calibrate_intrinsics_only,
    calibrate_rig,
)
from mocap_studio.calibration.camera import Camera, CameraRig
from mocap_studio.calibration.checks import PlausibilityConfig, check_cameras
from mocap_studio.calibration.detect import BoardDetection, BoardNotFoundError, CameraDetections, detect_board_in_source
from mocap_studio.calibration.formats import (
    INTRINSICS_ONLY,
    detect_format,
    is_intrinsics_only,
    read_calibration,
    require_extrinsics,
    write_calibration,
)
from mocap_studio.calibration.observations import BoardObservations, observations_from_detections
from mocap_studio.calibration.plots import coverage_picture, residuals_picture, rig_picture
from mocap_studio.calibration.recordings import NotSimultaneousError, simultaneity_problem
from mocap_studio.common.config import config_from_mapping, config_to_mapping, load_toml
from mocap_studio.common.fileio import fingerprint, save_npz_atomic, write_json_atomic
from mocap_studio.session import Session, StageReport
from mocap_studio.stages import Progress

log = logging.getLogger(__name__)
STAGE = "calibrate"


@dataclass(frozen=True)
class CalibrateOutcome:
    """What a calibration outside a session wrote (``run_explicit``, ``refine``)."""

    calibration_path: Path
    report_path: Path
    result: CalibrationResult | IntrinsicsOnlyResult | None
    skipped: bool


class OverwriteRefused(RuntimeError):
    """The output exists and was not made by this stage from these inputs."""


def _save_detections(path: Path, key: str, d: CameraDetections) -> None:
    """Cache one camera's detections (so an interrupted calibration resumes after the cameras it finished)."""
    dets = d.detections
    save_npz_atomic(
        path, key=np.array(key), camera=np.array(d.camera), image_size=np.array(d.image_size),
        frames_read=np.array(d.frames_read), rejected=np.array(json.dumps(d.rejected)),
        found_by=np.array(json.dumps(d.found_by)),
        frame=np.array([x.frame for x in dets], dtype=np.int64), time_s=np.array([x.time_s for x in dets]),
        sharpness=np.array([x.sharpness for x in dets]), area=np.array([x.area_fraction for x in dets]),
        counts=np.array([len(x.ids) for x in dets], dtype=np.int64),
        ids=np.concatenate([x.ids for x in dets]) if dets else np.zeros(0, np.int64),
        corners=np.concatenate([x.corners for x in dets]) if dets else np.zeros((0, 2)),
    )


def _load_detections(path: Path, key: str, source: Path) -> CameraDetections | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            splits = np.cumsum(z["counts"])[:-1]
            dets = tuple(
                BoardDetection(int(f), float(t), i, c, float(s), float(a))
                for f, t, i, c, s, a in zip(z["frame"], z["time_s"], np.split(z["ids"], splits),
                                            np.split(z["corners"], splits), z["sharpness"], z["area"], strict=True)
            )
            found_by = json.loads(str(z["found_by"])) if "found_by" in z.files else {}
            return CameraDetections(str(z["camera"]), source, tuple(int(v) for v in z["image_size"]), dets,
                                    int(z["frames_read"]), json.loads(str(z["rejected"])), found_by)
    except (OSError, KeyError, ValueError) as e:  # a damaged cache is recomputed, never trusted
        log.debug("ignoring detection cache %s: %s", path, e)
        return None


def detect_all(sources: Mapping[str, Path], board: Board, config: CalibrationConfig,
               progress: Progress | None = None, cache_dir: Path | None = None, every_camera: bool = False,
               ) -> tuple[list[CameraDetections], list[str]]:
    """Detect the board in every camera's recording (camera name -> video or image folder).

    A camera whose recording never shows the board is left out with its diagnosis in the returned
    warnings; when fewer than two cameras see the board (with ``every_camera``: when any camera does not),
    the diagnoses are raised together. With
    ``cache_dir``, each camera's detections are kept there, keyed by its recording, the board and the
    detection settings, so a run interrupted midway redoes only the cameras it had not finished.
    """
    out, problems = [], []
    settings = json.dumps([dataclasses.asdict(board) | {"source": None}, config_to_mapping(config.detection)],
                          sort_keys=True, default=str)
    for name, path in sources.items():
        def tick(done: int, total: int | None, name=name) -> None:
            if progress:
                progress(f"board in {name}", done, total)

        cache = cache_dir / f"{name}.npz" if cache_dir else None
        key = ""
        if cache is not None:
            files = sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]
            key = fingerprint(files) + hashlib.sha256(settings.encode()).hexdigest()[:16]
            cached = _load_detections(cache, key, path)
            if cached is not None:
                log.info("%s: board detections reused from %s", name, cache)
                out.append(cached)
                continue
        try:
            out.append(detect_board_in_source(name, path, board, config.detection, tick))
            if cache is not None:
                _save_detections(cache, key, out[-1])
        except BoardNotFoundError as e:
            problems.append(str(e))
            log.warning("%s", e)
            continue
        log.info("%s: board in %d views", name, len(out[-1].detections))
    if len(out) < (len(sources) if every_camera else 2):
        need = "each camera's intrinsics need it" if every_camera else "calibration needs at least two"
        raise BoardNotFoundError(
            f"the board ({board.name}) was found in {len(out)} of {len(sources)} cameras' recordings; {need}. "
            "No calibration file was written.\n" + "\n".join(problems)
        )
    return out, problems


def detection_summary(detections: list[CameraDetections]) -> str:
    """One line per camera: its recording, the frames in which the board was kept and why the others were not."""
    parts = []
    for d in detections:
        rejected = ", ".join(f"{k} {v}" for k, v in d.rejected.items() if v)
        found = ", ".join(f"{k} {v}" for k, v in d.found_by.items())
        parts.append(f"{d.camera} ({d.source}): kept in {len(d.detections)} of {d.frames_read} frames"
                     + (f"; not kept: {rejected}" if rejected else "") + (f"; found by {found}" if found else ""))
    return "; ".join(parts)


def calibrate_sources(
    sources: Mapping[str, Path],
    board: Board,
    out_path: Path,
    report_dir: Path,
    config: CalibrationConfig | None = None,
    known_intrinsics: Mapping[str, Camera] | None = None,
    progress: Progress | None = None,
) -> tuple[CalibrationResult, dict]:
    """Detect, calibrate, and write ``out_path`` plus pictures in ``report_dir``. Returns the result and the
    report's figures."""
    config = config or CalibrationConfig()
    if not sources:
        raise FileNotFoundError("no calibration recordings given: one video or image folder per camera is needed")
    problem = simultaneity_problem(sources)
    if problem:
        raise NotSimultaneousError(problem + " No calibration file was written.")
    start = time.perf_counter()
    detections, problems = detect_all(sources, board, config, progress, cache_dir=report_dir / "detections")
    obs = observations_from_detections(detections, board.object_points)
    detect_s = time.perf_counter() - start
    if progress:
        progress("calibrating", 0, None)
    try:
        result = calibrate_rig(obs, board.object_points, config, known_intrinsics,
                               progress=lambda msg: log.info("%s", msg))
    except ValueError as e:
        raise type(e)(f"{e}\nBoard detection: {detection_summary(detections)}.") from e
    missing = tuple(n for n in sources if n not in obs.camera_names)
    result = dataclasses.replace(result, unconnected=missing + result.unconnected,
                                 warnings=tuple(problems) + result.warnings)
    write_calibration(result.rig, out_path, metadata={
        "board": board.name,
        "rms_px": round(result.bundle.rms_px, 4),
        "cameras_not_calibrated": list(result.unconnected),
    })
    report_dir.mkdir(parents=True, exist_ok=True)
    pictures = _pictures(obs, result, board, report_dir)
    figures = _figures(detections, obs, result, detect_s, pictures, report_dir)
    return result, figures


def calibrate_intrinsics_sources(
    sources: Mapping[str, Path],
    board: Board,
    out_path: Path,
    report_dir: Path,
    config: CalibrationConfig | None = None,
    progress: Progress | None = None,
) -> tuple[IntrinsicsOnlyResult, dict]:
    """Each camera's intrinsics from its own recording (camera name -> image folder or video), no view taken
    as simultaneous; writes ``out_path`` (intrinsics only, flagged in its metadata) and coverage pictures in
    ``report_dir``. Returns the result and the report's figures. Nothing is written when a camera fails."""
    config = config or CalibrationConfig()
    if not sources:
        raise FileNotFoundError("no calibration recordings given: one image folder or video per camera is needed")
    start = time.perf_counter()
    detections, _ = detect_all(sources, board, config, progress, cache_dir=report_dir / "detections",
                               every_camera=True)
    detect_s = time.perf_counter() - start
    obs = observations_from_detections(detections, board.object_points)
    if progress:
        progress("calibrating intrinsics", 0, None)
    try:
        result = calibrate_intrinsics_only(obs, board.object_points, config, progress=lambda msg: log.info("%s", msg))
    except ValueError as e:
        raise type(e)(f"{e}\nBoard detection: {detection_summary(detections)}. No calibration file was written.") from e
    write_calibration(result.rig, out_path, metadata={
        "board": board.name,
        INTRINSICS_ONLY: True,
        "extrinsics": "missing: every camera's pose is an identity placeholder; add the poses with mocap calibrate "
                      "--intrinsics THIS_FILE on a board recording seen by the cameras at the same time",
        "intrinsics_rms_px": {r.camera: round(r.rms_px, 4) for r in result.intrinsics},
    })
    report_dir.mkdir(parents=True, exist_ok=True)
    pictures = {}
    for c, name in enumerate(obs.camera_names):
        pictures[f"coverage_{name}"] = coverage_picture(obs, c, report_dir / f"coverage_{name}.png").name
    per_camera = {}
    for d, rep, cam in zip(detections, result.intrinsics, result.rig, strict=True):
        per_camera[d.camera] = {
            "frames_read": d.frames_read, "board_views": len(d.detections), "rejected": dict(d.rejected),
            **({"found_by": dict(d.found_by)} if d.found_by else {}),
            "image_size": list(cam.size),
            "focal_px": [round(cam.K[0, 0], 3), round(cam.K[1, 1], 3)],
            "principal_point_px": [round(cam.K[0, 2], 3), round(cam.K[1, 2], 3)],
            "distortion": [round(float(x), 6) for x in cam.dist],
            "intrinsics": {"rms_px": round(rep.rms_px, 4), "views_used": rep.views_used,
                           "coverage": round(rep.coverage, 3)},
        }
    figures = {
        "intrinsics_only": True,
        "cameras": per_camera,
        "seconds": {"detection": round(detect_s, 2), "intrinsics": round(result.seconds, 2)},
        "pictures": {k: str(Path(report_dir.name) / v) for k, v in pictures.items()},
    }
    return result, figures


def _pictures(obs: BoardObservations, result: CalibrationResult, board: Board, report_dir: Path) -> dict[str, str]:
    pics: dict[str, str] = {}
    for c, name in enumerate(obs.camera_names):
        if np.any(obs.cam == c):
            path = coverage_picture(obs, c, report_dir / f"coverage_{name}.png")
            pics[f"coverage_{name}"] = path.name
    linked = obs.for_cameras(list(result.rig.names))
    if len(linked.cam) == len(result.bundle.residuals_px):
        pics["residuals"] = residuals_picture(linked, result.bundle.residuals_px, result.bundle.inliers,
                                              report_dir / "residuals.png").name
    seen = np.unique(linked.view)
    pics["rig"] = rig_picture(result.rig, result.board_poses[seen], report_dir / "rig.png", board.size_m).name
    return pics


def _figures(detections, obs, result: CalibrationResult, detect_s: float, pictures, report_dir: Path) -> dict:
    per_camera = {}
    intr = {r.camera: r for r in result.intrinsics}
    for d in detections:
        entry = {
            "frames_read": d.frames_read,
            "board_views": len(d.detections),
            "rejected": dict(d.rejected),
        }
        if d.found_by:
            entry["found_by"] = dict(d.found_by)
        if d.camera in result.per_camera_rms_px:
            cam = result.rig[d.camera]
            entry.update({
                "reprojection_rms_px": round(result.per_camera_rms_px[d.camera], 4),
                "corners_used": result.per_camera_observations[d.camera],
                "focal_px": [round(cam.K[0, 0], 3), round(cam.K[1, 1], 3)],
                "principal_point_px": [round(cam.K[0, 2], 3), round(cam.K[1, 2], 3)],
                "distortion": [round(float(x), 6) for x in cam.dist],
                "centre_m": [round(float(x), 5) for x in cam.center],
            })
        if d.camera in intr:
            r = intr[d.camera]
            entry["intrinsics"] = {"rms_px": round(r.rms_px, 4), "views_used": r.views_used,
                                   "coverage": round(r.coverage, 3)}
        per_camera[d.camera] = entry
    return {
        "cameras": per_camera,
        "reprojection_rms_px": round(result.bundle.rms_px, 4),
        "corners": int(len(result.bundle.inliers)),
        "corners_rejected": int((~result.bundle.inliers).sum()),
        "board_views": int(obs.n_views),
        "cameras_not_calibrated": list(result.unconnected),
        "seconds": {"detection": round(detect_s, 2), **{k: round(v, 2) for k, v in result.seconds.items()}},
        "pictures": {k: str(Path(report_dir.name) / v) for k, v in pictures.items()},
    }


def _check_overwrite(path: Path, session: Session | None, force: bool) -> None:
    """Refuse to replace a calibration this stage did not write, unless forced (then keep a backup)."""
    if not path.exists():
        return
    previous = session.read_stage_report(STAGE) if session else None
    ours = previous is not None and path.name in [Path(o).name for o in previous.get("outputs", [])]
    if ours:
        return
    if not force:
        raise OverwriteRefused(
            f"{path} exists and was not written by 'mocap calibrate' for this session; it may be a calibration "
            "you made elsewhere. Move it away, or pass --force (it will be kept as a .bak copy)."
        )
    _keep_copy(path, "{name}.%Y%m%d-%H%M%S.bak")


def _keep_copy(path: Path, pattern: str) -> Path:
    """Copy ``path`` beside itself before it is replaced; ``pattern`` names the copy from {name}, {stem},
    {suffix} and strftime fields."""
    backup = path.with_name(time.strftime(pattern).format(name=path.name, stem=path.stem, suffix=path.suffix))
    shutil.copy2(path, backup)
    log.warning("kept the previous %s as %s", path.name, backup.name)
    return backup


def load_stage_config(path: Path | None, overrides: Mapping | None = None, raw: Mapping | None = None) -> CalibrationConfig:
    """The stage config from a mapping (session.toml's [calibrate] table) or a TOML file, then overrides."""
    data = dict(raw or {})
    if path is not None:
        doc = load_toml(path)
        data.update(doc.get(STAGE, doc))
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config_from_mapping(CalibrationConfig, data, str(path or "calibrate config"))


def run_calibrate(session: Session, config: CalibrationConfig | None = None, overwrite: bool = False, *,
                  progress: Progress | None = None, intrinsics_file: Path | None = None,
                  force: bool = False, intrinsics_only: bool = False) -> StageReport:
    """Calibrate a session from ``calibration/<camera>.*`` -> calibration.toml; skipped when inputs and settings
    are unchanged (unless ``overwrite``). A calibration.toml this stage did not write is replaced only with
    ``force`` (a .bak copy is kept). ``config`` None reads session.toml's [calibrate]. ``intrinsics_only``: each
    camera calibrated alone from its own recording (photos taken one camera at a time), and calibration.toml
    holds intrinsics only (flagged; later stages refuse it until extrinsics are added). ``intrinsics_file`` may
    be the session's own calibration.toml (it is read before it is replaced)."""
    session.require()
    sources = session.calibration_sources()
    if not sources:
        raise FileNotFoundError(
            f"{session.calibration_recordings_dir}: no board recordings; put one video (<camera>.mp4) or image "
            "folder (<camera>/) per camera there, or use 'mocap calibrate --board ... --camera NAME=PATH'"
        )
    if intrinsics_only and intrinsics_file:
        raise ValueError("--intrinsics-only calibrates the intrinsics; it takes no --intrinsics FILE")
    config = config or session.stage_config(STAGE, CalibrationConfig)
    board_ref = session.board_path()
    board = load_board(board_ref)
    settings = {"config": config_to_mapping(config), "board": dataclasses.asdict(board) | {"source": None},
                "intrinsics_only": intrinsics_only}
    inputs = list(sources.values()) + ([Path(board_ref)] if isinstance(board_ref, Path) else [])
    if intrinsics_file:
        inputs.append(Path(intrinsics_file))
    key = session.inputs_fingerprint(inputs, settings)
    out = session.calibration_path
    if not overwrite and session.is_up_to_date(STAGE, key, [out]):
        log.info("calibration is up to date (%s); use --overwrite to redo it", out)
        return session.previous_report(STAGE)
    _check_overwrite(out, session, force)
    start = time.perf_counter()
    report_dir = session.stage_asset_dir(STAGE)
    if intrinsics_only:
        result, figures = calibrate_intrinsics_sources(sources, board, out, report_dir, config, progress)
    else:
        known = read_known_intrinsics(intrinsics_file) if intrinsics_file else None
        result, figures = calibrate_sources(sources, board, out, report_dir, config, known, progress)
    report = StageReport(STAGE, key, (str(out),), figures, result.warnings, time.perf_counter() - start)
    session.write_stage_report(report)
    return report


def read_known_intrinsics(path: Path) -> dict[str, Camera]:
    """Camera name -> camera of a calibration file whose intrinsics to start from (its poses are ignored)."""
    return {c.name: c for c in read_calibration(path)}


def run_explicit(sources: Mapping[str, Path], board_ref: str, out: Path, force: bool = False,
                 config: CalibrationConfig | None = None, intrinsics_file: Path | None = None,
                 progress: Progress | None = None, intrinsics_only: bool = False) -> CalibrateOutcome:
    """Calibrate from a board and one recording per camera, outside any session; writes ``out`` and a
    report folder ``<out stem>_report/`` beside it. Image folders count as simultaneous views only when their
    file names correspond (:mod:`calibration.recordings`); ``intrinsics_only`` calibrates each camera alone."""
    board = load_board(board_ref)
    if intrinsics_only and intrinsics_file:
        raise ValueError("--intrinsics-only calibrates the intrinsics; it takes no --intrinsics FILE")
    if out.exists() and not force:
        raise OverwriteRefused(f"{out} exists; choose another --out or pass --force (the old file is kept as .bak)")
    known = read_known_intrinsics(intrinsics_file) if intrinsics_file else None
    if out.exists():
        _keep_copy(out, "{name}.%Y%m%d-%H%M%S.bak")
    report_dir = out.with_name(out.stem + "_report")
    start = time.perf_counter()
    if intrinsics_only:
        result, figures = calibrate_intrinsics_sources(sources, board, out, report_dir, config, progress)
    else:
        result, figures = calibrate_sources(sources, board, out, report_dir, config, known, progress)
    files = [f for p in sources.values() for f in (sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])]
    key = fingerprint(files)
    data = {"stage": STAGE, "inputs_fingerprint": key, "outputs": [str(out)],
            "seconds": round(time.perf_counter() - start, 3), "figures": figures, "warnings": list(result.warnings)}
    report_path = write_json_atomic(report_dir / "report.json", data)
    return CalibrateOutcome(out, report_path, result, False)


# --------------------------------------------------------------------------------------------------
# Import of a calibration made elsewhere
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportOutcome:
    """What ``mocap calibrate --import`` wrote."""

    calibration_path: Path
    source: Path
    format: str
    """The reader used (see ``calibration.formats.detect_format``)."""
    rig: CameraRig
    backup: Path | None
    """The replaced file's copy (with --force), if any."""
    intrinsics_only: bool


def import_calibration(source: Path, out: Path, session: Session | None = None, overwrite: bool = False,
                       force: bool = False, plausibility: PlausibilityConfig | None = None) -> ImportOutcome:
    """Read any supported calibration (aniposelib / Pose2Sim / caliscope TOML, EasyMocap yml, OpenCV yml,
    Qualisys .qca.txt: ``calibration.formats.read_calibration``) and write it as our calibration TOML at ``out``.

    An existing ``out`` is kept unless ``overwrite`` (a file ``mocap calibrate`` wrote for ``session``) or
    ``force`` (any file; a .bak copy is kept). Implausible cameras are refused (nothing is written). The
    imported file counts as made elsewhere: ``mocap calibrate`` will not replace it without --force.
    """
    source = Path(source)
    fmt = detect_format(source)
    rig = read_calibration(source)
    check_cameras(rig, None, plausibility or PlausibilityConfig(),
                  f"{source} was read as {fmt}; check that it is the calibration you meant. Nothing was written.")
    flagged = is_intrinsics_only(source)
    backup = _check_import_target(out, session, overwrite, force)
    write_calibration(rig, out, metadata={
        "imported_from": str(source.resolve()),
        "imported_format": fmt,
        **({INTRINSICS_ONLY: True} if flagged else {}),
    })
    if session is not None and out == session.calibration_path and session.stage_report_path(STAGE).exists():
        # that report described the replaced calibration; without it the file counts as made elsewhere
        session.stage_report_path(STAGE).unlink()
        log.info("removed %s (it described the replaced calibration)", session.stage_report_path(STAGE))
    return ImportOutcome(out, source, fmt, rig, backup, flagged)


def _check_import_target(out: Path, session: Session | None, overwrite: bool, force: bool) -> Path | None:
    """Whether ``out`` may be replaced by an import (see :func:`import_calibration`); the backup made, if any."""
    if not out.exists():
        return None
    previous = session.read_stage_report(STAGE) if session else None
    ours = previous is not None and out.name in [Path(o).name for o in previous.get("outputs", [])]
    if force:
        return _keep_copy(out, "{name}.%Y%m%d-%H%M%S.bak")
    if ours and overwrite:
        return None
    if ours:
        raise OverwriteRefused(f"{out} exists (written by 'mocap calibrate'); pass --overwrite to replace it with the "
                               "imported calibration, or --force to keep a .bak copy of it")
    raise OverwriteRefused(
        f"{out} exists and was not written by 'mocap calibrate' here; it may be a calibration you made elsewhere. "
        "Move it away, or pass --force (it will be kept as a .bak copy)."
    )


# --------------------------------------------------------------------------------------------------
# Refinement from the performer's keypoints
# --------------------------------------------------------------------------------------------------
def dlt_triangulator(rig, uv: np.ndarray) -> np.ndarray:
    """Triangulate observed pixels (C, N, 2) with the rig (the reconstruction stage's weighted DLT)."""
    from mocap_studio.reconstruction.triangulate import weighted_dlt

    xy = rig.undistort_points(uv)
    extrinsics = np.stack([np.hstack([c.R, c.t[:, None]]) for c in rig])
    return weighted_dlt(extrinsics, xy, np.isfinite(xy).all(-1).astype(float))


def load_points_2d(path: Path, rig) -> np.ndarray:
    """2D correspondences (C, N, 2) in the rig's camera order from ``keypoints2d.npz`` (our format: cameras
    matched by name, frames x joints flattened, low-confidence points dropped) or a plain npz holding a
    (C, N, 2) array ``p2d`` (aniposelib's order: the calibration file's camera order)."""
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        if "p2d" in keys and "camera_names" not in keys:
            uv = np.asarray(data["p2d"], float)
            if uv.ndim != 3 or uv.shape[0] != len(rig) or uv.shape[2] != 2:
                raise ValueError(f"{path}: p2d must have shape ({len(rig)}, N, 2) for the {len(rig)} cameras of the "
                                 f"calibration, got {uv.shape}")
            return uv
    from mocap_studio.reconstruction.keypoints import load_keypoints2d

    kp = load_keypoints2d(path, cameras=list(rig.names))
    xy = np.where((kp.confidence >= 0.5)[..., None], kp.xy, np.nan)
    return xy.reshape(len(rig), -1, 2)


def refine_calibration(calibration: Path, points: Path, out: Path, force: bool = False,
                       config=None) -> tuple[Path, object]:
    """Refine a calibration file from 2D correspondences; writes ``out`` (a backup of ``out`` is kept
    when it already exists and --force is given). Returns (path, RefineResult)."""
    from mocap_studio.calibration.refine import RefineConfig, refine_with_keypoints

    require_extrinsics(calibration, fix=(
        "refinement from keypoints starts from cameras already placed (it keeps their world frame and scale): add "
        "the poses first with a synchronized board recording (mocap calibrate --intrinsics on this file) or import "
        "a full calibration (mocap calibrate --import)"))
    rig = read_calibration(calibration)
    uv = load_points_2d(points, rig)
    if out.exists() and out != calibration and not force:
        raise OverwriteRefused(f"{out} exists; choose another --out or pass --force")
    if out.exists():
        _keep_copy(out, "{stem}_before_refine_%Y%m%d-%H%M%S{suffix}")
    result = refine_with_keypoints(rig, uv, dlt_triangulator, config or RefineConfig())
    write_calibration(result.rig, out, metadata={
        "refined_from_keypoints": str(points.name),
        "median_reprojection_before_px": round(result.median_error_before_px, 3),
        "median_reprojection_after_px": round(result.median_error_after_px, 3),
    })
    return out, result
