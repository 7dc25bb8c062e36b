"""``mocap synth OUT``: render a synthetic take (virtual studio) with its truth."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mocap_studio.stages_synth import run_synth
from mocap_studio.studio import EXERCISES, StudioConfig, rig_presets
from mocap_studio.studio.performer import SCAN_TURN_S
from mocap_studio.studio.scenery import BACKGROUNDS
from mocap_studio.studio.studio import HARSH, harsh_config
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

log = logging.getLogger(__name__)

_FIELDS = {"rig": "rig", "seconds": "seconds", "seed": "seed", "shape": "body_shape", "scale": "scale",
           "supersample": "supersample", "frames": "frames", "fps": "frame_rate", "in_sync": "in_sync",
           "audio": "audio", "platform": "platform_height_m", "platform_size": "platform_size_m",
           "background": "background", "bystander": "bystander", "performers": "performers"}
"""Command-line option (argparse dest) -> StudioConfig field, for the options passed as they are."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap synth``."""
    harsh = ", ".join(f"{k}={v}" for k, v in HARSH.items())
    p = sub.add_parser(
        "synth",
        help="render a synthetic take (virtual studio): session folder plus known truth",
        description="Write OUT as a real studio would (session.toml, videos/<camera>.mp4 with audio beside, "
        "calibration/<camera>.mp4) and OUT/truth/ (true rig, offsets, 3D joints in every skeleton format, body "
        f"parameters, the set and the bystander). Rigs: {', '.join(rig_presets())}. Exercises: {', '.join(EXERCISES)}. "
        f"--harsh films a take as hard as a real phone recording ({harsh}, a platform 0.1-0.3 m high drawn by the "
        "seed); any option given beside it wins.",
    )
    p.add_argument("out", type=Path, help="the take's folder to create")
    p.add_argument("--harsh", action="store_true",
                   help="100 frames at 60 fps on 4 portrait phones, in sync, no audio, raised platform, textured room, "
                   "a bystander (other options override its settings)")
    p.add_argument("--rig", help="rig preset name or rig TOML (default ring4; phones4_portrait with --harsh)")
    p.add_argument("--motion", help="comma-separated exercises, performed in turn (default squat)")
    p.add_argument("--bvh", type=Path, help="perform this BVH clip instead of the exercises")
    p.add_argument("--seconds", type=float, help="recording length per camera (default 6)")
    p.add_argument("--frames", type=int, help="recording length in frames of the first camera (overrides --seconds)")
    p.add_argument("--fps", type=float, help="every camera films at this frame rate (default: each camera's preset rate)")
    p.add_argument("--in-sync", action=argparse.BooleanOptionalAction, default=None,
                   help="all cameras start together (offsets 0) and drop no frame")
    p.add_argument("--audio", action=argparse.BooleanOptionalAction, default=None,
                   help="write each camera's audio with claps (default on; --no-audio writes none)")
    p.add_argument("--platform", type=float, metavar="HEIGHT_M",
                   help="the performer stands on a platform this high in metres (default 0: on the floor)")
    p.add_argument("--platform-size", type=float, metavar="WIDTH_M", help="least width of the platform (default 1.2)")
    p.add_argument("--background", choices=BACKGROUNDS, help="plain studio or a textured, cluttered room (default plain)")
    p.add_argument("--bystander", action=argparse.BooleanOptionalAction, default=None,
                   help="a second person walks across the take")
    p.add_argument("--performers", type=int, metavar="N",
                   help="N performers, each with its own shape, clothes and exercise, crossing each other's paths "
                   "(default 1; the truth then holds truth/p0/ ... per performer)")
    p.add_argument("--seed", type=int, default=0, help="seed for shape, motion variation, board poses, set (default 0)")
    p.add_argument("--shape", choices=["random", "default"], help="body shape (default random)")
    p.add_argument("--scale", type=float, help="image size factor for every camera (default 1)")
    p.add_argument("--supersample", type=int, help="rays per pixel side (anti-aliasing, default 1)")
    p.add_argument("--vertices", action="store_true", help="also write mesh vertices per frame to the truth")
    p.add_argument("--force", action="store_true", help="write into a folder that already holds recordings")
    p.add_argument("--scan", action="store_true",
                   help="a measuring scan: the performer holds an A-pose and turns once (8 s; `mocap scan` fits it)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> StudioConfig:
    """The StudioConfig the options ask for: the defaults (or --harsh's), then every option given."""
    given = {field: getattr(args, dest) for dest, field in _FIELDS.items() if getattr(args, dest) is not None}
    if args.motion is not None:
        given["motions"] = tuple(m.strip() for m in args.motion.split(",") if m.strip())
    if args.bvh:
        given["bvh"] = str(args.bvh)
    if args.vertices:
        given["vertices"] = True
    if args.scan:
        given["motions"] = ("scan",)
        given.setdefault("seconds", SCAN_TURN_S)
    return harsh_config(**given) if args.harsh else StudioConfig(**given)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap synth``."""
    config = config_from_args(args)
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
