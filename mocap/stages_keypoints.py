"""Stage runners for 2D keypoints and triangulation: read the session, call the pure functions in
``reconstruction/``, write the outputs atomically and a report. Outputs are written only once everything
succeeded, so a failed run never replaces a good result.

Stages: ``detect`` (videos -> keypoints2d.npz), ``import-keypoints`` (another detector's files ->
keypoints2d.npz), ``triangulate`` (keypoints2d.npz + calibration.toml [+ sync.json] -> keypoints3d.npz).

Before triangulating, every camera's keypoints are put on one timeline: each camera's frame times (its own
rate, read from its recording) are shifted by its offset from sync.json (common_time = camera_time +
offset_s, matched by camera name) and resampled with :func:`capture.sync.resample_series`, so cameras at 30
and 60 fps, or with sub-frame offsets, triangulate together.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from mocap_studio.capture.frames import FrameSourceError, probe
from mocap_studio.capture.sync import SyncError
from mocap_studio.common.config import config_to_mapping
from mocap_studio.common.fileio import fingerprint as fingerprint_files
from mocap_studio.common.fileio import write_json_atomic
from mocap_studio.common.order import natural_key
from mocap_studio.inputs import read_keypoints2d, read_rig
from mocap_studio.inputs import read_sync as read_sync_file
from mocap_studio.reconstruction.associate import (
    AssociationConfig,
    associate_with_diagnostics,
    other_keypoints,
    person_ids,
    person_keypoints,
)
from mocap_studio.reconstruction.detect2d import MEDIAPIPE_MASK_BLUR, DetectionConfig, PersonMasks, detect_sources
from mocap_studio.reconstruction.filtering import FilterConfig, smooth
from mocap_studio.reconstruction.importers import read_keypoints
from mocap_studio.reconstruction.keypoints import (
    Detections2D,
    Keypoints2D,
    Keypoints3D,
    SynchronizedKeypoints2D,
    save_synchronized_keypoints2d,
)
from mocap_studio.reconstruction.silhouettes import MEDIAPIPE_OUTLINE_ALLOWANCE_PX, MaskPacker, MaskSet
from mocap_studio.reconstruction.timeline import common_timeline, resample_series
from mocap_studio.reconstruction.triangulate import (
    TriangulationConfig,
    TriangulationDiagnostics,
    triangulate_with_diagnostics,
)
from mocap_studio.session import Session, StageReport
from mocap_studio.stages import Progress

log = logging.getLogger(__name__)

__all__ = [
    "ImportConfig", "read_rig", "run_detect", "run_import_keypoints", "run_triangulate", "keypoints2d_figures",
    "keypoints3d_figures", "camera_frame_times", "synchronize_keypoints",
]


@dataclass(frozen=True)
class ImportConfig:
    """The ``[import-keypoints]`` table of session.toml: where another detector's 2D keypoints are."""

    source: str = ""
    """A folder with one entry per camera (OpenPose/MMPose/EasyMocap), or an npz file; relative to the session."""
    format: str = ""
    """The detector's file format (see ``reconstruction.importers.FORMATS``)."""
    skeleton: str = ""
    """Skeleton of the files; empty tells it from the data (the joint count, and where layouts share a count,
    as BODY_25 and BODY_25B do, which one the detections fit; when they do not tell, the stage asks)."""
    cameras: tuple[str, ...] = ()
    """Cameras to import, by name; empty takes session.toml's cameras, else every camera found."""
    frame_rate: float = 0.0
    """Frames per second of the imported keypoints (``--fps``); 0 takes session.toml's [session] frame_rate,
    else the frame rate of the session's recordings of the same cameras, else the stage stops and asks."""

    def __post_init__(self) -> None:
        if not self.frame_rate >= 0:  # also NaN
            raise ValueError(f"frame_rate must be >= 0 frames per second (0: from the session), got {self.frame_rate}")


def _skip(session: Session, stage: str, fingerprint: str, outputs: list[Path], overwrite: bool) -> StageReport | None:
    if not overwrite and session.is_up_to_date(stage, fingerprint, outputs):
        log.info("%s: inputs unchanged since the last run; skipping (use --overwrite to redo)", stage)
        return session.previous_report(stage)
    return None


def several_people(session: Session) -> bool:
    """True when session.toml asks for several people (``[associate] people`` other than 1)."""
    return session.stage_config("associate", AssociationConfig).people != 1


