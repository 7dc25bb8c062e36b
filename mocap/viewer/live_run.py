"""``mocap live``'s work: open the cameras (or a take to replay), record them as ``mocap record`` does, and run the
live 2D -> 3D path and its preview beside the recording. The figures go to ``report/live.json``."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mocap_studio.capture.frames import LiveSource
from mocap_studio.session import Session, StageReport
from mocap_studio.viewer.live import LatestFrame, LivePipeline, ReplayClock, ReplaySource, TeeSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveResult:
    """What a live run did: the record stage's report, the live figures, and the pipeline (skeletons, latencies)."""

    record: StageReport
    figures: dict
    pipeline: LivePipeline
    sources: dict
    """camera name -> the source the recorder read (a TeeSource around the camera or replay)."""


def replay_sources(source: Session, cameras: list[str] | None = None, max_seconds: float = 0.0,
                   delay_s: float = 0.3) -> dict[str, ReplaySource]:
    """Live stand-ins that play ``source``'s performance videos at their real pace, on one clock: each camera's
    frames at their common time (video time + the camera's offset from sync.json; 0 without one)."""
    from mocap_studio import inputs

    videos = source.performance_sources()
    if not videos:
        raise FileNotFoundError(f"{source.videos_dir}: no performance videos to replay; give a recorded or "
                                f"virtual-studio take (mocap synth) to --replay")
    names = list(cameras) if cameras else list(videos)
    unknown = [c for c in names if c not in videos]
    if unknown:
        raise ValueError(f"--replay {source.root}: no video for camera(s) {unknown}; it has {list(videos)}")
    offsets = {c: o.offset_s for c, o in inputs.read_sync(source).items()} if source.sync_path.exists() else {}
    if not offsets:
        log.warning("%s: no sync.json, the cameras are replayed as if in sync (run `mocap sync` on it first)",
                    source.root)
    clock = ReplayClock(t0=min(offsets.get(c, 0.0) for c in names), delay_s=delay_s)
    return {c: ReplaySource(c, videos[c], clock, offsets.get(c, 0.0), max_seconds) for c in names}


def prepare_replay_session(session: Session, source: Session) -> None:
    """A replay's session gets the source's calibration.toml (when it has none), so it is a complete take."""
    if not source.calibration_path.exists():
        raise FileNotFoundError(f"{source.calibration_path} is missing; the live 3D skeleton needs the cameras' "
                                f"calibration: run `mocap calibrate {source.root}` first")
    session.root.mkdir(parents=True, exist_ok=True)
    if not session.calibration_path.exists():
        shutil.copy(source.calibration_path, session.calibration_path)


