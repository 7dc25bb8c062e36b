"""``mocap live SESSION --camera NAME=DEVICE ...`` (or ``--replay TAKE``): record while previewing 2D keypoints, the
3D skeleton, the frame rate and latency in the viewer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mocap_studio.commands.record import _camera


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap live``."""
    p = sub.add_parser(
        "live", help="record cameras with a live preview: 2D keypoints, 3D skeleton, frame rate and latency",
        description="Record every camera into SESSION exactly as `mocap record` does (videos/<camera>.mp4, "
        "timestamps, report/record.json) while each camera's newest frame goes through 2D keypoint detection and "
        "the cameras are triangulated into a 3D skeleton (SESSION/calibration.toml; cameras named as in it), shown "
        "in the viewer with the frame rates and the latency from a frame's time stamp to its 3D skeleton. "
        "--replay TAKE plays a recorded or virtual-studio take's videos at their real pace through the same path "
        "(its calibration.toml is copied into SESSION). Figures go to SESSION/report/live.json. Ctrl-C stops.",
    )
    p.add_argument("session", type=Path, help="the take's folder to record into (created if missing)")
    p.add_argument("--camera", action="append", type=_camera, default=[], metavar="NAME=DEVICE",
                   help="a live camera: USB index or RTSP/HTTP URL (repeat for each camera)")
    p.add_argument("--replay", type=Path, metavar="TAKE", help="play this take's videos as the cameras instead")
    p.add_argument("--cameras", help="with --replay: the cameras to play, comma-separated (default: all)")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this many seconds (default: until Ctrl-C "
                   "or the replay's end)")
    p.add_argument("--host", default="127.0.0.1", help="viewer address (default 127.0.0.1; 0.0.0.0 for the network)")
    p.add_argument("--port", type=int, default=8080, help="viewer port (default 8080; 0 picks a free one)")
    p.add_argument("--no-view", dest="view", action="store_false", help="no viewer: record and measure only")
    p.add_argument("--overwrite", action="store_true", help="replace existing recordings in SESSION")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap live``."""
    from mocap_studio.capture.frames import CameraSource, FrameSourceError
    from mocap_studio.session import Session
    from mocap_studio.viewer.live_run import prepare_replay_session, replay_sources, run_live

    if args.seconds < 0:
        raise ValueError(f"--seconds must be 0 or more, got {args.seconds}")
    if bool(args.camera) == bool(args.replay):
        raise ValueError("give either --camera NAME=DEVICE (repeat per camera) or --replay TAKE")
    if args.cameras and not args.replay:
        raise ValueError("--cameras goes with --replay (live cameras are named by --camera NAME=DEVICE)")
    session = Session(args.session)

    def announce(viewer) -> None:  # noqa: ANN001
        print(f"mocap live: preview at {viewer.url}  (Ctrl-C to stop)", flush=True)

    if args.replay:
        source = Session(args.replay).require()
        prepare_replay_session(session, source)
        cameras = [c.strip() for c in args.cameras.split(",")] if args.cameras else None
        sources = replay_sources(source, cameras, args.seconds)
    else:
        devices = dict(args.camera)
        if len(devices) != len(args.camera):
            raise ValueError("each --camera needs its own NAME")
        sources = {}
        try:
            for name, device in devices.items():
                sources[name] = CameraSource(device, name)
        except FrameSourceError:
            for s in sources.values():
                s.close()
            raise
    # a replay's sources end by themselves after --seconds of the take; live cameras are stopped by the recorder
    result = run_live(session, sources, viewer=args.view, host=args.host, port=args.port,
                      max_seconds=0.0 if args.replay else args.seconds,
                      overwrite=args.overwrite, on_viewer=announce, compare_to=source if args.replay else None)
    f = result.figures
    for name, c in f["cameras"].items():
        print(f"{name}: {c['frames']} frames recorded, {c['fps']:.1f} frames/s detected ({c['detect_ms_median']} ms each)")
    if f["latency_ms"]:
        print(f"latency, frame time stamp to 3D skeleton: median {f['latency_ms']['median']} ms, "
              f"90 % {f['latency_ms']['p90']} ms; {f['skeletons']} skeletons")
    if "offline_difference" in f:
        d = f["offline_difference"]["mean_joint_mm"]
        print(f"3D skeleton against the replayed take's offline triangulation: mean joint distance median {d['median']} "
              f"mm, 90 % {d['p90']} mm")
    print(f"load average {f['load_average']['before']} -> {f['load_average']['after']} on {f['cpu_count']} cores; "
          f"figures in {session.stage_report_path('live')}")
    if f["errors"]:
        print(json.dumps(f["errors"], indent=1))
    return 0
