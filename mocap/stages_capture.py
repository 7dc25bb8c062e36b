"""Stage runners for capture: ``record`` (live cameras -> videos/ + timestamps) and ``sync`` (a session's
recordings -> sync.json). They read the session, call the pure functions in ``capture/`` and write outputs
and a report; keypoints2d.npz is read here (through reconstruction's loader), never inside ``capture/``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

from mocap_studio.capture.frames import CameraSource, FrameSourceError, probe
from mocap_studio.capture.record import RecordConfig, read_timestamps, record
from mocap_studio.capture.sync import (
    CameraOffset,
    SyncConfig,
    SyncError,
    audio_offsets,
    brightness_curve,
    flash_offsets,
    keypoint_offsets,
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
    session: Session, devices: Mapping[str, str], config: RecordConfig | None = None, overwrite: bool = False
) -> StageReport:
    """Record live cameras (camera name -> USB index or URL) into ``videos/<camera>.mp4`` + timestamps.

    ``config`` None reads session.toml's [record]. The report's figures hold per camera ("cameras") the frames,
    measured rate and dropped frames."""
    if not devices:
        raise ValueError("no cameras given: add --camera NAME=DEVICE (e.g. --camera cam_0=0)")
    config = config or session.stage_config("record", RecordConfig)
    videos = {c: session.videos_dir / f"{c}.mp4" for c in devices}
    stamps = {c: session.timestamps_path(c) for c in devices}
    existing = [str(p) for p in videos.values() if p.exists()]
    if existing and not overwrite:
        raise ValueError(f"{existing}: already recorded; use another session folder or --overwrite")
    sources: dict[str, CameraSource] = {}
    try:
        for c, device in devices.items():
            sources[c] = CameraSource(device, c, fps=config.fps)
    except FrameSourceError:
        for s in sources.values():
            s.close()
        raise
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
    from mocap_studio.inputs import read_keypoints2d
    from mocap_studio.stages_keypoints import camera_frame_times

    if not session.keypoints2d_path.exists():
        raise SyncError(f"{session.keypoints2d_path}: no 2D keypoints to synchronize by motion; run `mocap detect` first")
    kp = read_keypoints2d(session, list(sources))
    times = camera_frame_times(session, kp)  # each camera at its own rate (30 and 60 fps in one take)
    xy = {c: kp.xy[i, : len(times[c])] for i, c in enumerate(kp.camera_names)}
    conf = {c: kp.confidence[i, : len(times[c])] for i, c in enumerate(kp.camera_names)}
    return keypoint_offsets(xy, times, conf, config)


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


_METHODS = {"audio": _try_audio, "keypoints": _try_keypoints, "flash": _try_flash, "timestamps": _try_timestamps}


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
    failures: list[str] = []
    offsets: dict[str, CameraOffset] | None = None
    for method in config.methods:
        try:
            offsets = _METHODS[method](session, sources, config)
            break
        except SyncError as e:
            failures.append(f"{method}: {e}")
            log.info("sync by %s not possible: %s", method, e)
    if offsets is None:
        raise SyncError("no synchronization method worked:\n  " + "\n  ".join(failures))
    fps = {}
    for c, p in sources.items():
        fps[c] = probe(p).fps if p.is_file() else session.config().frame_rate
    write_sync(session.sync_path, offsets, fps)
    figures = {c: {"offset_s": o.offset_s, "offset_frames": o.offset_s * fps[c] if fps[c] else None,
                   "confidence": o.confidence, "method": o.method} for c, o in offsets.items()}
    weak = [(c, o.confidence) for c, o in offsets.items() if o.confidence < config.min_confidence]
    warnings = [f"camera {c}: weak match ({conf:.2f})" for c, conf in weak]
    report = StageReport("sync", fingerprint, (str(session.sync_path),), {"cameras": figures, "tried": failures},
                         tuple(warnings), time.monotonic() - t0)
    session.write_stage_report(report)
    return report