def _choose_performer(session: Session, detections: Detections2D, warnings: list[str],
                      figures: dict[str, Any] | None = None,
                      people: dict[str, Keypoints2D] | None = None,
                      others: list[Keypoints2D] | None = None) -> Keypoints2D:
    """The performer among several people per frame ([associate] of session.toml): every person is followed
    over the take and one track chosen (``[associate] performer``). ``figures``, when given, gets
    ``association``: per camera the fraction of frames the performer was found in, the threshold and the median
    error against the other cameras; the people found (tracks seen in 10 % of the frames or more), every track,
    the performer's track with its support and the next best's, and the seconds it took. ``people``, when given
    and ``[associate] people`` is not 1, gets each kept person's keypoints by id (the performer's alone, as
    ``p0``, where nobody was told apart); ``others``, when given, the detections of the tracks not kept
    (:func:`other_keypoints`)."""
    if detections.num_people == 1:
        kp = detections.person(0)
        if people is not None and several_people(session):
            people["p0"] = kp
        return kp
    if not session.calibration_path.exists():
        warnings.append(f"several people per frame but no {session.calibration_path.name} to tell them apart: took "
                        "the first in every frame; calibrate first (`mocap calibrate`) to choose the performer")
        return detections.person(0)
    config = session.stage_config("associate", AssociationConfig)
    rig = read_rig(session, fit_to_recordings=True)
    result = associate_with_diagnostics(rig, detections, config)
    detected = (detections.confidence > 0).any(axis=(2, 3))  # (C, T): anybody seen
    report = result.figures(detected)
    if figures is not None:
        figures["association"] = report
    if people is not None and config.people != 1:
        people.update(person_keypoints(detections, result) or {"p0": result.keypoints})
        if others is not None:
            others.extend(other_keypoints(detections, result))
        if isinstance(config.people, int) and len(people) < config.people:
            warnings.append(f"{config.people} people asked for ([associate] people) but {len(people)} found by two "
                            "cameras at once; check that every camera sees them, and [detect] num_poses (people "
                            "detected per image)")
    chosen = report.get("performer")
    if chosen is None:
        if report["tracks"] is not None:  # None: one person per camera and frame, taken as is
            warnings.append("nobody was found by two cameras at once in any frame: no performer; check the calibration "
                            f"({session.calibration_path.name}) and that the cameras see the same people")
    elif chosen["next_support"] is not None and chosen["next_support"] >= 0.9 * chosen["support"]:
        warnings.append(f"{report['people']} people are about equally well seen (support {chosen['support']:.0f} "
                        f"and {chosen['next_support']:.0f}); the performer was chosen as {chosen['policy']}: check "
                        "the take, or set [associate] performer (most_seen, first, closest_to_centre)")
    cap = {c.name: config.max_error_fraction * float(np.hypot(*c.size)) for c in rig.cameras}
    for name, row in report["per_camera"].items():
        threshold, error = row["threshold_px"], row["median_error_px"]
        if threshold is None:  # one person per camera and frame: nothing was matched, nothing to tell
            continue
        how = f"threshold {threshold:.0f} px" + (f", its median error against the other cameras {error:.0f} px"
                                                 if error is not None else "")
        if row["found"] < 0.5:
            anybody = 100 * float(detected[detections.camera_names.index(name)].mean())
            warnings.append(f"camera {name}: the performer was found in only {100 * row['found']:.0f} % of frames "
                            f"({how}; somebody was detected in {anybody:.0f} %); check that camera's view (the "
                            "detector may miss the performer there) and calibration, or set [associate] max_error_px")
        elif result.adaptive and threshold >= cap[name] - 0.01 and (error is None or error >= 0.5 * cap[name]):
            warnings.append(f"camera {name}: its reprojection errors reach the association ceiling ({how}); its "
                            f"calibration may not match the other cameras': check it (`mocap calibrate`)")
        elif result.adaptive and threshold >= cap[name] - 0.01:  # the report rounds to 0.01 px
            warnings.append(f"camera {name}: its errors against the other cameras spread up to the association "
                            f"ceiling ({how}): the detector places joints inconsistently in that view (people "
                            "overlapping or cut off there); detections beyond the ceiling were left out")
    return result.keypoints


def keypoints2d_figures(kp: Keypoints2D) -> dict[str, Any]:
    """Per camera: fraction of frames with a detection, mean confidence of detected joints."""
    seen = kp.confidence > 0
    out: dict[str, Any] = {"frames": kp.num_frames, "joints": kp.num_joints, "skeleton": kp.skeleton}
    per_camera = {}
    for c, name in enumerate(kp.camera_names):
        detected = seen[c].any(-1)
        conf = kp.confidence[c][seen[c]]
        per_camera[name] = {
            "frames_detected": float(detected.mean()) if kp.num_frames else 0.0,
            "mean_confidence": float(conf.mean()) if conf.size else float("nan"),
        }
    out["per_camera"] = per_camera
    return out


def _write_keypoints2d(session: Session, stage: str, kp: Keypoints2D, fingerprint: str, t0: float,
                       warnings: list[str], extra: dict[str, Any]) -> StageReport:
    empty = [n for n, f in keypoints2d_figures(kp)["per_camera"].items() if f["frames_detected"] == 0]
    if len(empty) == kp.num_cameras:
        raise RuntimeError(
            f"{stage}: nobody was detected in any camera ({', '.join(kp.camera_names)}); check that the performer "
            f"is in view and lit, and that the recordings are the take's; {session.keypoints2d_path} left as it was")
    warnings += [f"camera {n}: no detection in any frame" for n in empty]
    kp.save(session.keypoints2d_path)
    report = StageReport(stage, fingerprint, (str(session.keypoints2d_path),),
                         {**keypoints2d_figures(kp), **extra}, tuple(warnings), time.perf_counter() - t0)
    session.write_stage_report(report)
    for w in warnings:
        log.warning("%s", w)
    return report


def recording_warnings(session: Session, sources: dict[str, Path]) -> list[str]:
    """What is odd about the recordings before detecting: a calibrated camera with no recording, one that is
    clearly shorter than the others (more than a second or 10 %), mixed frame rates. Unreadable files raise."""
    warnings: list[str] = []
    if session.calibration_path.exists():
        missing = [c for c in read_rig(session, require_extrinsics=False).names if c not in sources]
        if missing:
            warnings.append(f"camera(s) {missing} are in {session.calibration_path.name} but have no recording in "
                            f"{session.videos_dir.name}/ or {session.images_dir.name}/; the take uses the other "
                            f"{len(sources)} camera(s)")
    infos = {}
    for name, path in sources.items():
        try:
            infos[name] = probe(path)
        except FrameSourceError as e:
            raise FrameSourceError(f"camera {name}: {e}") from e
    durations = {c: i.duration_s for c, i in infos.items() if np.isfinite(i.duration_s)}
    if durations:
        longest = max(durations.values())
        for c, d in durations.items():
            if longest - d > max(1.0, 0.1 * longest):
                warnings.append(f"camera {c}: its recording is {longest - d:.1f} s shorter than the longest "
                                f"({d:.1f} s against {longest:.1f} s); frames outside it are seen by fewer cameras")
    return warnings


