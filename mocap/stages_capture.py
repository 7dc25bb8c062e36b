"""Stage runners for capture: ``record`` (live cameras -> videos/ + timestamps) and ``sync`` (a session's
recordings -> sync.json). They read the session, call the pure functions in ``capture/`` and write outputs
and a report; keypoints2d.npz is read here (through reconstruction's loader), never inside ``capture/``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from mocap_studio.capture.frames import CameraSource, FrameSourceError, LiveSource, probe
from mocap_studio.capture.record import RecordConfig, read_timestamps, record
from mocap_studio.capture.sync import (
    CameraOffset,
    InSyncEvidence,
    SyncConfig,
    SyncError,
    audio_offsets,
    brightness_curve,
    epipolar_offsets,
    flash_offsets,
    keypoint_offsets,
    none_offsets,
    read_audio,
    timestamp_offsets,
    write_sync,
)
from mocap_studio.common.config import config_to_mapping
from mocap_studio.session import Session, StageReport
from mocap_studio.stages import Progress

log = logging.getLogger(__name__)

__all__ = ["run_record", "run_sync"]


def run_record(
    session: Session, devices: Mapping[str, str], config: RecordConfig | None = None, overwrite: bool = False, *,
    sources: Mapping[str, LiveSource] | None = None,
) -> StageReport:
    """Record live cameras (camera name -> USB index or URL) into ``videos/<camera>.mp4`` + timestamps.

    ``config`` None reads session.toml's [record]. The report's figures hold per camera ("cameras") the frames,
    measured rate and dropped frames. ``sources`` (camera name -> an opened live source, e.g. ``mocap live``'s
    cameras that also feed its preview) replaces opening ``devices``."""
    if not devices and not sources:
        raise ValueError("no cameras given: add --camera NAME=DEVICE (e.g. --camera cam_0=0)")
    config = config or session.stage_config("record", RecordConfig)
    names = list(sources) if sources else list(devices)
    videos = {c: session.videos_dir / f"{c}.mp4" for c in names}
    stamps = {c: session.timestamps_path(c) for c in names}
    existing = [str(p) for p in videos.values() if p.exists()]
    if existing and not overwrite:
        raise ValueError(f"{existing}: already recorded; use another session folder or --overwrite")
    opened: dict[str, LiveSource] = dict(sources or {})
    try:
        for c, device in ({} if sources else devices).items():
            opened[c] = CameraSource(device, c, fps=config.fps)
    except FrameSourceError:
        for s in opened.values():
            s.close()
        raise
    sources = opened
    t0 = time.monotonic()
    log.info("recording %d camera(s); press Ctrl-C to stop", len(sources))
    stats, interrupted = record(sources, videos, stamps, config)
    figures = {
        c: {"frames": s.frames, "duration_s": round(s.duration_s, 3), "nominal_fps": s.nominal_fps,
            "measured_fps": round(s.measured_fps, 3), "dropped_frames": s.dropped_frames,
            "gaps": s.gaps[:50], "error": s.error}
        for c, s in stats.items()
    }
    warnings = [f"camera {c}: {s.dropped_frames} dropped frame(s)" for c, s in stats.items() if s.dropped_frames]
    warnings += [s.error for s in stats.values() if s.error]
    outputs = [p for c in stats for p in (videos[c], stamps[c]) if p.exists()]
    report = StageReport("record", "", tuple(str(p) for p in outputs), {"cameras": figures, "stopped_by_user":
                         interrupted, "config": config_to_mapping(config)}, tuple(warnings), time.monotonic() - t0)
    session.write_stage_report(report)
    return report


def _audio_source(session: Session, camera: str, video: Path) -> Path:
    wav = session.audio_path(camera)
    return wav if wav.exists() else video


def _try_audio(session: Session, sources: dict[str, Path], config: SyncConfig) -> dict[str, CameraOffset]:
    audio = {}
    for c, path in sources.items():
        if path.is_dir() and not session.audio_path(c).exists():
            raise SyncError(f"camera {c}: an image folder has no audio; put videos/{c}.wav beside it")
        audio[c] = read_audio(_audio_source(session, c, path), config.audio_rate_hz, camera=c)
    return audio_offsets(audio, config.audio_rate_hz, config)


def _try_keypoints(session: Session, sources: dict[str, Path], config: SyncConfig) -> dict[str, CameraOffset]:
    """By the performer's motion: with a calibration, the shift that puts every pair's joints on each other's
    epipolar lines (view-invariant, works on short takes); without one, the correlation of image speeds."""
    from mocap_studio.inputs import read_keypoints2d, read_rig
    from mocap_studio.stages_keypoints import camera_frame_times

    if not session.keypoints2d_path.exists():
        raise SyncError(f"{session.keypoints2d_path}: no 2D keypoints to synchronize by motion; run `mocap detect` first")
    kp = read_keypoints2d(session, list(sources))
    times = camera_frame_times(session, kp)  # each camera at its own rate (30 and 60 fps in one take)
    xy = {c: kp.xy[i, : len(times[c])] for i, c in enumerate(kp.camera_names)}
    conf = {c: kp.confidence[i, : len(times[c])] for i, c in enumerate(kp.camera_names)}
    fundamental = _fundamental_matrices(session, kp.camera_names) if session.calibration_path.exists() else None
    if fundamental is None:
        return keypoint_offsets(xy, times, conf, config)
    rig = read_rig(session, fit_to_recordings=True)
    ideal = {c: rig[c].undistort_pixels(v) for c, v in xy.items()}
    return epipolar_offsets(ideal, times, fundamental, conf, config)


def _fundamental_matrices(session: Session, names) -> dict[tuple[str, str], np.ndarray] | None:  # noqa: ANN001
    """F for every ordered pair of ``names`` from the session's calibration; None when a camera is missing from
    it or two cameras share a centre (an intrinsics-only calibration)."""
    from mocap_studio.calibration.camera import fundamental_matrix
    from mocap_studio.inputs import read_rig

    rig = read_rig(session, require_extrinsics=False, fit_to_recordings=True)
    if any(c not in rig.names for c in names):
        return None
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if np.linalg.norm(rig[a].center - rig[b].center) < 1e-3:
                return None
            out[(a, b)] = fundamental_matrix(rig[a], rig[b])
    return out


def _try_flash(session: Session, sources: dict[str, Path], config: SyncConfig) -> dict[str, CameraOffset]:
    return flash_offsets({c: brightness_curve(p, c) for c, p in sources.items()}, config)


def _try_timestamps(session: Session, sources: dict[str, Path], config: SyncConfig) -> dict[str, CameraOffset]:
    host, video = {}, {}
    for c in sources:
        path = session.timestamps_path(c)
        if not path.exists():
            raise SyncError(f"camera {c}: no {path.name}; only takes made with `mocap record` have timestamps")
        video[c], host[c] = read_timestamps(path)
    return timestamp_offsets(host, video, config)


def _try_none(session: Session, sources: dict[str, Path], config: SyncConfig) -> dict[str, CameraOffset]:
    return none_offsets(list(sources), config)


_METHODS = {"audio": _try_audio, "keypoints": _try_keypoints, "flash": _try_flash, "timestamps": _try_timestamps,
            "none": _try_none}


def _first_confident(session: Session, sources: dict[str, Path], config: SyncConfig
                     ) -> tuple[dict[str, CameraOffset] | None, list[str], dict[str, dict[str, CameraOffset]]]:
    """The offsets of the first method in ``config.methods`` that finds every camera with confidence, else None;
    with what each tried method said and the (unsure) offsets each found."""
    failures: list[str] = []
    tried: dict[str, dict[str, CameraOffset]] = {}
    for method in config.methods:
        try:
            found = _METHODS[method](session, sources, config)
        except SyncError as e:
            failures.append(f"{method}: {e}")
            log.info("sync by %s not possible: %s", method, e)
            continue
        tried[method] = found
        # the speed correlation's confidence is a share of surrogates beaten, the others' a correlation or contrast
        kinds = {o.method for o in found.values()}
        threshold = config.min_agreement if "keypoints" in kinds else \
            config.min_epipolar_confidence if "epipolar" in kinds else config.min_confidence
        weak = {c: round(o.confidence, 2) for c, o in found.items() if o.confidence < threshold}
        if not weak:
            return found, failures, tried
        failures.append(f"{method}: not sure of camera(s) {weak} (confidence below {threshold}; offsets "
                        f"{ {c: round(found[c].offset_s, 3) for c in weak} } s not applied)")
        log.info("sync by %s: %s", method, failures[-1])
    return None, failures, tried


def _zero_if_evident(session: Session, sources: dict[str, Path], config: SyncConfig,
                     keypoints: dict[str, CameraOffset] | None, failures: list[str]
                     ) -> tuple[dict[str, CameraOffset], str]:
    """Offsets of zero when the recordings show they are in sync, with a description of that evidence; else
    SyncError with the remedy first."""
    if keypoints is None and "keypoints" not in config.methods and session.keypoints2d_path.exists():
        try:
            keypoints = _try_keypoints(session, sources, config)
        except SyncError as e:
            failures.append(f"keypoints (checking offsets of zero): {e}")
    infos = {c: probe(p) for c, p in sources.items()}
    evidence = InSyncEvidence({c: i.frame_count for c, i in infos.items()}, {c: i.start_s for c, i in infos.items()},
                              {c: (keypoints[c].zero_support if keypoints else math.nan) for c in sources})
    against = evidence.reasons_against()
    if not config.zero_when_evident:
        against.append("[sync] zero_when_evident is false")
    if against:
        raise SyncError(
            "no synchronization method found the offsets with confidence. If the cameras were recorded in sync, "
            "run `mocap sync --none` (or set [sync] methods = ['none']); otherwise record a few claps (audio) or a "
            "flash in view of every camera. Offsets of zero were not assumed because " + "; ".join(against) +
            ".\n  " + "\n  ".join(failures))
    out = {c: CameraOffset(c, 0.0, float(np.nan_to_num(evidence.zero_support[c], nan=0.0)), "zero-evident")
           for c in sources}
    return out, evidence.describe()


def run_sync(session: Session, config: SyncConfig | None = None, overwrite: bool = False, *,
             progress: Progress | None = None) -> StageReport:
    """Estimate every camera's offset with the first of ``[sync] methods`` that works for all cameras
    (default: audio, then keypoints2d.npz), write sync.json and report/sync.json.

    ``config`` None reads session.toml's [sync]. The report's figures hold per camera ("cameras") the offset in
    seconds and frames, the confidence and the method."""
    t0 = time.monotonic()
    session.require()
    config = config or session.stage_config("sync", SyncConfig)
    sources = session.performance_sources()
    if len(sources) < 2:
        raise FileNotFoundError(f"{session.videos_dir}: found {len(sources)} camera(s); synchronizing needs two or more")
    for c, p in sources.items():
        if p.is_file():
            try:
                probe(p)
            except FrameSourceError as e:
                raise SyncError(f"camera {c}: {e}") from e
    inputs = list(sources.values()) + [session.keypoints2d_path] + [session.timestamps_path(c) for c in sources]
    fingerprint = session.inputs_fingerprint([p for p in inputs if p.exists()], config_to_mapping(config))
    if not overwrite and session.is_up_to_date("sync", fingerprint, [session.sync_path]):
        log.info("sync: inputs unchanged since the last run; skipping (use --overwrite to redo)")
        return session.previous_report("sync")
    offsets, failures, tried = _first_confident(session, sources, config)
    warnings: list[str] = []
    if offsets is None:
        offsets, evidence = _zero_if_evident(session, sources, config, tried.get("keypoints"), failures)
        warnings.append(
            "sync: no method found the offsets with confidence (" + "; ".join(failures) + "); offsets set to zero "
            "because the recordings show the take is in sync: " + evidence + ". If the cameras were not recorded "
            "in sync, record a few claps (audio) or a flash and run `mocap sync --overwrite`")
    fps = {}
    for c, p in sources.items():
        fps[c] = probe(p).fps if p.is_file() else session.config().frame_rate
    write_sync(session.sync_path, offsets, fps)
    figures = {c: {"offset_s": o.offset_s, "offset_frames": o.offset_s * fps[c] if fps[c] else None,
                   "confidence": o.confidence, "method": o.method,
                   **({"zero_support": o.zero_support} if math.isfinite(o.zero_support) else {})}
               for c, o in offsets.items()}
    for w in warnings:
        log.warning("%s", w)
    report = StageReport("sync", fingerprint, (str(session.sync_path),), {"cameras": figures, "tried": failures},
                         tuple(warnings), time.monotonic() - t0)
    session.write_stage_report(report)
    return report
