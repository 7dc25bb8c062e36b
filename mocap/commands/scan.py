"""``mocap scan SESSION``: measure the body from a scan take (the person holds an A-pose and turns)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap scan``."""
    p = sub.add_parser(
        "scan", help="fit the body shape to a scan take's silhouettes (A-pose, one turn) and measure it",
        description="The fit stage in scan mode ([fit] scan = true): the shape from the performer's masks "
        "(masks.npz, written by `mocap detect`) in many frames of a take in which the person holds an A-pose and "
        "turns once, every camera's view, with the keypoints posing each frame; writes body.npz, body_rest.obj/.ply "
        "and measurements.json. Run `mocap detect` and `mocap triangulate` first (or `mocap run`). The normal take "
        "works too (`mocap fit` uses the masks where the session has them), with wider error bars.")
    p.add_argument("session", help="session folder")
    p.add_argument("--frames", type=int, help="frames whose silhouettes the shape is fitted to (default 24)")
    p.add_argument("--overwrite", action="store_true", help="refit even if the inputs have not changed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap scan``."""
    import json

    from mocap_studio.session import open_session
    from mocap_studio.stages import STAGES
    from mocap_studio.stages_body import run_fit

    session = open_session(args.session).require()
    config = STAGES["fit"].load_config(session, {"scan": True, "silhouettes": True, "scan_frames": args.frames})
    report = run_fit(session, config, args.overwrite)
    print(f"{'up to date' if report.skipped else 'wrote'} {session.body_path} and {session.root / 'measurements.json'}")
    meas = report.figures.get("measurements", {})
    print(json.dumps(meas, indent=1)[:2000])
    return 0