def run_detect(
    session: Session, config: DetectionConfig | None = None, overwrite: bool = False, *,
    progress: Progress | None = None,
) -> StageReport:
    """Detect keypoints in every camera's recording and choose the performer -> keypoints2d.npz.

    ``config`` None reads session.toml's [detect]; ``progress(label, done, total)`` counts detection jobs."""
    t0 = time.perf_counter()
    session.require()
    config = config or session.stage_config("detect", DetectionConfig)
    if not config.frame_rate and session.config().frame_rate:
        config = DetectionConfig(**{**config_to_mapping(config), "frame_rate": session.config().frame_rate})
    sources = session.performance_sources()
    if not sources:
        raise FileNotFoundError(f"{session.videos_dir} or {session.images_dir}: no recordings found")
    inputs = list(sources.values()) + [session.calibration_path]
    settings = config_to_mapping(config)
    if several_people(session):  # the people kept depend on the association's settings and the crops' model
        from mocap_studio.reconstruction.detect2d import crop_model_path

        settings = {"detect": settings, "associate": config_to_mapping(session.stage_config("associate",
                                                                                            AssociationConfig)),
                    "crop_model": crop_model_path(config)[0].name}
    fingerprint = session.inputs_fingerprint(inputs, settings)
    skipped = _skip(session, "detect", fingerprint, [session.keypoints2d_path], overwrite)
    if skipped is not None:
        return skipped
    warnings: list[str] = recording_warnings(session, sources)
    for w in warnings:
        log.warning("%s", w)
    if config.hands:
        from mocap_studio.reconstruction.hands import missing_hand_model

        if missing := missing_hand_model():  # detect_sources says it in the log; the report says it too
            warnings.append(missing)

    def detect_progress(done: int, total: int, fps: float) -> None:
        if progress:
            progress(f"detecting keypoints ({fps:.0f} frames/s)", done, total)

    person_masks: list[PersonMasks] = []
    hands: dict[str, dict[str, int]] = {}
    detections = detect_sources(sources, config, progress=detect_progress, masks_out=person_masks, hands_out=hands)
    seconds = time.perf_counter() - t0
    people: dict[str, Keypoints2D] = {}
    others: list[Keypoints2D] = []
    kp = _choose_performer(session, detections, warnings, association := {}, people, others)
    frames = detections.xy.shape[0] * detections.xy.shape[1]
    extra = {"detection_frames_per_second": frames / max(seconds, 1e-9), "people_slots": detections.num_people,
             **association}
    if hands:  # the share of hands the hand landmarker found where the pose saw a wrist, per camera
        extra["hands_found"] = {cam: round(n["found"] / n["tried"], 3) if n["tried"] else None for cam, n in hands.items()}
    if person_masks:
        extra["masks"] = _write_performer_masks(session, detections, kp, person_masks[0])
    elif session.masks_path.exists():
        session.masks_path.unlink()  # an earlier run's masks would not match these keypoints
    hidden = 0.0
    if people and (association := session.stage_config("associate", AssociationConfig)).crop_refine:
        people = _refine_people(session, sources, config, association, people, others, extra, warnings, progress)
        kp = people["p0"]  # the performer, as every person, detected again in crops
        hidden = association.crop_hidden_confidence
    _write_people(session, people, extra, hidden)
    return _write_keypoints2d(session, "detect", kp, fingerprint, t0, warnings, extra)


def _refine_people(session: Session, sources: dict[str, Path], config: DetectionConfig,
                   association: AssociationConfig, people: dict[str, Keypoints2D], others: list[Keypoints2D],
                   figures: dict[str, Any], warnings: list[str], progress: Progress | None) -> dict[str, Keypoints2D]:
    """Several people: each person followed and detected again in crops around where the other cameras place
    them (:mod:`reconstruction.crowd`; ``others``: the association's tracks not kept, where a lost person is
    looked for); ``figures`` gets ``crowd`` (crops run, people taken up and given up, detections replaced and
    added, seconds)."""
    from mocap_studio.capture.frames import open_frames
    from mocap_studio.reconstruction.crowd import FlipTest, refine_in_crops
    from mocap_studio.reconstruction.detect2d import PoseLandmarker, crop_model_path
    from mocap_studio.reconstruction.skeletons import get_format

    model, fallback = crop_model_path(config)
    if fallback:
        log.warning("%s", fallback)
        warnings.append(fallback)
    figures["crop_model"] = model.name
    crop_config = DetectionConfig(**{**config_to_mapping(config), "model_path": str(model), "num_poses": 2,
                                     "masks": False,
                                     "min_detection_confidence": min(config.min_detection_confidence, 0.3),
                                     "min_presence_confidence": min(config.min_presence_confidence, 0.3)})
    flip = association.crop_flip_test
    figures["crop_flip_test"] = flip
    mirror = get_format(next(iter(people.values())).skeleton).flip_permutation

    def landmarker() -> PoseLandmarker | FlipTest:
        plain = PoseLandmarker(crop_config, video=False)
        return FlipTest(plain, mirror) if flip else plain

    refined, figures["crowd"] = refine_in_crops(
        sources, read_rig(session, fit_to_recordings=True), people, landmarker,
        open_frames, candidates=others, hidden_confidence=association.crop_hidden_confidence, progress=progress)
    return refined