def run_live(session: Session, sources: Mapping[str, LiveSource], *, viewer: bool = True, host: str = "127.0.0.1",
             port: int = 8080, max_seconds: float = 0.0, overwrite: bool = False,
             on_viewer=None, compare_to: Session | None = None) -> LiveResult:  # noqa: ANN001 - on_viewer(LiveViewer)
    """Record ``sources`` into ``session`` (videos/ + timestamps, report/record.json, exactly as ``mocap record``)
    while detecting, triangulating and (``viewer``) showing them; then write report/live.json.

    compare_to: for a replay, the replayed take: when it holds keypoints3d.npz, the live skeletons' distance to
    that offline triangulation goes into the figures (``offline_difference``, see :func:`offline_difference`)."""
    from mocap_studio import inputs
    from mocap_studio.capture.record import RecordConfig
    from mocap_studio.stages_capture import run_record

    session.root.mkdir(parents=True, exist_ok=True)
    try:
        rig = inputs.read_rig(session, require_extrinsics=True)
    except FileNotFoundError as e:
        for s in sources.values():
            s.close()
        raise FileNotFoundError(f"{e} (the live 3D skeleton needs the cameras' calibration; for a replay it is "
                                f"copied from the replayed take)") from e
    mailboxes = {c: LatestFrame() for c in sources}
    tees = {c: TeeSource(s, mailboxes[c]) for c, s in sources.items()}
    live_view = None
    if viewer:
        from mocap_studio.viewer.live_view import LiveViewer

        live_view = LiveViewer(rig, list(sources), host=host, port=port)
    try:
        pipeline = LivePipeline(rig, mailboxes, on_detection=live_view.on_detection if live_view else None,
                                on_skeleton=live_view.on_skeleton if live_view else None)
    except ValueError:
        for s in tees.values():
            s.close()
        if live_view is not None:
            live_view.stop()
        raise
    if live_view is not None:
        live_view.pipeline = pipeline
        if on_viewer is not None:
            on_viewer(live_view)
    config = session.stage_config("record", RecordConfig, {"max_seconds": max_seconds or None})
    load_before = os.getloadavg()
    pipeline.start()
    t0 = time.monotonic()
    try:
        record = run_record(session, {}, config, overwrite, sources=tees)
        pipeline.wait(timeout=10.0)
    finally:
        pipeline.stop()
        if live_view is not None:
            live_view.stop()
    figures = pipeline.figures()
    figures["seconds"] = round(time.monotonic() - t0, 2)
    figures["load_average"] = {"before": [round(v, 2) for v in load_before],
                               "after": [round(v, 2) for v in os.getloadavg()]}
    figures["cpu_count"] = os.cpu_count()
    late = {c: s.late_s for c, s in sources.items() if isinstance(s, ReplaySource)}
    if late:
        figures["replay_late_ms_median"] = {c: round(1000 * float(sorted(v)[len(v) // 2]), 1) if v else None
                                           for c, v in late.items()}
    result = LiveResult(record, figures, pipeline, dict(tees))
    if compare_to is not None and compare_to.keypoints3d_path.exists() and pipeline.skeletons:
        figures["offline_difference"] = offline_difference(result, compare_to)
    report = StageReport("live", "", (), figures, tuple(figures["errors"]), figures["seconds"])
    session.write_stage_report(report)
    return result


def offline_difference(result: LiveResult, offline: Session) -> dict:
    """How far the live skeletons of a replay are from ``offline``'s keypoints3d.npz (the offline triangulation of
    the replayed take), at the same common times: per skeleton the mean distance over the joints both have (mm);
    the median, 90th percentile and max over skeletons."""
    from mocap_studio import inputs
    from mocap_studio.report.overlay import interpolate_keypoints

    clock = next((s.inner.clock for s in result.sources.values() if isinstance(getattr(s, "inner", None), ReplaySource)),
                 None)
    if clock is None:
        raise ValueError("offline_difference needs a replay (the live run's sources are cameras)")
    k3 = inputs.read_keypoints3d(offline)
    sk = result.pipeline.skeletons
    t_common = np.array([s.time_s - clock.start_s + clock.t0 for s in sk])
    inside = (t_common >= k3.frame_times[0]) & (t_common <= k3.frame_times[-1])
    ref = interpolate_keypoints(k3.xyz, k3.frame_times, t_common[inside])
    live = np.stack([s.xyz for s in sk])[inside]
    d = np.linalg.norm(live - ref, axis=-1) * 1000.0
    per = np.array([np.nanmean(row) for row in d if np.isfinite(row).any()])
    return {"skeletons_compared": len(per), "mean_joint_mm": {"median": round(float(np.median(per)), 1),
            "p90": round(float(np.percentile(per, 90)), 1), "max": round(float(per.max()), 1)},
            "joints_compared": int(np.isfinite(d).sum())}


def replay_take(session: str | Path, source: str | Path, cameras: list[str] | None = None, **kwargs) -> LiveResult:
    """``mocap live SESSION --replay SOURCE``: play SOURCE's videos at their pace through the live path into SESSION."""
    session, src = Session(session), Session(source).require()
    prepare_replay_session(session, src)
    kwargs.setdefault("compare_to", src)
    return run_live(session, replay_sources(src, cameras, kwargs.get("max_seconds", 0.0)), **kwargs)
