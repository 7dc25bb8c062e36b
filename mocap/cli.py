"""``mocap``: one entry point, one subcommand per stage. Parses arguments and calls a command; nothing else."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mocap_studio.commands import COMMANDS
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

console = Console(stderr=True)


def version() -> str:
    """The installed version of mocap-studio ("unknown" when it is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("mocap-studio")
    except PackageNotFoundError:
        return "unknown"


def _add_verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    """-v/--verbose and --quiet; a subcommand's copy defaults to SUPPRESS so it never undoes the main one's."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="show debug messages")
    parser.add_argument("--quiet", action="store_true", default=default, help="show only warnings and errors")


def build_parser() -> argparse.ArgumentParser:
    """The ``mocap`` parser with every command's subparser; -v/--verbose and --quiet go before or after it."""
    parser = argparse.ArgumentParser(prog="mocap", description="Markerless multi-camera motion capture.")
    parser.add_argument("--version", action="version", version=f"mocap-studio {version()}")
    _add_verbosity(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"mocap_studio.commands.{name}").register(sub)
    for command in set(sub.choices.values()):
        _add_verbosity(command, argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``mocap`` command; returns its exit status (1 with a message on a bad input, 130 on Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False, show_time=False, markup=False)])
    if args.verbose or args.quiet:
        logging.getLogger().setLevel(level)
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
        console.print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
