"""``mocap demo``: build the virtual studio demo take once, run the whole pipeline on it, score it."""

from __future__ import annotations

import argparse
from pathlib import Path

from mocap_studio.commands.run import console, print_outcomes, stage_progress
from rich.table import Table


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap demo``."""
    p = sub.add_parser(
        "demo",
        help="build a virtual studio take (once), run every stage on it and print the errors against the truth",
        description="Render a 4-camera take (1280x720, 30 fps, 6 s of squats and jumping jacks, a board recording, "
        "cameras out of sync with claps on their audio) into the project cache, run `mocap run` on it, and print "
        "the calibration, sync, keypoint, mesh and measurement errors against the known truth, and where every "
        "output is. A second run reuses the take and every stage that is up to date.",
    )
    p.add_argument("--out", type=Path, help="folder for the demo (default: .cache/demo in the project)")
    p.add_argument("--fresh", action="store_true", help="render the take again and redo every stage")
    p.set_defaults(func=run)


def _value(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"


def print_scores(scores: dict, out) -> None:  # noqa: ANN001
    """A table of the demo's figures against their targets, and the measurement errors."""
    table = Table(title="against the truth", show_edge=False)
    for column in ("figure", "value", "target"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    targets, met = scores.get("targets", {}), scores.get("met", {})
    for key, value in scores.items():
        if not isinstance(value, (int, float)) or key.endswith("seconds") or key.startswith("pipeline"):
            continue
        target = f"<= {targets[key]:g}" if key in targets else ""
        colour = "" if key not in met else ("[green]" if met[key] else "[red]")
        table.add_row(key, f"{colour}{_value(value)}", target)
    out.print(table)
    errors = scores.get("measurement_errors_mm", {})
    if errors:
        out.print("measurement errors (mm): " + ", ".join(f"{k} {v:+.1f}" for k, v in errors.items()))


def run(args: argparse.Namespace) -> int:
    """Run ``mocap demo``."""
    from mocap_studio.demo import run_demo

    if args.fresh and args.out is None:
        console.print("--fresh: the demo take will be rendered again")
    with stage_progress() as (progress, on_stage):
        session, result, scores, build_s = run_demo(args.out, fresh=args.fresh, progress=progress, on_stage=on_stage)
    console.print(f"take: {session.root} (built or checked in {build_s:.1f} s)")
    print_outcomes(result, console)
    print_scores(scores, console)
    print(f"session:     {session.root}")
    print(f"truth:       {session.truth_dir}")
    print(f"calibration: {session.calibration_path}")
    print(f"keypoints:   {session.keypoints3d_path}")
    print(f"body:        {session.body_path}")
    print(f"exports:     {session.export_dir}")
    print(f"scores:      {session.stage_report_path('demo')}")
    report = session.report_dir / "index.html"
    print(f"report:      {report if report.exists() else '(not written)'}")
    missed = [k for k, ok in scores.get("met", {}).items() if not ok]
    if missed:
        console.print(f"[yellow]targets missed: {', '.join(missed)}[/]")
    return 0
