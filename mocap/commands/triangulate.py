"""``mocap triangulate SESSION``: keypoints2d.npz + calibration.toml -> keypoints3d.npz."""

from __future__ import annotations

import argparse
from pathlib import Path

from mocap_studio.reconstruction.filtering import METHODS
from mocap_studio.session import open_session
from mocap_studio.stages import STAGES
from mocap_studio.stages_keypoints import run_triangulate


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap triangulate``."""
    parser = sub.add_parser(
        "triangulate",
        help="robust triangulation of the 2D keypoints, then temporal filtering -> keypoints3d.npz",
        description="Reject outlier views per joint, fix left/right swaps, triangulate, fill short gaps and "
        "filter; write keypoints3d.npz, keypoints2d_synced.npz (the 2D keypoints used, on the take's one "
        "timeline) and report/triangulate.json (reprojection error per camera and joint, fraction triangulated, "
        "cameras used, bone-length variation, jitter). Settings: the [triangulate] and [filter] tables of "
        "session.toml; options here override them.",
    )
    parser.add_argument("session", type=Path, help="the take's folder")
    parser.add_argument("--min-cameras", type=int, help="fewest inlier cameras per joint (default 2)")
    parser.add_argument("--max-error-px", type=float, dest="max_error", help="largest inlier threshold (px)")
    parser.add_argument("--filter", choices=METHODS, help="temporal filter (default butterworth)")
    parser.add_argument("--overwrite", action="store_true", help="run even if the inputs have not changed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap triangulate``."""
    from mocap_studio.reconstruction.filtering import FilterConfig

    session = open_session(args.session).require()
    config = STAGES["triangulate"].load_config(
        session, {"min_cameras": args.min_cameras, "max_reprojection_error_px": args.max_error},
        {"max_reprojection_error_px": "--max-error-px"})
    filter_config = session.stage_config("filter", FilterConfig, {"method": args.filter}, {"method": "--filter"})
    run_triangulate(session, config, args.overwrite, filter_config=filter_config)
    return 0
