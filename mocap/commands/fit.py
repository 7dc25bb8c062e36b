"""``mocap fit SESSION``: fit the body model to the take's 3D keypoints."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap fit``."""
    p = sub.add_parser("fit", help="fit a body model (Anny, or SMPL/SMPL+H/SMPL-X from your files) to the take",
                       description="Fit the body to keypoints3d.npz (and the synchronized 2D keypoints triangulation "
                       "used) -> body.npz. Settings: the [fit] table of session.toml; options here override it.")
    p.add_argument("session", help="session folder")
    p.add_argument("--model", choices=("anny", "smpl", "smplh", "smplx"), help="body model (default anny)")
    p.add_argument("--gender", choices=("neutral", "female", "male"), help="SMPL-family model file's gender")
    p.add_argument("--model-dir", dest="model_dir", help="folder of SMPL-family model files")
    p.add_argument("--meshes", action="store_true", help="also write one OBJ per frame under export/meshes/")
    p.add_argument("--overwrite", action="store_true", help="refit even if the inputs have not changed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap fit``."""
    from mocap_studio.session import open_session
    from mocap_studio.stages import STAGES
    from mocap_studio.stages_body import run_fit

    session = open_session(args.session).require()
    overrides = {"model": args.model, "gender": args.gender, "model_dir": args.model_dir}
    config = STAGES["fit"].load_config(session, overrides)
    report = run_fit(session, config, args.overwrite, meshes=args.meshes)
    print(f"{'up to date' if report.skipped else 'wrote'} {session.body_path}")
    return 0