def _write_people(session: Session, people: dict[str, Keypoints2D], figures: dict[str, Any],
                  hidden_confidence: float = 0.0) -> None:
    """Several people: each one's keypoints2d.npz in ``people/<id>/`` and ``people.json`` (ids and figures:
    frames found per camera, a camera finding a person where a joint of theirs is above ``hidden_confidence``,
    so a view kept weak as hidden by a nearer person (``[associate] crop_hidden_confidence``) does not count);
    one performer: any earlier run's ``people.json`` removed (its folders stay, unread). ``figures`` gets
    ``people``."""
    if not people:
        if session.people_path.exists():
            session.people_path.unlink()
        return
    rows = []
    for pid in person_ids(len(people)):
        kp = people[pid]
        person = session.person(pid)
        person.root.mkdir(parents=True, exist_ok=True)
        kp.save(person.keypoints2d_path)
        seen = (kp.confidence > hidden_confidence + 1e-6).any(-1)  # the files keep float32
        rows.append({"id": pid, "folder": str(person.root.relative_to(session.root)),
                     "frames_seen_by_two_cameras": round(float((seen.sum(0) >= 2).mean()), 4),
                     "frames_found_per_camera": {c: round(float(seen[i].mean()), 4)
                                                 for i, c in enumerate(kp.camera_names)}})
    write_json_atomic(session.people_path, {"people": rows})
    figures["people"] = rows


def _write_performer_masks(session: Session, detections: Detections2D, kp: Keypoints2D, masks: PersonMasks) -> dict:
    """masks.npz: in every camera and frame the mask of the person slot whose keypoints were chosen as the
    performer's (MediaPipe gives one mask per detected pose). Returns figures: the size, the scale, the
    share of frames with a mask per camera, the file's size."""
    C, T = kp.xy.shape[:2]
    chosen = np.full((C, T), -1)
    for p in range(detections.num_people):
        same = np.isclose(detections.xy[:, :, p], kp.xy, equal_nan=True).all((-1, -2))
        seen = (kp.confidence > 0).any(-1) & np.isfinite(kp.xy).all(-1).any(-1)
        chosen = np.where((chosen < 0) & same & seen, p, chosen)
    h, w = masks.size
    packer = MaskPacker((C, T), (h, w))
    for c in range(C):
        for t in np.flatnonzero(chosen[c] >= 0):
            packer.add_packed((c, t), *masks.packed.packed((c, t, int(chosen[c, t]))))
    packed = packer.build()
    present = (chosen >= 0) & packed.nonempty
    times = np.where(np.ones((C, 1), bool), np.asarray(detections.frame_times, float)[None], np.nan)
    MaskSet(tuple(detections.camera_names), packed, present, times, masks.scale, masks.image_size,
            MEDIAPIPE_MASK_BLUR, MEDIAPIPE_OUTLINE_ALLOWANCE_PX).save(session.masks_path)
    return {"size": [h, w], "scale": masks.scale, "frames_with_mask": {n: float(present[i].mean())
                                                                       for i, n in enumerate(detections.camera_names)},
            "file_bytes": session.masks_path.stat().st_size}


def import_sources(source: Path, cameras: list[str] | None, fmt: str) -> dict[str, Path]:
    """Camera name -> file or folder under ``source`` (a folder per camera, or ``<camera>.json``); for npz,
    ``source`` is the file and ``cameras`` its cameras to take (all when empty)."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: not found; give the folder that holds one folder or .json file per camera "
                                "(or, for npz, the file)")
    if fmt == "npz":
        if not cameras:
            with np.load(source, allow_pickle=False) as npz:
                cameras = [str(c) for c in npz["camera_names"]] if "camera_names" in npz.files else []
        return {c: source for c in cameras}
    found = {
        p.stem if p.is_file() else p.name: p
        for p in source.iterdir()
        if not p.name.startswith(".") and (p.is_dir() or p.suffix == ".json")
    }
    if cameras:
        missing = [c for c in cameras if c not in found]
        if missing:
            raise FileNotFoundError(f"{source}: nothing for camera(s) {missing}; found {sorted(found, key=natural_key)}; "
                                    "name each camera's folder or .json file after the camera, or choose cameras "
                                    "with --camera")
        found = {c: found[c] for c in cameras}
    if not found:
        raise FileNotFoundError(f"{source}: expected one folder or .json file per camera, named by camera "
                                "(e.g. cam01/ holding cam01's per-frame OpenPose files)")
    return {k: found[k] for k in sorted(found, key=natural_key)}


def _npz_frame_rate(sources: dict[str, Path]) -> float | None:
    """The frame rate an npz file's own ``frame_times`` give (median step), None when it stores none."""
    paths = {Path(p) for p in sources.values()}
    if len(paths) != 1 or not next(iter(paths)).is_file():
        return None
    with np.load(next(iter(paths)), allow_pickle=False) as data:
        times = np.asarray(data["frame_times"], float) if "frame_times" in data.files else np.zeros(0)
    steps = np.diff(times[np.isfinite(times)])
    steps = steps[steps > 0]
    return float(1.0 / np.median(steps)) if steps.size else None


