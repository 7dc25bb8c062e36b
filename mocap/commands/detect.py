"""``mocap detect SESSION``: 2D keypoints in every camera's recording -> keypoints2d.npz."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from mocap_studio.session import take_session
from mocap_studio.stages import STAGES
from mocap_studio.stages_keypoints import run_detect

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap detect``."""
    parser = sub.add_parser(
        "detect",
        help="detect 2D body keypoints (MediaPipe BlazePose) in every camera -> keypoints2d.npz",
        description="Run the pose landmarker over videos/<camera>.* or images/<camera>/ in worker processes, "
        "choose the performer among bystanders, and write keypoints2d.npz and report/detect.json. "
        "Settings: the [detect] and [associate] tables of session.toml; options here override them.",
    )
    parser.add_argument("session", type=Path, help="the take's folder")
    parser.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    parser.add_argument("--num-poses", type=int, help="people to detect per frame (default 1)")
    parser.add_argument("--chunk-frames", type=int, help="frames per job (default 600)")
    parser.add_argument("--overwrite", action="store_true", help="run even if the inputs have not changed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap detect``."""
    session = take_session(args.session, "detect").require()
    overrides = {"workers": args.workers, "num_poses": args.num_poses, "chunk_frames": args.chunk_frames}
    config = STAGES["detect"].load_config(session, overrides)
    started = time.perf_counter()

    def progress(label: str, done: int, total: int | None) -> None:
        left = (time.perf_counter() - started) / max(done, 1) * ((total or done) - done)
        log.info("detect: %d/%d jobs, %s, about %.0f s left", done, total or done, label, left)

    run_detect(session, config, args.overwrite, progress=progress)
    return 0
