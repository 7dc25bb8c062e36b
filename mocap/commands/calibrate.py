"""``mocap calibrate``: calibrate the cameras of a session, or from a board and one recording per camera."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mocap_studio.common.order import natural_key
from mocap_studio.session import take_session
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
        "report/calibrate.json. Without: give --board, --camera NAME=PATH for every camera, and --out. Views are "
        "matched across cameras by frame index: give synchronized videos, or image folders of simultaneous frames "
        "named alike; photos taken one camera at a time give intrinsics only (--intrinsics-only). --import FILE "
        "turns a calibration made elsewhere into calibration.toml.",
    )
    p.add_argument("session", nargs="?", type=Path, help="the take's folder")
    p.add_argument("--board", help="board preset name or TOML (explicit mode; a session names its own)")
    p.add_argument("--camera", action="append", default=[], metavar="NAME=PATH",
                   help="a camera's board recording: a video file or an image folder (repeat per camera)")
    p.add_argument("--out", type=Path, help="where to write the calibration TOML (explicit mode)")
    p.add_argument("--config", type=Path, help="a TOML file with a [calibrate] table (explicit mode)")
    p.add_argument("--intrinsics", type=Path,
                   help="a calibration file whose intrinsics to start from instead of calibrating them (e.g. one "
                   "written by --intrinsics-only; it may be SESSION/calibration.toml itself)")
    p.add_argument("--intrinsics-only", action="store_true",
                   help="calibrate each camera alone from its own board photos or video (no view taken as seen by two "
                   "cameras) and write a calibration with intrinsics only; later stages refuse it until the cameras' "
                   "poses are added (a synchronized board recording with --intrinsics, or --import)")
    p.add_argument("--import", dest="import_file", type=Path, metavar="FILE",
                   help="read a calibration made elsewhere (aniposelib/Pose2Sim/caliscope TOML, EasyMocap intri.yml/"
                   "extri.yml, OpenCV yml, Qualisys .qca.txt) and write it as SESSION/calibration.toml (or --out)")
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
    p.add_argument("--checkerboard-method", choices=["auto", "sb", "classic"],
                   help="checkerboard detector: auto (findChessboardCornersSB, then findChessboardCorners where it "
                   "finds nothing; the default), sb or classic")
    p.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict:
    out: dict = {}
    if args.align:
        out["align"] = args.align
    if args.floor_frame is not None:
        out["floor_frame"] = args.floor_frame
    detection = {}
    if args.frame_step:
        detection["frame_step"] = args.frame_step
    if args.checkerboard_method:
        detection["checkerboard_method"] = args.checkerboard_method
    if detection:
        out["detection"] = detection
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
        calibration = take_session(args.session, "calibrate").calibration_path
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


def _run_import(args: argparse.Namespace) -> int:
    from mocap_studio.stages_calibration import import_calibration

    if args.camera or args.board or args.refine or args.intrinsics_only or args.intrinsics:
        raise ValueError("--import FILE takes only a SESSION or --out (and --overwrite/--force)")
    if args.session is not None:
        if args.out:
            raise ValueError("give either a SESSION or --out with --import, not both")
        session = take_session(args.session, "calibrate").require()
        outcome = import_calibration(args.import_file, session.calibration_path, session, args.overwrite, args.force)
    else:
        if not args.out:
            raise ValueError("--import without a SESSION needs --out FILE (where to write the calibration TOML)")
        outcome = import_calibration(args.import_file, args.out, None, args.overwrite, args.force)
    print(f"imported {outcome.source} ({outcome.format}, {len(outcome.rig)} cameras) -> {outcome.calibration_path}")
    for cam in outcome.rig:
        x, y, z = cam.center
        print(f"  {cam.name:>12}: {cam.size[0]}x{cam.size[1]}, f = {cam.K[0, 0]:.1f} px, "
              f"centre ({x:+.3f}, {y:+.3f}, {z:+.3f}) m")
    if outcome.backup:
        print(f"the previous calibration was kept as {outcome.backup}")
    if outcome.intrinsics_only:
        print("this calibration holds intrinsics only: add the cameras' poses before triangulating")
    return 0


def _print_intrinsics(calibration: Path, report_path: Path, figures: dict, warnings: list[str]) -> None:
    print(f"calibration (intrinsics only): {calibration}")
    print(f"report:      {report_path}")
    for name, c in figures.get("cameras", {}).items():
        intr = c.get("intrinsics", {})
        found = ", ".join(f"{k} {v}" for k, v in sorted(c.get("found_by", {}).items(), key=lambda kv: -kv[1]))
        print(f"  {name:>12}: f = {c['focal_px'][0]:.1f} / {c['focal_px'][1]:.1f} px, principal point "
              f"({c['principal_point_px'][0]:.1f}, {c['principal_point_px'][1]:.1f}), RMS {intr.get('rms_px', 0):.3f} px, "
              f"board in {c['board_views']} of {c['frames_read']} images" + (f" ({found})" if found else ""))
    print("The cameras' poses are not known yet: later stages refuse this file until they are added (record a board "
          "seen by the cameras at the same time, then mocap calibrate ... --intrinsics "
          f"{calibration}; or mocap calibrate --import a full calibration).")
    for w in warnings:
        log.warning("%s", w)


def _run_explicit(args: argparse.Namespace, progress) -> int:
    if not (args.board and args.camera and args.out):
        raise ValueError("without a SESSION, give --board, --camera NAME=PATH (per camera) and --out FILE")
    config = load_stage_config(args.config, _overrides(args))
    outcome = run_explicit(_parse_cameras(args.camera), args.board, args.out, args.force,
                           config, args.intrinsics, progress, intrinsics_only=args.intrinsics_only)
    written = json.loads(outcome.report_path.read_text())
    show = _print_intrinsics if args.intrinsics_only else _print_figures
    show(outcome.calibration_path, outcome.report_path, written["figures"], written["warnings"])
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``mocap calibrate``."""
    if args.import_file is not None:
        return _run_import(args)
    if args.refine is not None:
        return _run_refine(args)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(label: str, done: int, total: int | None) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        if args.session is None:
            return _run_explicit(args, progress)
        if args.camera or args.board or args.out:
            raise ValueError("give either a SESSION or --board/--camera/--out, not both")
        session = take_session(args.session, "calibrate").require()
        config = STAGES["calibrate"].load_config(session, _overrides(args))
        report = run_calibrate(session, config, args.overwrite, progress=progress,
                               intrinsics_file=args.intrinsics, force=args.force, intrinsics_only=args.intrinsics_only)
    if report.skipped:
        print(f"up to date: {session.calibration_path}")
        return 0
    show = _print_intrinsics if args.intrinsics_only else _print_figures
    show(session.calibration_path, session.stage_report_path("calibrate"), report.figures, list(report.warnings))
    return 0