def _import_frame_rate(session: Session, config: ImportConfig, sources: dict[str, Path]) -> tuple[float, dict[str, Any]]:
    """The imported keypoints' frame rate and where it came from: ``frame_rate`` of [import-keypoints]
    (``--fps``), else an npz file's own frame times, else session.toml's [session] frame_rate, else the
    recordings of the same cameras in the session (the first camera's rate when they differ; triangulation reads
    each camera's own). Raises when none says."""
    if config.frame_rate > 0:
        return config.frame_rate, {"from": "--fps / [import-keypoints] frame_rate"}
    stored = _npz_frame_rate(sources) if config.format == "npz" else None
    if stored is not None:
        return stored, {"from": "the frame times stored in the npz file"}
    if session.config().frame_rate > 0:
        return session.config().frame_rate, {"from": f"{session.config_path.name} [session] frame_rate"}
    try:
        recordings = session.performance_sources()
    except FileNotFoundError as e:
        log.debug("no recordings to read the frame rate from: %s", e)
        recordings = {}
    rates: dict[str, float] = {}
    for camera in sources:
        path = recordings.get(camera)
        if path is None or not path.is_file():
            continue
        try:
            fps = probe(path).fps
        except FrameSourceError as e:
            raise FrameSourceError(f"camera {camera}: cannot read the frame rate of {path} ({e}); give --fps") from e
        if np.isfinite(fps) and fps > 0:
            rates[camera] = float(fps)
    if not rates:
        have = sorted(recordings, key=natural_key)
        raise ValueError(
            f"import-keypoints: no frame rate for the keypoints of camera(s) {list(sources)}: give --fps (or set "
            f"frame_rate in {session.config_path} [import-keypoints] or [session]); the session has no video of "
            f"these cameras to read it from" + (f" (it has videos of {have})" if have else ""))
    first = next(iter(rates))
    if len(set(rates.values())) > 1:
        log.info("imported cameras' recordings differ in frame rate (%s); keypoints2d.npz takes %s's, triangulation "
                 "reads each camera's own", ", ".join(f"{c} {r:.3g} fps" for c, r in rates.items()), first)
    return rates[first], {"from": f"the recording of camera {first}", "recordings_fps": rates}


def run_import_keypoints(
    session: Session, config: ImportConfig | None = None, overwrite: bool = False, *,
    progress: Progress | None = None,
) -> StageReport:
    """Read another detector's output -> keypoints2d.npz (choosing the performer among several people).

    ``config`` None reads session.toml's [import-keypoints] (its source and format must be set). The frame rate
    is ``config.frame_rate``, else session.toml's, else the session's recordings of the same cameras; without
    any the stage stops and asks for ``--fps``. The report holds how the skeleton was chosen (and its evidence)
    and, with several people per frame, the association per camera."""
    t0 = time.perf_counter()
    config = config or session.stage_config("import-keypoints", ImportConfig)
    if not config.source or not config.format:
        raise ValueError(f"import-keypoints needs a source and a format: give SOURCE --format F, or set source and "
                         f"format in {session.config_path} [import-keypoints]")
    source = session.root / config.source  # an absolute source stays as it is
    fmt, skeleton = config.format, config.skeleton or None
    cameras = list(config.cameras) or list(session.config().cameras) or None
    sources = import_sources(source, cameras, fmt)
    frame_rate, rate_info = _import_frame_rate(session, config, sources)
    settings = {"format": fmt, "skeleton": skeleton, "cameras": list(sources), "frame_rate": frame_rate,
                "associate": config_to_mapping(session.stage_config("associate", AssociationConfig))}
    # the source usually lies outside the session: fingerprint its files by absolute path
    files = sorted({q for p in sources.values() for q in (p.rglob("*") if p.is_dir() else [p]) if q.is_file()})
    fingerprint = fingerprint_files(files) + ":" + session.inputs_fingerprint([session.calibration_path], settings)
    skipped = _skip(session, "import-keypoints", fingerprint, [session.keypoints2d_path], overwrite)
    if skipped is not None:
        return skipped
    imported = read_keypoints(sources, fmt, skeleton, frame_rate)
    detections = imported.detections
    warnings: list[str] = list(imported.warnings)
    extra: dict[str, Any] = {"format": fmt, "source": str(source), "people_slots": detections.num_people,
                             "frame_rate": frame_rate, "frame_rate_from": rate_info,
                             "skeleton_choice": imported.layout.as_report()}
    people: dict[str, Keypoints2D] = {}
    kp = _choose_performer(session, detections, warnings, extra, people)
    _write_people(session, people, extra)
    return _write_keypoints2d(session, "import-keypoints", kp, fingerprint, t0, warnings, extra)


