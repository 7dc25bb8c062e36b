"""``mocap batch STUDIO``: every take of a studio folder that is not up to date, on Ray (local or a cluster)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mocap_studio.pipeline import STAGES
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap batch``."""
    p = sub.add_parser(
        "batch",
        help="process every take of a studio folder that is not up to date, on Ray (local, or a cluster)",
        description="Run every stage of every take in the studio folder STUDIO (takes/<take>/, calibrations/<name>/, "
        "studio.toml; see the README's batch section) that is not up to date, as `mocap run` would, spread over a "
        "Ray runtime: detection per camera and chunk of frames, the other stages per take. Resumes after an "
        "interruption. Writes STUDIO/batch/summary.json and summary.html (per take: status, figures, warnings). "
        "Needs the cluster extra: pip install 'mocap-studio[cluster]'.",
    )
    p.add_argument("studio", type=Path, help="the studio folder")
    p.add_argument("--address", help="an existing Ray cluster: auto, or ray://HOST:PORT (default: start a local "
                   "runtime on this machine)")
    p.add_argument("--cpus", type=int, help="CPUs of the local runtime (default: all of this machine's)")
    p.add_argument("--overwrite", default="", metavar="STAGES",
                   help="comma-separated stages to redo in every take even if up to date (or all)")
    p.set_defaults(func=run)


def _view(live: Live) -> Any:
    def view(state: dict[str, dict[str, Any]], finished: int, total: int) -> None:
        table = Table(title=f"batch: {finished}/{total} takes finished", show_edge=False)
        for column in ("take", "stage", "progress", "done"):
            table.add_column(column)
        for take, s in sorted(state.items()):
            done = f"{s['done']}/{s['total']}" if s.get("total") else ""
            status = s.get("status") or (f"after {s['finished']}" if s.get("finished") else "")
            table.add_row(escape(take), escape(s.get("stage") or ""), escape(f"{s.get('label') or ''} {done}".strip()),
                          escape(status))
        live.update(table)

    return view


def run(args: argparse.Namespace) -> int:
    """Run ``mocap batch``."""
    from mocap_studio.batch import run_batch

    overwrite = STAGES if args.overwrite == "all" else tuple(s.strip() for s in args.overwrite.split(",") if s.strip())
    with Live(console=console, transient=True, refresh_per_second=4) as live:
        result = run_batch(args.studio, address=args.address, cpus=args.cpus, overwrite=overwrite, view=_view(live))
    table = Table(title="takes", show_edge=False)
    for column in ("take", "status", "seconds", "warnings", "error"):
        table.add_column(column)
    for row in result.rows:
        colour = {"failed": "red", "done": "green"}.get(row["status"], "dim")
        table.add_row(escape(row["take"]), f"[{colour}]{row['status']}[/]", f"{row.get('seconds', 0):.1f}",
                      str(len(row.get("warnings", []))), escape((row.get("error") or "").splitlines()[0][:120]
                                                                  if row.get("error") else ""))
    console.print(table)
    console.print(f"{len(result.rows)} takes in {result.seconds:.1f} s on {result.cluster.get('nodes')} node(s), "
                  f"{result.cluster.get('cpus'):g} CPUs; {len(result.failed)} failed")
    print(f"summary: {result.summary_json}")
    print(f"summary: {result.summary_html}")
    return 1 if result.failed else 0
