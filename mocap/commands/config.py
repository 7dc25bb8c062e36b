"""``mocap config SESSION``: print the take's effective configuration (every table, every key) as TOML."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap config``."""
    p = sub.add_parser(
        "config", help="print the take's effective configuration as TOML (every table, defaults filled in)",
        description="Read SESSION/session.toml, check every table and key (an unknown one is an error naming the "
        "nearest valid one), and print the configuration every stage would use: each table of session.toml with "
        "every key, defaults filled in. Copy any of it into session.toml to change it.",
    )
    p.add_argument("session", type=Path, help="the take's folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap config``."""
    import tomli_w
    from mocap_studio.session import Session
    from mocap_studio.stages import effective_config

    session = Session(args.session).require()
    print(f"# effective configuration of {session.config_path}", end="\n\n")
    print(tomli_w.dumps(effective_config(session)), end="")
    return 0
