"""``mocap record SESSION --camera cam_0=0 --camera cam_1=rtsp://...``: live cameras -> videos/ + timestamps."""

from __future__ import annotations

import argparse
from pathlib import Path

from mocap_studio.session import Session
from mocap_studio.stages_capture import run_record


def _camera(text: str) -> tuple[str, str]:
    name, sep, device = text.partition("=")
    if not sep or not name or not device:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=DEVICE, e.g. cam_0=0 or cam_1=rtsp://host/stream")
    return name, device


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap record``."""
    parser = sub.add_parser(
        "record",
        help="record live cameras into a session folder (H.264 videos + host timestamps)",
        description="Record every camera into videos/<camera>.mp4 with videos/<camera>.timestamps.csv; "
        "dropped frames are detected from the host timestamps and reported in report/record.json. Stop with "
        "Ctrl-C: the files are finished cleanly. Settings: the [record] table of session.toml.",
    )
    parser.add_argument("session", type=Path, help="the take's folder (created if missing)")
    parser.add_argument("--camera", action="append", type=_camera, default=[], metavar="NAME=DEVICE",
                        help="a camera: USB index or RTSP/HTTP URL (repeat for each camera)")
    parser.add_argument("--fps", type=float, help="nominal frame rate to request and to detect drops against")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing recordings")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap record``."""
    from mocap_studio.capture.record import RecordConfig

    devices = dict(args.camera)
    if len(devices) != len(args.camera):
        raise ValueError("each --camera needs its own NAME")
    session = Session(args.session)
    config = session.stage_config("record", RecordConfig, {"fps": args.fps, "max_seconds": args.seconds},
                                  {"max_seconds": "--seconds"})
    report = run_record(session, devices, config, args.overwrite)
    for name, f in report.figures["cameras"].items():
        print(f"{name}: {f['frames']} frames, {f['measured_fps']:.2f} fps, {f['dropped_frames']} dropped")
    return 0
