"""``mocap``: one entry point, one subcommand per stage. Parses arguments and calls a command; nothing else."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mocap_studio.commands import COMMANDS
from rich.console import Console
from rich.logging import RichHandler

console = Console(stderr=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mocap", description="Markerless multi-camera motion capture.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"mocap_studio.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted. Finished outputs are kept; run the same command again to resume.[/]")
        return 130
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as e:
        if args.verbose:
            raise
        console.print(f"[red]error:[/] {e}", soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
