"""``mocap run SESSION``: the whole take, each stage skipped when its inputs are unchanged."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from mocap_studio.pipeline import MODELS, STAGES, RunConfig, RunResult, StageOutcome, run_pipeline
from mocap_studio.session import Session, take_session
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)


def _names(text: str | None, allowed: tuple[str, ...], option: str) -> tuple[str, ...] | None:
    """A comma-separated option as names; ``allowed`` empty accepts any name (the stage checks it)."""
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if allowed and n not in allowed]
    if unknown:
        raise ValueError(f"{option} {text!r}: unknown {unknown}; choose from {', '.join(allowed)}")
    return names


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap run``."""
    p = sub.add_parser(
        "run",
        help="run the whole take: calibrate, detect, sync, triangulate, fit, export, report",
        description="Run every stage of the take in SESSION in order. A stage whose inputs and settings are "
        "unchanged since its last run is skipped, so an interrupted run resumes where it stopped. Settings: the "
        "[run] table of session.toml (stages, model, formats, rig) and each stage's own table; options here "
        "override them. report/run.json records what each stage did and how long it took.",
    )
    p.add_argument("session", type=Path, help="the take's folder")
    p.add_argument("--stages", help=f"comma-separated stages to run (default all: {','.join(STAGES)})")
    p.add_argument("--from", dest="start", choices=STAGES, help="run from this stage on")
    p.add_argument("--until", choices=STAGES, help="stop after this stage")
    p.add_argument("--model", choices=MODELS, help="body model for the fit (default anny)")
    p.add_argument("--formats", help="comma-separated export formats (default bvh,fbx,glb,usdz,obj,trc)")
    p.add_argument("--rig", help="export target rig (mixamo, ue5_mannequin, unity_humanoid, cmu_bvh, smpl24, body, "
                   "or a rig TOML)")
    p.add_argument("--overwrite", nargs="?", const="all", default="", metavar="STAGES",
                   help="redo stages even if up to date: all (the default), or a comma-separated list")
    p.set_defaults(func=run)


def print_outcomes(result: RunResult, out: Console) -> None:
    """A table of what every stage did, and the total time."""
    table = Table(title="stages", show_edge=False)
    for column in ("stage", "status", "seconds", "note"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for o in result.outcomes:
        colour = {"failed": "red", "interrupted": "yellow", "ran": "green"}.get(o.status, "dim")
        table.add_row(o.stage, f"[{colour}]{o.status}[/]", f"{o.seconds:.1f}", escape(o.note))
    out.print(table)
    out.print(f"total {result.seconds:.1f} s")


@contextlib.contextmanager
def stage_progress():  # noqa: ANN201 - yields (progress callback, on_stage callback)
    """A progress bar per stage label that lives only while its stage runs."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(label: str, done: int, total: int | None) -> None:
            key = label.split(" (")[0]
            if key not in tasks:
                tasks[key] = bar.add_task(label, total=total)
            bar.update(tasks[key], completed=done, total=total, description=label)

        def on_stage(outcome: StageOutcome) -> None:
            for task in tasks.values():
                bar.remove_task(task)
            tasks.clear()
            note = f" ({outcome.note})" if outcome.note else ""
            bar.console.print(escape(f"{outcome.stage}: {outcome.status} in {outcome.seconds:.1f} s{note}"),
                              soft_wrap=True)

        yield progress, on_stage


def config_from_args(session: Session, args: argparse.Namespace) -> RunConfig:
    """The [run] table of session.toml with the command line's options over it."""
    config = session.stage_config("run", RunConfig, {
        "stages": _names(args.stages, STAGES, "--stages"), "model": args.model,
        "formats": _names(args.formats, (), "--formats"), "rig": args.rig,
    })
    stages = list(config.stages)
    if args.start:
        stages = [s for s in stages if STAGES.index(s) >= STAGES.index(args.start)]
    if args.until:
        stages = [s for s in stages if STAGES.index(s) <= STAGES.index(args.until)]
    if not stages:
        raise ValueError("no stage left to run with these --stages/--from/--until")
    return RunConfig(tuple(stages), config.model, config.formats, config.rig)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap run``."""
    session = take_session(args.session, "run").require()
    config = config_from_args(session, args)
    overwrite = STAGES if args.overwrite == "all" else _names(args.overwrite, STAGES, "--overwrite")
    with stage_progress() as (progress, on_stage):
        result = run_pipeline(session, config, overwrite=overwrite, progress=progress, on_stage=on_stage)
    print_outcomes(result, console)
    report = session.report_dir / "index.html"
    if report.exists():
        print(f"report: {report}")
    return 0
