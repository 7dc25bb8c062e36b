"""``mocap board NAME_OR_TOML --out DIR``: write a printable board (PNG and PDF at exact physical size)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mocap_studio.calibration.boards import list_presets, load_board, write_board_printout

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap board``."""
    parser = sub.add_parser(
        "board",
        help="write a printable calibration board (PNG + PDF at exact size)",
        description="Write <out>/<name>.png and <name>.pdf: the board at its exact physical size with its "
        "definition printed in the margin. Presets: " + ", ".join(list_presets()),
    )
    parser.add_argument(
        "board", metavar="NAME_OR_TOML", help="a preset name from configs/boards or a board TOML"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--dpi", type=float, default=300.0, help="print resolution (default 300)")
    parser.add_argument(
        "--margin-mm", type=float, default=15.0, help="white margin on every side (default 15)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap board``."""
    board = load_board(args.board)
    printout = write_board_printout(board, args.out, dpi=args.dpi, margin_mm=args.margin_mm)
    width, height = printout.page_size_mm
    log.info("%s", board.describe())
    log.info(
        "wrote %s and %s (page %.1f x %.1f mm, %.1f dpi)",
        printout.pdf,
        printout.png,
        width,
        height,
        printout.dpi,
    )
    log.info("Print at 100 %% scale and check one square with a ruler: %g mm.", board.square_size_m * 1000)
    return 0
