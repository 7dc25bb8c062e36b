"""``mocap calibrate``: calibrate the cameras of a session, or from a board and one recording per camera."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mocap_studio.common.order import natural_key
from mocap_studio.session import Session
from mocap_studio.stages import STAGES
from mocap_studio.stages_calibration import load_stage_config, run_calibrate, run_explicit
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap calibrate``."""
    p = sub.add_parser(
        "calibrate",
        help="calibrate the cameras (intrinsics, extrinsics, bundle adjustment, floor alignment)",
        description="Calibrate from board recordings. With SESSION: reads SESSION/calibration/<camera>.<ext> (or "
        "<camera>/ image folders) and the board named in session.toml, writes SESSION/calibration.toml and "
        "report/calibrate.json. Without: give --board, --camera NAME=PATH for every camera, and --out.",
    )
    p.add_argument("session", nargs="?", type=Path, help="the take's folder")
    p.add_argument("--board", help="board preset name or TOML (explicit mode; a session names its own)")
    p.add_argument("--camera", action="append", default=[], metavar="NAME=PATH",
                   help="a camera's board recording: a video file or an image folder (repeat per camera)")
    p.add_argument("--out", type=Path, help="where to write the calibration TOML (explicit mode)")
    p.add_argument("--config", type=Path, help="a TOML file with a [calibrate] table (explicit mode)")
    p.add_argument("--intrinsics", type=Path,
                   help="a calibration file whose intrinsics to use instead of calibrating them")
    p.add_argument("--frame-step", type=int, help="examine every N-th frame of the recordings")
    p.add_argument("--align", choices=["floor", "camera", "none"], help="world frame (default: floor board)")
    p.add_argument("--floor-frame", type=int, help="frame index where the board lies on the floor (default: last)")
    p.add_argument("--refine", type=Path, metavar="POINTS_NPZ",
                   help="refine the calibration from 2D keypoint correspondences of a moving subject instead of "
                   "calibrating from a board: SESSION's keypoints2d.npz with --refine SESSION/keypoints2d.npz, or "
                   "any (C, N, 2) 'p2d' npz with --intrinsics CALIBRATION.toml --out REFINED.toml")
    p.add_argument("--max-points", type=int, default=20000, help="points per refinement round (default 20000)")
    p.add_argument("--overwrite", action="store_true", help="calibrate again even if the inputs have not changed")
    p.add_argument("--force", action="store_true",
                   help="replace a calibration file not written here (the old one is kept as a .bak copy)")
    p.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict:
    out: dict = {}
    if args.align:
        out["align"] = args.align
    if args.floor_frame is not None:
        out["floor_frame"] = args.floor_frame
    if args.frame_step:
        out["detection"] = {"frame_step": args.frame_step}
    return out


def _parse_cameras(items: list[str]) -> dict[str, Path]:
    cams: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--camera {item!r}: expected NAME=PATH, e.g. --camera cam_0=board/cam_0.mp4")
        if name in cams:
            raise ValueError(f"--camera {name!r} given twice")
        if not Path(path).exists():
            raise FileNotFoundError(f"--camera {name}={path}: no such file or folder")
        cams[name] = Path(path)
    return {k: cams[k] for k in sorted(cams, key=natural_key)}


def _run_refine(args: argparse.Namespace) -> int:
    from mocap_studio.calibration.refine import RefineConfig
    from mocap_studio.stages_calibration import refine_calibration

    if args.session is not None:
        calibration = Session(args.session).calibration_path
        out = args.out or calibration
    else:
        if not (args.intrinsics and args.out):
            raise ValueError("--refine without a SESSION needs --intrinsics CALIBRATION.toml (the rig to refine) and --out")
        calibration, out = args.intrinsics, args.out
    path, result = refine_calibration(calibration, args.refine, out, force=args.force or out == calibration,
                                      config=RefineConfig(max_points=args.max_points))
    print(f"refined calibration: {path}")
    print(f"median reprojection error {result.median_error_before_px:.2f} px -> {result.median_error_after_px:.2f} px "
          f"({result.points_used} points, {result.seconds:.1f} s)")
    for name in result.rig.names:
        print(f"  {name:>12}: {result.per_camera_median_before_px[name]:8.2f} px -> "
              f"{result.per_camera_median_after_px[name]:6.2f} px")
    return 0


def _print_figures(calibration: Path, report_path: Path, figures: dict, warnings: list[str]) -> None:
    print(f"calibration: {calibration}")
    print(f"report:      {report_path}")
    corners = int(figures.get("corners", 0)) - int(figures.get("corners_rejected", 0))
    print(f"reprojection RMS {figures.get('reprojection_rms_px', float('nan')):.3f} px over {corners} corners")
    for name, c in figures.get("cameras", {}).items():
        if "reprojection_rms_px" not in c:
            continue
        x, y, z = c["centre_m"]
        print(f"  {name:>12}: RMS {c['reprojection_rms_px']:.3f} px, f = {c['focal_px'][0]:.1f} px, "
              f"centre ({x:+.3f}, {y:+.3f}, {z:+.3f}) m")
    for w in warnings:
        log.warning("%s", w)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap calibrate``."""
    if args.refine is not None:
        return _run_refine(args)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(label: str, done: int, total: int | None) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        if args.session is not None:
            if args.camera or args.board or args.out:
                raise ValueError("give either a SESSION or --board/--camera/--out, not both")
            session = Session(args.session).require()
            config = STAGES["calibrate"].load_config(session, _overrides(args))
            report = run_calibrate(session, config, args.overwrite, progress=progress,
                                   intrinsics_file=args.intrinsics, force=args.force)
        else:
            if not (args.board and args.camera and args.out):
                raise ValueError("without a SESSION, give --board, --camera NAME=PATH (per camera) and --out FILE")
            overrides = _overrides(args)
            config = load_stage_config(args.config, overrides)
            outcome = run_explicit(_parse_cameras(args.camera), args.board, args.out, args.force,
                                   config, args.intrinsics, progress)
            written = json.loads(outcome.report_path.read_text())
            _print_figures(outcome.calibration_path, outcome.report_path, written["figures"], written["warnings"])
            return 0
    if report.skipped:
        print(f"up to date: {session.calibration_path}")
        return 0
    _print_figures(session.calibration_path, session.stage_report_path("calibrate"), report.figures,
                   list(report.warnings))
    return 0
