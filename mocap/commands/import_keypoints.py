"""``mocap import-keypoints SESSION SOURCE --format F``: another detector's 2D keypoints -> keypoints2d.npz."""

from __future__ import annotations

import argparse
from pathlib import Path

from mocap_studio.reconstruction.importers import FORMATS
from mocap_studio.reconstruction.skeletons import FORMATS as SKELETONS
from mocap_studio.session import Session
from mocap_studio.stages import STAGES
from mocap_studio.stages_keypoints import run_import_keypoints


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap import-keypoints``."""
    parser = sub.add_parser(
        "import-keypoints",
        help="import 2D keypoints from OpenPose, MMPose/RTMPose, EasyMocap or npz -> keypoints2d.npz",
        description="SOURCE holds one folder (or .json file) per camera, named by camera: OpenPose JSON "
        "folders, MMPose prediction files, EasyMocap annots/<camera> folders; for npz, SOURCE is the file. "
        "With several people per frame the performer is chosen by cross-view consistency (needs "
        "calibration.toml). Defaults: the [import-keypoints] table of session.toml.",
    )
    parser.add_argument("session", type=Path, help="the take's folder")
    parser.add_argument("source", type=Path, nargs="?", help="folder with one entry per camera, or an npz file")
    parser.add_argument("--format", choices=FORMATS, help="the detector's file format")
    parser.add_argument("--skeleton", choices=sorted(SKELETONS),
                        help="skeleton of the files (default: told from the data; asked for when it cannot be)")
    parser.add_argument("--camera", action="append", dest="cameras", help="import only these cameras (repeat)")
    parser.add_argument("--fps", type=float, help="frame rate of the keypoints (default: session.toml's, else the "
                        "session's videos of the same cameras; without either the import asks for it)")
    parser.add_argument("--overwrite", action="store_true", help="run even if the inputs have not changed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap import-keypoints``."""
    session = Session(args.session)
    overrides = {"source": str(args.source.resolve()) if args.source else None, "format": args.format,
                 "skeleton": args.skeleton, "cameras": tuple(args.cameras) if args.cameras else None,
                 "frame_rate": args.fps}
    config = STAGES["import-keypoints"].load_config(session, overrides, {"cameras": "--camera", "frame_rate": "--fps"})
    run_import_keypoints(session, config, args.overwrite)
    return 0
