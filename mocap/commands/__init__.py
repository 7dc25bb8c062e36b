"""One module per subcommand; each exposes ``register(subparsers)`` and sets ``func`` on its parser.

Only commands that work are listed in ``COMMANDS``.
"""

COMMANDS: list[str] = [
    "record", "sync", "board", "calibrate", "detect", "import_keypoints", "triangulate", "fit", "export", "synth", "report",
    "run", "demo", "config", "scan", "batch", "view", "live",
]