def keypoints3d_figures(
    k3: Keypoints3D, residual_px: np.ndarray, frame_rate: float
) -> dict[str, Any]:
    """Quality figures: reprojection error per camera and joint, fraction triangulated, cameras used,
    bone-length variation, jitter. residual_px (C, T, J)."""
    fmt = k3.format
    valid = k3.valid
    with np.errstate(invalid="ignore"):
        per_camera = {
            name: {
                "mean_reprojection_error_px": _nanmean(residual_px[c]),
                "used_fraction": float(k3.cameras_used[..., c][valid].mean()) if valid.any() else 0.0,
            }
            for c, name in enumerate(k3.camera_names)
        }
        per_joint = {
            name: {
                "triangulated": float(valid[:, j].mean()),
                "mean_reprojection_error_px": _nanmean(k3.error[:, j]),
                "interpolated": float(k3.interpolated[:, j].mean()),
            }
            for j, name in enumerate(fmt.joints)
        }
        seg = np.array(fmt.rigid_segments, dtype=int).reshape(-1, 2)
        lengths = np.linalg.norm(k3.xyz[:, seg[:, 1]] - k3.xyz[:, seg[:, 0]], axis=-1)
        bones = {
            f"{fmt.joints[a]}-{fmt.joints[b]}": {
                "median_m": _nanmedian(lengths[:, i]),
                "variation": _nanstd(lengths[:, i]) / max(_nanmedian(lengths[:, i]), 1e-9),
            }
            for i, (a, b) in enumerate(seg)
        }
        accel = np.linalg.norm(np.diff(k3.xyz, 2, axis=0), axis=-1) * frame_rate**2
    return {
        "frames": k3.num_frames,
        "fraction_triangulated": float(valid.mean()),
        "fraction_interpolated": float(k3.interpolated.mean()),
        "mean_reprojection_error_px": _nanmean(k3.error),
        "median_reprojection_error_px": _nanmedian(k3.error),
        "mean_cameras_used": float(k3.cameras_used.sum(-1)[valid].mean()) if valid.any() else 0.0,
        "mean_bone_length_variation": float(np.mean([b["variation"] for b in bones.values()])) if bones else None,
        "jitter_mean_acceleration_m_s2": _nanmean(accel),
        "per_camera": per_camera,
        "per_joint": per_joint,
        "bones": bones,
    }


