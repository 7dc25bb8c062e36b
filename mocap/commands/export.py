"""``mocap export SESSION --format bvh,fbx,glb,usdz,obj,trc --rig mixamo``: write the take's export files."""

from __future__ import annotations

import argparse
import logging

from mocap_studio.session import open_session
from mocap_studio.stages_export import FORMATS, STAGE, ExportConfig, run_export

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap export``."""
    parser = sub.add_parser(
        "export",
        help="export the take: BVH/FBX/GLB/USDZ/OBJ from body.npz, TRC/C3D from keypoints3d.npz",
        description="Write SESSION/export/<take>.<rig>.<format> (animations), <take>.apose.<format> (the rest mesh) and "
        "<take>.<format> (keypoints, AMASS). Formats: " + ", ".join(FORMATS) + ". "
        "Defaults come from session.toml [export] (and [retarget] for how the body is put on the rig).",
    )
    parser.add_argument("session", help="the session folder")
    parser.add_argument("--format", dest="formats", help="comma-separated formats, e.g. bvh,fbx,glb,trc")
    parser.add_argument(
        "--rig",
        help="target rig: mixamo, ue5_mannequin, unity_humanoid, cmu_bvh, smpl24, "
        "a rig TOML, or 'body' for the body model's own skeleton and skinned mesh",
    )
    parser.add_argument("--overwrite", action="store_true", help="redo even when the inputs are unchanged")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap export``."""
    session = open_session(args.session).require()
    overrides = {
        "formats": [f.strip().lower() for f in args.formats.split(",") if f.strip()] if args.formats else None,
        "rig": args.rig,
    }
    config = session.stage_config(STAGE, ExportConfig, overrides, {"formats": "--format"})
    report = run_export(session, config, overwrite=args.overwrite)
    for path in report.outputs:
        log.info("wrote %s", path)
    return 0
