"""``mocap sync SESSION``: per-camera time offsets -> sync.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from mocap_studio.capture.sync import METHODS
from mocap_studio.session import take_session
from mocap_studio.stages import STAGES
from mocap_studio.stages_capture import run_sync


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap sync``."""
    parser = sub.add_parser(
        "sync",
        help="estimate each camera's time offset (audio, flash, keypoint motion or timestamps) -> sync.json",
        description="Find each camera's offset against the reference camera (sub-frame) and write sync.json "
        "(offset, confidence, method per camera; common_time = camera_time + offset_s) and report/sync.json. "
        "By default audio is tried first (the video's sound, or videos/<camera>.wav), then the motion of "
        "the 2D keypoints in keypoints2d.npz; an offset that is not sure is never applied. When no method is "
        "sure, offsets of zero are used only if the recordings show the take is in sync (equal frame counts and "
        "start times, keypoint motion consistent with zero), with a warning; else the stage stops. --none "
        "declares a take recorded in sync. Settings: the [sync] table of session.toml.",
    )
    parser.add_argument("session", type=Path, help="the take's folder")
    parser.add_argument("--method", action="append", choices=METHODS, help="method(s) to try, in order")
    parser.add_argument("--none", action="store_true",
                        help="the take was recorded in sync (hardware trigger, genlock): every offset is 0")
    parser.add_argument("--max-offset", type=float, dest="max_offset", help="search window in seconds (default 1)")
    parser.add_argument("--reference", help="camera whose clock is the common timeline (default: the first)")
    parser.add_argument("--overwrite", action="store_true", help="run even if the inputs have not changed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap sync``."""
    session = take_session(args.session, "sync").require()
    if args.none and args.method:
        raise SystemExit("mocap sync: give --none or --method, not both")
    methods = ("none",) if args.none else tuple(args.method) if args.method else None
    overrides = {"methods": methods, "max_offset_s": args.max_offset,
                 "reference": args.reference}
    config = STAGES["sync"].load_config(session, overrides, {"methods": "--method", "max_offset_s": "--max-offset"})
    report = run_sync(session, config, args.overwrite)
    for name, f in report.figures.get("cameras", {}).items():
        print(f"{name}: {f['offset_s']:+.4f} s  confidence {f['confidence']:.2f}  ({f['method']})")
    return 0