def _nanmean(a: np.ndarray) -> float | None:
    a = np.asarray(a, float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else None


def _nanmedian(a: np.ndarray) -> float:
    a = np.asarray(a, float)
    return float(np.nanmedian(a)) if np.isfinite(a).any() else float("nan")


def _nanstd(a: np.ndarray) -> float:
    a = np.asarray(a, float)
    return float(np.nanstd(a)) if np.isfinite(a).any() else float("nan")


# ------------------------------------------------------------------------------------------------
# One timeline for every camera (sync.json applied)
# ------------------------------------------------------------------------------------------------
def _rate(times: np.ndarray) -> float:
    return 1.0 / float(np.median(np.diff(times))) if len(times) > 1 else float("nan")


def _snap(timeline: np.ndarray, frames: np.ndarray, tolerance_s: float = 1e-6) -> np.ndarray:
    """timeline (N,) with instants within ``tolerance_s`` of a frame time in ``frames`` (T,) set to it."""
    if len(frames) == 0:
        return timeline
    hi = np.clip(np.searchsorted(frames, timeline), 0, len(frames) - 1)
    lo = np.maximum(hi - 1, 0)
    nearest = np.where(np.abs(frames[lo] - timeline) <= np.abs(frames[hi] - timeline), lo, hi)
    near = np.abs(frames[nearest] - timeline) <= tolerance_s
    return np.where(near, frames[nearest], timeline)


def camera_frame_times(session: Session, kp: Keypoints2D) -> dict[str, np.ndarray]:
    """Each camera's own frame times, by name: camera -> (T_c,) seconds on that camera's clock.

    keypoints2d.npz has one frame-time axis (T,) whose row k is every camera's k-th frame; its times follow
    one rate (the first camera's, for ``mocap detect``). A camera whose recording runs at another rate (a
    60 fps camera beside 30 fps ones) has its frame k at ``frame_times[0] + k / fps``; rows past the end of
    its last detection (padding) are dropped. Without a readable recording the file's times are kept.
    """
    try:
        sources = session.performance_sources()
    except (FileNotFoundError, ValueError) as e:
        log.debug("no recordings to read frame rates from (%s); using keypoints2d.npz's frame times", e)
        sources = {}
    file_times = np.asarray(kp.frame_times, float)
    file_rate = _rate(file_times)
    out: dict[str, np.ndarray] = {}
    for c, name in enumerate(kp.camera_names):
        # rows after a camera's last detection are padding; a dropped frame inside is a missing row
        seen = np.flatnonzero(np.isfinite(kp.xy[c]).any(axis=(1, 2)))
        fps, count = float("nan"), int(seen[-1]) + 1 if len(seen) else kp.num_frames
        source = sources.get(name)
        if source is not None and source.is_file():
            try:
                info = probe(source)
            except FrameSourceError as e:
                log.warning("camera %s: cannot read the frame rate of %s (%s); using keypoints2d.npz's times",
                            name, source, e)
            else:
                fps = info.fps if np.isfinite(info.fps) and info.fps > 0 else fps
        if np.isfinite(fps) and np.isfinite(file_rate) and abs(fps - file_rate) > 1e-3 * file_rate:
            out[name] = file_times[0] + np.arange(count) / fps
        else:
            out[name] = file_times[:count]
    return out


def synchronize_keypoints(
    session: Session, kp: Keypoints2D, camera_times: dict[str, np.ndarray], warnings: list[str]
) -> tuple[Keypoints2D, dict[str, Any]]:
    """Put every camera's keypoints on one timeline. ``camera_times`` from :func:`camera_frame_times`.

    With sync.json: each camera's times are shifted by its offset (by name) and xy (C, T, J, 2) and
    confidence (C, T, J) are resampled onto the common timeline (frames covered by every camera, at the
    session frame rate or else the fastest camera's). Without it: the keypoints are returned as they are
    when every camera shares the file's frame times; otherwise the cameras are resampled assuming they
    started together, with a warning. Returns the keypoints and a description for the stage report.
    """
    names = list(kp.camera_names)
    if set(camera_times) != set(names):
        raise ValueError(f"camera_times must name the cameras {names}, got {sorted(camera_times)}")
    rates = {c: _rate(camera_times[c]) for c in names}
    agree = all(
        len(camera_times[c]) == kp.num_frames and np.allclose(camera_times[c], kp.frame_times, rtol=0, atol=1e-9)
        for c in names
    )
    info: dict[str, Any] = {"applied": False, "sync_file": None}
    if session.sync_path.exists():
        found = read_sync_file(session)
        missing = [c for c in names if c not in found]
        if missing:
            raise SyncError(
                f"{session.sync_path}: no offset for camera(s) {missing} (it has {sorted(found, key=natural_key)}); "
                f"run `mocap sync {session.root} --overwrite` to synchronize every camera"
            )
        offsets = {c: found[c].offset_s for c in names}
        info.update(applied=True, sync_file=os.path.relpath(session.sync_path, session.root),
                    reference=next((c for c in names if offsets[c] == 0.0), None))
        per_camera = {c: {"offset_s": offsets[c], "method": found[c].method, "confidence": found[c].confidence}
                      for c in names}
    elif agree:
        info["per_camera"] = {c: {"fps": rates[c]} for c in names}
        return kp, info
    else:
        offsets = dict.fromkeys(names, 0.0)
        per_camera = {c: {"offset_s": 0.0, "method": "none"} for c in names}
        rate_text = ", ".join(f"{c} {rates[c]:.3g} fps" for c in names)
        warnings.append(
            f"no {session.sync_path.name} but the cameras' frame times disagree ({rate_text}): resampled onto one "
            f"timeline assuming every camera started at the same instant; run `mocap sync {session.root}` first"
        )
        log.warning("%s", warnings[-1])
    fps = session.config().frame_rate or max(r for r in rates.values() if np.isfinite(r))
    try:
        timeline = common_timeline(camera_times, offsets, fps)
    except SyncError as e:
        raise SyncError(f"{session.keypoints2d_path} with {session.sync_path.name}: {e}") from e
    xy = {c: kp.xy[i, : len(camera_times[c])] for i, c in enumerate(names)}
    # a missing point has no confidence, so interpolation never bridges it
    conf = {c: np.where(np.isfinite(xy[c]).all(-1), kp.confidence[i, : len(camera_times[c])], np.nan)
            for i, c in enumerate(names)}
    # per camera, timeline instants within a microsecond of one of its frames take that frame exactly, so a
    # frame beside a gap in its detections is kept rather than lost to rounding
    xy_rows, conf_rows = [], []
    for c in names:
        grid = _snap(timeline, camera_times[c] + offsets[c])
        xy_rows.append(resample_series({c: xy[c]}, camera_times, offsets, grid)[0])  # (N, J, 2)
        conf_rows.append(resample_series({c: conf[c]}, camera_times, offsets, grid)[0])  # (N, J)
    xy_common, conf_common = np.stack(xy_rows), np.stack(conf_rows)  # (C, N, J, 2), (C, N, J)
    for c in names:
        per_camera[c]["fps"] = rates[c]
    info.update(
        timeline_fps=float(fps), timeline_frames=len(timeline), timeline_start_s=float(timeline[0]),
        per_camera=per_camera,
    )
    log.info("keypoints of %d cameras resampled onto %d frames at %.3g fps (%s)", len(names), len(timeline), fps,
             f"offsets from {session.sync_path.name}" if info["applied"] else "no sync")
    return Keypoints2D(xy_common, conf_common, kp.camera_names, kp.skeleton, timeline), info


def _gap_warnings(gaps: tuple[tuple[str, int, int], ...], frames: int, joints: int) -> list[str]:
    """One line per set of joints sharing the same gaps too long to fill (those at the take's ends are left out:
    nothing to interpolate towards, and a frame or two there is normal); ``joints`` the skeleton's count."""
    per_joint: dict[str, list[tuple[int, int]]] = {}
    for joint, start, count in gaps:
        if start > 0 and start + count < frames:
            per_joint.setdefault(joint, []).append((start, count))
    groups: dict[tuple[tuple[int, int], ...], list[str]] = {}
    for joint, runs_ in per_joint.items():
        groups.setdefault(tuple(runs_), []).append(joint)
    out = []
    for runs_, names in groups.items():
        start, count = max(runs_, key=lambda r: r[1])
        who = ("every joint" if len(names) == joints else
               f"joint {names[0]}" if len(names) == 1 else f"{len(names)} joints ({', '.join(names)})")
        out.append(f"{who}: {sum(n for _, n in runs_)} frame(s) missing in {len(runs_)} gap(s) too long to "
                   f"fill, the longest {count} frames from frame {start}")
    return out


def _consistency_figures(kp: Keypoints2D, diag: TriangulationDiagnostics) -> dict[str, Any]:
    """Mirrored views per camera and segment-length outliers, measured before any filter."""
    views = diag.view_swapped if diag.view_swapped is not None else np.zeros(kp.confidence.shape[:2], bool)
    out: dict[str, Any] = {"mirrored_view_frames": {c: int(n) for c, n in zip(kp.camera_names, views.sum(1),
                                                                                strict=True)}}
    bones = diag.bone_outliers
    if bones is not None:
        out["raw_bone_length_variation"] = bones.raw_variation
        out["bone_outliers_removed"] = int(bones.removed.sum())
        out["bone_outlier_frames"] = int(bones.removed.any(1).sum())
        if bones.worst is not None:
            out["worst_segment"] = {"segment": bones.worst[0], "length_m": bones.worst[1], "frame": bones.worst[2]}
    return out


def _consistency_warnings(kp: Keypoints2D, diag: TriangulationDiagnostics) -> list[str]:
    """A camera that labelled the performer mirrored in more than 5 % of frames; joints removed as outliers."""
    warnings = []
    T = kp.num_frames
    if diag.view_swapped is not None:
        for c, n in zip(kp.camera_names, diag.view_swapped.sum(1), strict=True):
            if n > 0.05 * T:
                warnings.append(f"camera {c}: the detector labelled left and right the wrong way round in {n} of "
                                f"{T} frames (fixed from the other cameras)")
    bones = diag.bone_outliers
    if bones is not None and bones.removed.any():
        frames = int(bones.removed.any(1).sum())
        worst = f"; the worst, {bones.worst[0]}, measured {bones.worst[1]:.2f} m at frame {bones.worst[2]}" \
            if bones.worst else ""
        warnings.append(f"{int(bones.removed.sum())} joint(s) in {frames} frame(s) were triangulated with segment "
                        f"lengths far from the take's and removed before filtering{worst}")
    return warnings


def triangulate_config_for(session: Session, config: TriangulationConfig) -> TriangulationConfig:
    """The settings triangulation uses for ``session``: ``config``, with ``crowd_weak_view_weight`` as
    ``weak_view_weight`` where the take has several people (each person's folder, and the take's own
    triangulation of its performer)."""
    return replace(config, weak_view_weight=config.crowd_weak_view_weight) if several_people(session) else config


def run_triangulate(
    session: Session, config: TriangulationConfig | None = None, overwrite: bool = False, *,
    progress: Progress | None = None, filter_config: FilterConfig | None = None,
) -> StageReport:
    """keypoints2d.npz + calibration.toml [+ sync.json] -> keypoints3d.npz (robust triangulation, then the
    filter) and keypoints2d_synced.npz (the 2D keypoints it used, on the take's one timeline).

    ``config`` None reads session.toml's [triangulate]; ``filter_config`` None its [filter]."""
    t0 = time.perf_counter()
    session.require()
    config = triangulate_config_for(session, config or session.stage_config("triangulate", TriangulationConfig))
    filter_config = filter_config or session.stage_config("filter", FilterConfig)
    kp = read_keypoints2d(session)
    camera_times = camera_frame_times(session, kp)
    # crowd_weak_view_weight is in weak_view_weight where it is used: left out, a lone performer's take stays up to date
    used = {k: v for k, v in config_to_mapping(config).items() if k != "crowd_weak_view_weight"}
    settings = {"triangulate": used, "filter": config_to_mapping(filter_config),
                "camera_frames": {c: [len(t), _rate(t)] for c, t in camera_times.items()}}
    inputs = [session.keypoints2d_path, session.calibration_path, session.sync_path]  # a new sync re-runs
    fingerprint = session.inputs_fingerprint(inputs, settings)
    outputs = [session.keypoints3d_path, session.keypoints2d_synced_path]
    skipped = _skip(session, "triangulate", fingerprint, outputs, overwrite)
    if skipped is not None:
        return skipped
    warnings: list[str] = []
    kp, sync_info = synchronize_keypoints(session, kp, camera_times, warnings)
    offsets = {c: float(sync_info.get("per_camera", {}).get(c, {}).get("offset_s", 0.0)) for c in kp.camera_names}
    synced = SynchronizedKeypoints2D(kp, camera_times, offsets)
    rig = read_rig(session, fit_to_recordings=True, warnings=warnings)
    try:
        k3, diag = triangulate_with_diagnostics(rig, kp, config)
    except KeyError as e:
        raise KeyError(f"{session.keypoints2d_path} vs {session.calibration_path}: {e.args[0]}") from e
    if not k3.valid.any():
        raise RuntimeError(
            f"no joint could be triangulated from {session.keypoints2d_path} (every frame empty or inconsistent "
            f"across cameras); {session.keypoints3d_path} left as it was. Check the calibration and detections."
        )
    times = k3.frame_times
    frame_rate = session.config().frame_rate or (1.0 / np.median(np.diff(times)) if len(times) > 1 else 30.0)
    filtered = k3.with_xyz(smooth(k3.xyz, frame_rate, k3.skeleton, filter_config))
    warnings += _gap_warnings(diag.long_gaps, diag.residual_px.shape[1], diag.residual_px.shape[2])
    empty_frames = int((~k3.valid).all(-1).sum())
    if empty_frames:
        warnings.insert(0, f"{empty_frames} frame(s) with no joint triangulated")
    figures = keypoints3d_figures(filtered, diag.residual_px, frame_rate)
    figures["raw_jitter_mean_acceleration_m_s2"] = keypoints3d_figures(k3, diag.residual_px, frame_rate)[
        "jitter_mean_acceleration_m_s2"
    ]
    warnings += _consistency_warnings(kp, diag)
    figures.update(_consistency_figures(kp, diag))
    figures.update(
        noise_estimate_px=diag.noise_px, inlier_threshold_px=diag.threshold_px,
        left_right_swaps_fixed=int(diag.swapped.sum() // 2), filter=filter_config.method,
        long_gaps=[{"joint": j, "first_frame": s, "frames": n} for j, s, n in diag.long_gaps], sync=sync_info,
    )
    filtered.save(session.keypoints3d_path)
    save_synchronized_keypoints2d(session.keypoints2d_synced_path, synced)
    report = StageReport("triangulate", fingerprint, tuple(str(p) for p in outputs), figures,
                         tuple(warnings[:50]), time.perf_counter() - t0)
    session.write_stage_report(report)
    log.info(
        "triangulated %.1f %% of joints, mean reprojection error %.2f px, %s filter",
        100 * figures["fraction_triangulated"], figures["mean_reprojection_error_px"] or float("nan"),
        filter_config.method,
    )
    return report
