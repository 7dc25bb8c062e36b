"""Live recording of N cameras: one H.264 video (PyAV) and one timestamps file per camera.

Each camera runs in its own thread: read a frame (blocking), encode it, note its host time. A frame's
presentation time in the video is its host time since the camera's first frame (millisecond clock), so the
video keeps the true timing, also across dropped frames. Dropped frames are found from gaps in the host
timestamps against the nominal rate. Ctrl-C (or ``stop``) ends every camera cleanly: the encoders are
flushed and the files closed, so what was recorded plays; files are written under temporary names and
renamed into place when complete.

Timestamps file (CSV, one row per frame): ``frame,video_time_s,host_time_s``; host times are on one clock
(``time.monotonic``) shared by every camera recorded together, so they synchronize the cameras.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mocap_studio.capture.frames import Frame, LiveSource
from mocap_studio.capture.video_writer import TIME_BASE as VIDEO_TIME_BASE
from mocap_studio.capture.video_writer import VideoWriter
from mocap_studio.common.fileio import write_text_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordConfig:
    """The ``[record]`` table of session.toml."""

    fps: float = 0.0
    """Nominal frame rate for drop detection; 0 means the rate each camera reports (30 if it reports none)."""
    crf: int = 20
    """H.264 quality (lower is better and larger; 18-23 is visually lossless for most cameras)."""
    preset: str = "veryfast"
    """x264 speed preset: faster presets keep up with more cameras on fewer cores."""
    max_seconds: float = 0.0
    """Stop after this many seconds; 0 records until Ctrl-C."""
    gap_factor: float = 1.5
    """A gap between host timestamps longer than this many nominal frame intervals counts as dropped frames."""

    def __post_init__(self) -> None:
        if self.fps < 0 or self.max_seconds < 0 or self.gap_factor <= 1.0:
            raise ValueError("fps and max_seconds must be >= 0 and gap_factor > 1")


@dataclass
class RecordingStats:
    """What one camera recorded."""

    camera: str
    frames: int = 0
    duration_s: float = 0.0
    nominal_fps: float = 0.0
    measured_fps: float = 0.0
    dropped_frames: int = 0
    gaps: list[tuple[int, float]] = field(default_factory=list)
    """(frame after the gap, gap length s) for each gap that lost frames."""
    error: str = ""


def detect_drops(host_times: np.ndarray, nominal_fps: float, gap_factor: float = 1.5) -> tuple[int, list[tuple[int, float]]]:
    """Dropped frames from host timestamps (T,) s at ``nominal_fps``: (count, [(frame index after the gap,
    gap s), ...]). A gap of g seconds longer than ``gap_factor`` intervals lost round(g * fps) - 1 frames."""
    t = np.asarray(host_times, float)
    if t.ndim != 1:
        raise ValueError(f"host_times must have shape (T,), got {t.shape}")
    if len(t) < 2 or nominal_fps <= 0:
        return 0, []
    gaps = np.diff(t)
    big = np.nonzero(gaps > gap_factor / nominal_fps)[0]
    lost = np.maximum(np.round(gaps[big] * nominal_fps).astype(int) - 1, 1)
    return int(lost.sum()), [(int(k + 1), float(gaps[k])) for k in big]


def _write_timestamps(path: Path, camera: str, video_times: list[float], host_times: list[float]) -> None:
    lines = [f"# camera {camera}; host_time_s: time.monotonic() shared by the cameras recorded together",
             "frame,video_time_s,host_time_s"]
    lines += [f"{k},{v:.6f},{h:.6f}" for k, (v, h) in enumerate(zip(video_times, host_times, strict=True))]
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_timestamps(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a timestamps file: (video_time_s (T,), host_time_s (T,))."""
    path = Path(path)
    try:
        data = np.loadtxt(path, delimiter=",", comments="#", skiprows=2, ndmin=2)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a timestamps file ({e}); record again or remove it") from e
    if data.size == 0:
        return np.zeros(0), np.zeros(0)
    if data.shape[1] != 3:
        raise ValueError(f"{path}: expected 3 columns (frame, video_time_s, host_time_s), got {data.shape[1]}")
    return data[:, 1], data[:, 2]


