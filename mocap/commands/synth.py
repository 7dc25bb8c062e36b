"""``mocap synth OUT``: render a synthetic take (virtual studio) with its truth."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mocap_studio.stages_synth import run_synth
from mocap_studio.studio import EXERCISES, StudioConfig, rig_presets
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap synth``."""
    p = sub.add_parser(
        "synth",
        help="render a synthetic take (virtual studio): session folder plus known truth",
        description="Write OUT as a real studio would (session.toml, videos/<camera>.mp4 with audio beside, "
        "calibration/<camera>.mp4) and OUT/truth/ (true rig, offsets, 3D joints in every skeleton format, body "
        f"parameters). Rigs: {', '.join(rig_presets())}. Exercises: {', '.join(EXERCISES)}.",
    )
    p.add_argument("out", type=Path, help="the take's folder to create")
    p.add_argument("--rig", default="ring4", help="rig preset name or rig TOML (default ring4)")
    p.add_argument("--motion", default="squat", help="comma-separated exercises, performed in turn (default squat)")
    p.add_argument("--bvh", type=Path, help="perform this BVH clip instead of the exercises")
    p.add_argument("--seconds", type=float, default=6.0, help="recording length per camera (default 6)")
    p.add_argument("--seed", type=int, default=0, help="seed for shape, motion variation, board poses (default 0)")
    p.add_argument("--shape", choices=["random", "default"], default="random", help="body shape (default random)")
    p.add_argument("--scale", type=float, default=1.0, help="image size factor for every camera (default 1)")
    p.add_argument("--supersample", type=int, default=1, help="rays per pixel side (anti-aliasing, default 1)")
    p.add_argument("--vertices", action="store_true", help="also write mesh vertices per frame to the truth")
    p.add_argument("--force", action="store_true", help="write into a folder that already holds recordings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap synth``."""
    config = StudioConfig(
        rig=args.rig, motions=tuple(m.strip() for m in args.motion.split(",") if m.strip()),
        bvh=str(args.bvh) if args.bvh else "", seconds=args.seconds, seed=args.seed, body_shape=args.shape,
        scale=args.scale, supersample=args.supersample, vertices=args.vertices,
    )
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        take = run_synth(args.out, config, force=args.force, progress=progress)
    print(f"session: {take.session_dir}")
    print(f"truth:   {take.truth_dir}")
    print(f"cameras: {', '.join(take.rig.names)}; rendering {take.render_frames_per_second:.1f} frames/s")
    return 0
