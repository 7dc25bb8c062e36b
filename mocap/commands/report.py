"""``mocap report SESSION``: write the take report (report/index.html) and the overlay videos."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap report``."""
    p = sub.add_parser(
        "report", help="write the take report: report/index.html (self-contained) and overlay videos",
        description="Read whatever the session holds (calibration, sync, keypoints, body) and write "
        "report/index.html with plots, joint angles, repetition counts, frame strips and warnings, plus "
        "report/overlays/<camera>.mp4 (skeleton and mesh over each camera's video). Stages that have not run "
        "are shown as such.",
    )
    p.add_argument("session", help="session folder")
    p.add_argument("--no-overlays", dest="overlays", action="store_false", default=None,
                   help="skip the overlay videos (the page's frame strips are still drawn)")
    p.add_argument("--strip-frames", dest="strip_frames", type=int, help="frames per camera in the strips (default 4)")
    p.add_argument("--max-width", dest="max_width", type=int, help="limit of the overlays' longer side in pixels (default 640)")
    p.add_argument("--mesh", dest="mesh_style", choices=("shaded", "wireframe"), help="how the mesh is drawn")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap report``."""
    from mocap_studio.report import run_report
    from mocap_studio.session import open_session
    from mocap_studio.stages import STAGES
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    session = open_session(args.session).require()
    overrides = {"overlays": args.overlays, "strip_frames": args.strip_frames, "max_width": args.max_width,
                 "mesh_style": args.mesh_style}
    config = STAGES["report"].load_config(session, overrides, {"overlays": "--no-overlays", "mesh_style": "--mesh"})
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total or None)
            bar.update(tasks[label], completed=done)

        run_report(session, config, progress=progress)
    print(f"wrote {session.report_dir / 'index.html'}")
    return 0