def _record_one(
    source: LiveSource, video_path: Path, timestamps_path: Path, config: RecordConfig, stop: threading.Event,
    deadline: float, stats: RecordingStats,
) -> None:
    fps = config.fps or source.nominal_fps or 30.0
    stats.nominal_fps = fps
    writer = VideoWriter(video_path, fps, config.crf, config.preset)
    host: list[float] = []
    video: list[float] = []
    ok = False
    try:
        while not stop.is_set():
            frame: Frame | None = source.read()
            if frame is None:
                break
            if host and frame.time_s >= deadline:
                break
            t_video = frame.time_s - host[0] if host else 0.0
            writer.write(frame.image, t_video)
            host.append(frame.time_s)
            video.append(writer.last_pts * float(VIDEO_TIME_BASE))
            stats.frames = len(host)
        ok = True
    except Exception as e:  # noqa: BLE001 - any device or encoder failure: keep what was recorded, report it
        stats.error = f"camera {source.name}: recording stopped after {len(host)} frames: {e}"
        log.error(stats.error)
    finally:
        source.close()
        writer.close(keep=bool(host))
    if host:
        _write_timestamps(timestamps_path, source.name, video, host)
    stats.frames = len(host)
    stats.duration_s = host[-1] - host[0] if len(host) > 1 else 0.0
    stats.measured_fps = (len(host) - 1) / stats.duration_s if stats.duration_s > 0 else 0.0
    stats.dropped_frames, stats.gaps = detect_drops(np.array(host), fps, config.gap_factor)
    if not ok and not stats.error:
        stats.error = f"camera {source.name}: recording failed"


def record(
    sources: Mapping[str, LiveSource],
    video_paths: Mapping[str, Path],
    timestamps_paths: Mapping[str, Path],
    config: RecordConfig | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[dict[str, int]], None] | None = None,
) -> tuple[dict[str, RecordingStats], bool]:
    """Record every camera until ``stop`` is set, Ctrl-C, ``config.max_seconds`` or the streams end.

    sources: camera name -> live source; video_paths / timestamps_paths: camera name -> output file.
    Returns (stats per camera, interrupted). Every camera's files are complete and playable on return.
    """
    config = config or RecordConfig()
    stop = stop or threading.Event()
    missing = [c for c in sources if c not in video_paths or c not in timestamps_paths]
    if missing:
        raise KeyError(f"no output path for camera(s) {missing}")
    deadline = time.monotonic() + config.max_seconds if config.max_seconds else math.inf
    stats = {c: RecordingStats(c) for c in sources}
    # Completion is waited for on our own events, not Thread.join: in CPython 3.11 a Ctrl-C that lands inside
    # join() marks the still-running thread as stopped (bpo-45274's handler), and a later join() returns at
    # once, before the camera's file is flushed and moved into place.
    finished = {c: threading.Event() for c in sources}

    def camera(c: str, source: LiveSource) -> None:
        try:
            _record_one(source, Path(video_paths[c]), Path(timestamps_paths[c]), config, stop, deadline, stats[c])
        finally:
            finished[c].set()  # also when recording raised: record() must never wait for a dead camera

    threads = [threading.Thread(target=camera, name=f"record-{c}", daemon=True, args=(c, s)) for c, s in sources.items()]
    for th in threads:
        th.start()
    interrupted = False
    try:
        while not all(f.is_set() for f in finished.values()):
            for f in finished.values():
                f.wait(timeout=0.2)
            if progress:
                progress({c: s.frames for c, s in stats.items()})
    except KeyboardInterrupt:
        interrupted = True
        log.info("stopping: finishing every camera's file")
        stop.set()
        for f in finished.values():
            f.wait()
    for s in stats.values():
        if s.dropped_frames:
            log.warning("camera %s: %d dropped frame(s) in %d gap(s)", s.camera, s.dropped_frames, len(s.gaps))
    return stats, interrupted
