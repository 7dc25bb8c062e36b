"""``mocap triangulate SESSION``: keypoints2d.npz + calibration.toml -> keypoints3d.npz."""

from __future__ import annotations

import argparse
from pathlib import Path

from mocap_studio.reconstruction.filtering import METHODS
from mocap_studio.session import Session
from mocap_studio.stages_keypoints import run_triangulate


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "triangulate",
        help="robust triangulation of the 2D keypoints, then temporal filtering -> keypoints3d.npz",
        description="Reject outlier views per joint, fix left/right swaps, triangulate, fill short gaps and "
        "filter; write keypoints3d.npz and report/triangulate.json (reprojection error per camera and "
        "joint, fraction triangulated, cameras used, bone-length variation, jitter). Settings: the "
        "[triangulate] and [filter] tables of session.toml; options here override them.",
    )
    parser.add_argument("session", type=Path, help="the take's folder")
    parser.add_argument("--min-cameras", type=int, help="fewest inlier cameras per joint (default 2)")
    parser.add_argument("--max-error-px", type=float, dest="max_error", help="largest inlier threshold (px)")
    parser.add_argument("--filter", choices=METHODS, help="temporal filter (default butterworth)")
    parser.add_argument("--overwrite", action="store_true", help="run even if the inputs have not changed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = {"min_cameras": args.min_cameras, "max_reprojection_error_px": args.max_error}
    run_triangulate(Session(args.session), overrides, args.overwrite, {"method": args.filter})
    return 0
