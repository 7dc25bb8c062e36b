"""Reading the session and building the page section by section. Each section reads its own inputs and
says "not run yet" (with the command to run) when they are absent, or shows the error when a file cannot
be read, so one broken file never hides the rest of the report."""

from __future__ import annotations

import json
import logging
import os
import re
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mocap_studio.reconstruction.body.measurements import DEFINITIONS, TRUST_LIMITS_M, read_measurements
from mocap_studio.report import html as H
from mocap_studio.report import plots
from mocap_studio.report.analysis import ANGLE_GROUPS, JointAngles, analyse
from mocap_studio.report.checks import angle_jump_checks, figure_checks, freshness_checks
from mocap_studio.session import Session

log = logging.getLogger(__name__)

STAGES = ("synth", "calibrate", "sync", "detect", "import-keypoints", "triangulate", "fit", "export")
"""Stage reports shown in the overview, in pipeline order."""
OVERLAY_THREADS = 4  # cameras drawn side by side (at most the cores)
TRAJECTORY_JOINTS = ("nose", "left_wrist", "right_wrist", "left_ankle", "right_ankle")


@dataclass
class Warning_:
    """A problem found in the take, and what to do about it."""

    text: str
    advice: str = ""
    source: str = "report"


@dataclass
class Take:
    """What the session holds, read once. A part that could not be read is None, with its error in
    ``errors`` (part -> message)."""

    session: Session
    rig: Any = None
    offsets: dict[str, float] = field(default_factory=dict)
    sync: dict[str, Any] | None = None
    kp2d: Any = None
    camera_times: dict[str, np.ndarray] = field(default_factory=dict)
    kp3d: Any = None
    body: Any = None
    stage_reports: dict[str, dict] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    warnings: list[Warning_] = field(default_factory=list)
    angles: JointAngles | None = None


def _read(take: Take, part: str, reader: Callable[[], Any]) -> Any:
    try:
        return reader()
    except (OSError, ValueError, KeyError) as e:
        take.errors[part] = str(e)
        log.warning("report: cannot read %s: %s", part, e)
        return None


def load_take(session: Session) -> Take:
    """Read every output of the session that exists."""
    from mocap_studio.capture.sync import read_sync
    from mocap_studio.reconstruction.body.io import load_body_npz
    from mocap_studio.reconstruction.keypoints import load_keypoints2d, load_keypoints3d

    take = Take(session)
    for stage in (*STAGES, "report"):
        path = session.stage_report_path(stage)
        if path.exists() and stage != "report":
            report = _read(take, f"report/{stage}.json", lambda path=path: json.loads(path.read_text()))
            if report is not None:
                take.stage_reports[stage] = report
    if session.calibration_path.exists():
        from mocap_studio.inputs import read_rig

        # the cameras as they fit the recordings (encoder padding, a scaled video), as the stages used them
        take.rig = _read(take, "calibration.toml", lambda: read_rig(session, require_extrinsics=False,
                                                                      fit_to_recordings=True))
    if session.sync_path.exists():
        offsets = _read(take, "sync.json", lambda: read_sync(session.sync_path))
        if offsets is not None:
            take.sync = json.loads(session.sync_path.read_text())
            take.offsets = {c: o.offset_s for c, o in offsets.items()}
    if session.keypoints2d_path.exists():
        take.kp2d = _read(take, "keypoints2d.npz", lambda: load_keypoints2d(session.keypoints2d_path))
        if take.kp2d is not None and session.keypoints2d_synced_path.exists():
            # each camera's own frame times, as triangulation put them on the take's timeline
            from mocap_studio.inputs import read_synced_keypoints2d

            synced = _read(take, "keypoints2d_synced.npz", lambda: read_synced_keypoints2d(session))
            take.camera_times = synced.camera_times if synced is not None else {}
    if session.keypoints3d_path.exists():
        take.kp3d = _read(take, "keypoints3d.npz", lambda: load_keypoints3d(session.keypoints3d_path))
    if session.body_path.exists():
        take.body = _read(take, "body.npz", lambda: load_body_npz(session.body_path))
    return take


def _not_run(stage: str, command: str) -> str:
    return H.missing(f"{stage}: not run yet. Run `{command}` to fill this section.")


def _cmd(take: Take, sub: str) -> str:
    return f"mocap {sub} {take.session.root}"


def _unavailable(s: H.Section, take: Take, part: str, value: object, stage: str, sub: str) -> H.Section | None:
    """``s`` saying why it is empty when ``part`` could not be read or its stage has not run (``value`` None);
    None when the section can be built."""
    if part in take.errors:
        return s.add(H.error(f"{part}: {take.errors[part]}"))
    if value is None:
        s.ran = False
        return s.add(_not_run(stage, _cmd(take, sub)))
    return None


# ------------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------------
def section_calibration(take: Take) -> H.Section:
    """Cameras, calibration residuals, board coverage and the rig's layout."""
    s = H.Section("calibration", "Calibration")
    if (empty := _unavailable(s, take, "calibration.toml", take.rig, "calibration", "calibrate")) is not None:
        return empty
    rows = []
    for cam in take.rig:
        rows.append([cam.name, f"{cam.size[0]}x{cam.size[1]}", float(cam.K[0, 0]), float(cam.K[1, 1]),
                     " ".join(f"{x:.2f}" for x in cam.center)])
    s.add("<h3>Cameras (calibration.toml)</h3>", H.table(["camera", "image", "fx (px)", "fy (px)", "centre (m)"], rows))
    forward = np.stack([cam.R[2] for cam in take.rig])  # the optical axis in world coordinates
    path_xy = None
    if take.kp3d is not None:
        fmt = take.kp3d.format
        hips = [fmt.index(j) for j in ("left_hip", "right_hip") if j in fmt.joints]
        if hips:
            path_xy = take.kp3d.xyz[:, hips, :2].mean(axis=1)  # NaN where a hip is missing
    png = plots.camera_layout(list(take.rig.names), take.rig.centers, forward, path_xy)
    s.add(H.image(png, "camera layout from above", "plot-camera-layout"))
    report = take.stage_reports.get("calibrate")
    if report is None:
        return s.add(
            H.missing(
                "No report/calibrate.json: this calibration was made elsewhere or imported, so its "
                f"residuals and board coverage are unknown. Run `{_cmd(take, 'calibrate')}` to see them."
            )
        )
    fig = report.get("figures", {})
    s.add(
        f"<p>Bundle adjustment: reprojection RMS <b>{H.esc(H.fmt(fig.get('reprojection_rms_px')))} px</b> over "
        f"{H.esc(fig.get('corners', '–'))} corners ({H.esc(fig.get('corners_rejected', 0))} rejected), "
        f"{H.esc(fig.get('board_views', '–'))} board views.</p>"
    )
    rows = []
    for name, c in fig.get("cameras", {}).items():
        intr = c.get("intrinsics", {})
        rows.append([name, c.get("board_views"), c.get("reprojection_rms_px"), c.get("corners_used"),
                     intr.get("coverage"), intr.get("views_used")])
    s.add(
        "<h3>Residuals and board coverage per camera</h3>",
        H.table(["camera", "board views", "RMS (px)", "corners used", "image coverage", "intrinsic views"], rows),
    )
    if fig.get("cameras_not_calibrated"):
        s.add(H.error(f"not calibrated (no shared board views): {', '.join(fig['cameras_not_calibrated'])}"))
    pictures = fig.get("pictures", {})
    shown = []
    for key in sorted(pictures, key=lambda k: (not k.startswith("coverage"), k)):
        path = take.session.report_dir / pictures[key]
        if path.is_file() and path.suffix.lower() == ".png":
            shown.append(H.image(path.read_bytes(), key.replace("_", " "), f"calib-{re.sub(r'[^A-Za-z0-9_-]', '_', key)}"))
    if shown:
        s.add("<h3>Board coverage, residuals and rig (from the calibration)</h3>", f'<div class="pics">{"".join(shown)}</div>')
    return s


def section_sync(take: Take) -> H.Section:
    """Each camera's offset and how confidently it was found."""
    s = H.Section("sync", "Synchronization")
    if (empty := _unavailable(s, take, "sync.json", take.sync, "synchronization", "sync")) is not None:
        return empty if empty.ran else empty.add("<p>Without sync.json the cameras are taken to have started together.</p>")
    cams = take.sync.get("cameras", {})
    names = list(cams)
    rows = [[c, cams[c].get("offset_s"), cams[c].get("offset_frames"), cams[c].get("confidence"), cams[c].get("method")]
            for c in names]
    s.add(f"<p>Reference camera: <b>{H.esc(take.sync.get('reference', '–'))}</b>. "
          f"{H.esc(take.sync.get('convention', ''))}.</p>",
          H.table(["camera", "offset (s)", "offset (frames)", "confidence", "method"], rows, digits=4),
          H.image(plots.sync_offsets(names, [cams[c].get("offset_s", np.nan) for c in names],
                                     [cams[c].get("confidence", np.nan) for c in names]),
                  "sync offsets", "plot-sync"))
    for c in names:
        conf = cams[c].get("confidence")
        if conf is not None and conf < 0.3 and cams[c].get("offset_s") != 0.0:
            take.warnings.append(
                Warning_(
                    f"camera {c}: synchronization confidence {conf:.2f} is low",
                    "record a clear clap or flash, or check the camera's audio",
                    "sync",
                )
            )
    return s


def section_detection(take: Take, config) -> H.Section:  # noqa: ANN001
    """Detection confidence per camera over time (on the common clock)."""
    s = H.Section("detection", "2D detection")
    kp = take.kp2d
    if (empty := _unavailable(s, take, "keypoints2d.npz", kp, "2D detection", "detect")) is not None:
        return empty
    rows, times, conf_series = [], [], []
    for c, name in enumerate(kp.camera_names):
        own = take.camera_times.get(name, kp.frame_times)
        n = len(own)
        conf = np.where(np.isfinite(kp.xy[c, :n]).all(-1), kp.confidence[c, :n], np.nan)
        seen = np.isfinite(conf) & (conf > 0)
        detected = float(seen.any(-1).mean()) if n else 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames without any detection give NaN
            per_frame = np.nanmean(np.where(seen, conf, np.nan), axis=-1) if n else np.zeros(0)
        rows.append([name, n, detected, float(np.nanmean(conf[seen])) if seen.any() else None])
        times.append(np.asarray(own) + take.offsets.get(name, 0.0))
        conf_series.append(per_frame)
        if detected < config.min_camera_detection:
            take.warnings.append(Warning_(
                f"camera {name} sees the performer in only {100 * detected:.0f} % of its frames",
                "move or turn the camera so the whole body stays in view, or drop it from session.toml's "
                "[session] cameras", "detect"))
    s.add(f"<p>Skeleton <b>{H.esc(kp.skeleton)}</b>, {kp.num_joints} joints, {kp.num_frames} frames.</p>",
          H.table(["camera", "frames", "frames with the performer", "mean confidence"], rows),
          H.image(plots.per_camera_over_time(times, conf_series, list(kp.camera_names), "mean confidence",
                                             "detection confidence per camera over time (common clock)", (0, 1.05)),
                  "detection confidence over time", "plot-detection"))
    return s


def reprojection_matrix(take: Take) -> np.ndarray | None:
    """(C, J) mean distance in pixels between each camera's 2D keypoints and the 3D keypoints projected
    through it at that camera's own frame times (sync offsets applied); None without the inputs."""
    from mocap_studio.report.overlay import interpolate_keypoints

    kp2, kp3, rig = take.kp2d, take.kp3d, take.rig
    if kp2 is None or kp3 is None or rig is None or kp2.skeleton != kp3.skeleton:
        return None
    out = np.full((kp2.num_cameras, kp3.num_joints), np.nan)
    names = set(rig.names)
    for c, name in enumerate(kp2.camera_names):
        if name not in names:
            continue
        own = np.asarray(take.camera_times.get(name, kp2.frame_times), float)
        xyz = interpolate_keypoints(kp3.xyz, kp3.frame_times, own + take.offsets.get(name, 0.0))
        uv = rig[name].project(xyz)
        err = np.linalg.norm(uv - kp2.xy[c, : len(own)], axis=-1)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(err)
            out[c] = np.where(ok.any(0), np.nansum(np.where(ok, err, 0), 0) / np.maximum(ok.sum(0), 1), np.nan)
    return out


def section_triangulation(take: Take, config) -> H.Section:  # noqa: ANN001
    """Triangulation quality and the reprojection error per camera and joint."""
    s = H.Section("triangulation", "Triangulation and reprojection")
    kp = take.kp3d
    if (empty := _unavailable(s, take, "keypoints3d.npz", kp, "triangulation", "triangulate")) is not None:
        return empty
    valid = kp.valid
    fig = take.stage_reports.get("triangulate", {}).get("figures", {})
    s.add(H.table(["frames", "duration (s)", "joints triangulated", "interpolated", "mean reprojection (px)",
                   "mean cameras per joint", "jitter (m/s²)"],
                  [[kp.num_frames, float(np.ptp(kp.frame_times)) if kp.num_frames else 0.0, float(valid.mean()),
                    float(kp.interpolated.mean()), float(np.nanmean(kp.error)) if np.isfinite(kp.error).any() else None,
                    fig.get("mean_cameras_used"), fig.get("jitter_mean_acceleration_m_s2")]]))
    matrix = reprojection_matrix(take)
    if matrix is not None:
        s.add("<h3>Reprojection error per camera and joint</h3>",
              "<p>The 3D keypoints projected through each camera at its own frame times, against that camera's "
              "detections (mean over the frames where both exist).</p>",
              H.image(plots.heatmap(matrix, list(take.kp2d.camera_names), list(kp.format.joints),
                                    "reprojection error per camera and joint", "px"), "reprojection heatmap",
                      "plot-reprojection"))
    elif fig.get("per_camera"):
        names = list(fig["per_camera"])
        s.add(H.image(plots.bars(names, [fig["per_camera"][n].get("mean_reprojection_error_px") for n in names],
                                 "px", "mean reprojection error per camera"), "reprojection per camera",
                      "plot-reprojection"))
    frac = valid.mean(0)
    s.add(
        H.image(
            plots.bars(
                list(kp.format.joints),
                frac,
                "fraction",
                "frames in which each joint was triangulated",
                config.min_joint_triangulated,
            ),
            "triangulated per joint",
            "plot-triangulated",
        )
    )
    for j, name in enumerate(kp.format.joints):
        if frac[j] < config.min_joint_triangulated:
            take.warnings.append(Warning_(
                f"joint {name} was missing in {100 * (1 - frac[j]):.0f} % of the frames",
                "more cameras that see it, or less occlusion (loose clothing, arms in front of the body)",
                "triangulate"))
    return s


def section_bones(take: Take, config) -> H.Section:  # noqa: ANN001
    """Bone lengths and how much they vary."""
    s = H.Section("bones", "Bone-length stability")
    kp = take.kp3d
    if kp is None:
        s.ran = False
        return s.add(_not_run("triangulation", _cmd(take, "triangulate")))
    fmt = kp.format
    segs = fmt.rigid_segments
    if not segs:
        return s.add(H.missing(f"skeleton {fmt.name} has no rigid segments to check"))
    rows, series = [], {}
    for a, b in segs:
        length = np.linalg.norm(kp.xyz[:, b] - kp.xyz[:, a], axis=-1)
        if not np.isfinite(length).any():
            continue
        med = float(np.nanmedian(length))
        var = float(np.nanstd(length) / max(med, 1e-9))
        name = f"{fmt.joints[a]}–{fmt.joints[b]}"
        rows.append([name, 100 * med, 100 * var])
        series[name] = 100 * (length / med - 1)
        if var > config.max_bone_variation:
            take.warnings.append(
                Warning_(
                    f"bone {name} changes length by {100 * var:.1f} % (standard deviation)",
                    "check the calibration and the detections of its joints; a good take stays under 3 %",
                    "report",
                )
            )
    s.add(
        H.table(["bone", "median length (cm)", "variation (%)"], rows, digits=3),
        H.image(
            plots.lines(kp.frame_times, series, "deviation from median (%)", "bone length over time, relative to its median"),
            "bone lengths",
            "plot-bones",
        ),
    )
    return s


def section_trajectories(take: Take) -> H.Section:
    """Trajectories of the main joints."""
    s = H.Section("trajectories", "Joint trajectories")
    kp = take.kp3d
    if kp is None:
        s.ran = False
        return s.add(_not_run("triangulation", _cmd(take, "triangulate")))
    fmt = kp.format
    series = {}
    if "left_hip" in fmt.joints and "right_hip" in fmt.joints:
        series["hips (mid)"] = (kp.joint("left_hip") + kp.joint("right_hip")) / 2
    for j in TRAJECTORY_JOINTS:
        if j in fmt.joints:
            series[j.replace("_", " ")] = kp.joint(j)
    return s.add(H.image(plots.trajectories(kp.frame_times, series), "joint trajectories", "plot-trajectories"))


def section_angles(take: Take, config) -> H.Section:  # noqa: ANN001
    """Joint angles over time and repetition counts."""
    s = H.Section("angles", "Joint angles and repetitions")
    kp = take.kp3d
    if kp is None:
        s.ran = False
        return s.add(_not_run("triangulation", _cmd(take, "triangulate")))
    try:
        take.angles = analyse(kp.xyz, kp.format, kp.frame_times, config.repetitions)
    except ValueError as e:
        return s.add(H.error(f"joint angles: {e}"))
    ang = take.angles
    reps = ang.repetitions
    rows = [[r.exercise.replace("_", " "), r.count, r.partial, r.signal_name, f"above {r.enter_deg:g}, below {r.exit_deg:g}"]
            for r in reps.values()]
    cards = "".join(_card(r.exercise.replace("_", " "), r.count, f"id=reps-{r.exercise}") for r in reps.values())
    s.add(
        "<h3>Repetitions</h3>",
        f'<div class="cards">{cards}</div>',
        H.table(["exercise", "counted", "partial (not counted)", "signal", "thresholds (deg)"], rows),
    )
    for r in reps.values():
        s.add(H.image(plots.repetition_signal(ang.times_s, r.signal, r.enter_deg, r.exit_deg, r.intervals,
                                              f"{r.exercise.replace('_', ' ')}: {r.signal_name} ({r.count} counted)"),
                      f"{r.exercise} signal", f"plot-reps-{r.exercise}"))
    groups = {g: {n: ang.angles[n] for n in names} for g, names in ANGLE_GROUPS.items()}
    bands = {"knees": [tuple(i[[0, 2]]) for i in reps["squat"].intervals],
             "hips": [tuple(i[[0, 2]]) for i in reps["squat"].intervals],
             "shoulders": [tuple(i[[0, 2]]) for i in reps["jumping_jack"].intervals]}
    s.add(
        "<h3>Angles over time</h3>",
        "<p>Flexion 0° is straight; shoulder flexion / abduction 0° is the arm hanging, 90° forward / "
        "sideways, 180° overhead; spine flexion is the trunk's forward lean from vertical.</p>",
        H.image(plots.angle_panels(ang.times_s, groups, bands), "joint angles", "plot-angles"),
    )
    return s


def _card(label: str, value: object, attrs: str = "") -> str:
    return f'<div class="card" {attrs}><div class="big">{H.esc(value)}</div>{H.esc(label)}</div>'


def _read_obj_vertices(path: Path) -> np.ndarray:
    rows = [line.split()[1:4] for line in path.read_text().splitlines() if line.startswith("v ")]
    return np.asarray(rows, float).reshape(-1, 3)


def _measurements_html(meas: dict[str, dict]) -> list[str]:
    """The measurements table (value and one sigma, cm), the error-bar plot and a caveat naming those not trustworthy;
    ``meas`` as :func:`read_measurements` gives it (older files carry no sigma: said so)."""
    has_sigma = any(m["sigma"] is not None for m in meas.values())
    rows = [[k.replace("_", " "), 100 * m["value"], "" if m["sigma"] is None else f"± {100 * m['sigma']:.1f}",
             {True: "yes", False: "NO", None: ""}[m["trustworthy"]], m["reason"] or m["definition"]]
            for k, m in meas.items()]
    out = ["<h3>Measurements</h3>",
           "<p>Taken on the fitted body in its rest pose (after ISO 8559-1; the last column says how, or why a "
           "measurement is not to be trusted). ± is one standard deviation.</p>"]
    if not has_sigma:
        out.append(H.missing("this measurements.json has no uncertainties (written before they existed): rerun the fit "
                             "stage; until then no measurement here can be called trustworthy"))
    out.append(H.table(["measurement", "cm", "± cm (1 sigma)", "trustworthy", "definition / caveat"], rows, digits=4))
    bad = [k.replace("_", " ") for k, m in meas.items() if m["trustworthy"] is False]
    if bad:
        out.append(H.error(f"Not trustworthy: {', '.join(bad)}. Their one-sigma uncertainty is beyond what a garment "
                           "can be sized by (1 cm for a girth, 5 mm for a length): do not use them for fitting."))
    if has_sigma:
        limits = [TRUST_LIMITS_M.get(DEFINITIONS[k].kind, np.nan) * 1000 if k in DEFINITIONS else np.nan for k in meas]
        out.append(H.image(plots.measurement_errorbars(
            list(meas), [100 * m["value"] for m in meas.values()],
            [np.nan if m["sigma"] is None else 1000 * m["sigma"] for m in meas.values()],
            [bool(m["trustworthy"]) for m in meas.values()], limits), "measurements with error bars", "plot-measurements"))
    return out


def section_body(take: Take) -> H.Section:
    """The fitted body: shape, measurements and fit quality."""
    s = H.Section("body", "Body and measurements")
    if (empty := _unavailable(s, take, "body.npz", take.body, "body fitting", "fit")) is not None:
        return empty
    b = take.body
    s.add(f"<p>Model <b>{H.esc(b.model)}</b>, {len(b.pose_rotvec)} frames at {b.frame_rate:.3g} fps.</p>")
    meas_path = take.session.root / "measurements.json"
    if meas_path.exists():
        try:
            meas = read_measurements(json.loads(meas_path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            s.add(H.error(f"{meas_path}: cannot read ({e}); run `{_cmd(take, 'fit')} --force`"))
        else:
            s.add(*_measurements_html(meas))
    else:
        s.add(H.missing("no measurements.json"))
    fit = take.stage_reports.get("fit", {}).get("figures", {})
    scalars = [[k.replace("_", " "), v] for k, v in fit.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    if scalars:
        s.add("<h3>Fit quality</h3>", H.table(["figure", "value"], scalars))
    offsets = fit.get("marker_offsets_mm") or {}
    if offsets:
        rows = sorted(([name.replace("_", " "), float(np.linalg.norm(v)), *v] for name, v in offsets.items()),
                      key=lambda r: -r[1])
        s.add("<h3>Detector landmarks against the body model</h3>",
              "<p>Where the detector puts each surface landmark relative to the model's definition of it, as "
              "fitted for this take (mm, in the body's upright rest frame: X its left, Y its back, Z up). The fit "
              "moves these landmarks, not the body's shape; a large offset says the detector sees that point "
              "elsewhere on this body.</p>",
              H.table(["landmark", "offset mm", "x", "y", "z"], rows[:12], digits=3))
    rest = take.session.root / "body_rest.obj"
    if rest.exists():
        try:
            s.add(H.image(plots.silhouettes(_read_obj_vertices(rest)), "fitted body at rest", "plot-body"))
        except (OSError, ValueError) as e:
            s.add(H.error(f"{rest}: cannot read ({e})"))
    from mocap_studio.report.scene3d import write_scene3d

    s.add(*write_scene3d(take.session)[0])
    return s


def section_export(take: Take) -> H.Section:
    """The exported files, and Blender's import of the FBX and BVH when the export stage could render it."""
    s = H.Section("export", "Export")
    report = take.stage_reports.get("export")
    if report is None:
        s.ran = False
        return s.add(_not_run("export", _cmd(take, "export")))
    figures = report.get("figures", {})
    sizes = figures.get("bytes", {})
    if sizes:
        s.add(H.table(["file", "kB"], [[name, size / 1000] for name, size in sizes.items()], digits=4))
    if figures.get("rig"):
        s.add(f"<p>Retargeted onto the <b>{H.esc(figures['rig'])}</b> rig.</p>")
    preview = figures.get("blender_preview", {})
    picture = take.session.root / preview.get("picture", "-")
    if preview.get("picture") and picture.exists():
        s.add("<h3>In Blender</h3>",
              f"<p>Blender 5.3 imported the FBX (blue) and the BVH (orange, set 1.3 m aside) with its own importers; "
              f"frames {', '.join(str(f) for f in preview.get('frames', []))}. The bone positions of the two imports "
              f"agree within {H.fmt(preview.get('fbx_bvh_difference_mm'))} mm.</p>",
              H.image(picture.read_bytes(), "the exported FBX and BVH as Blender imports them", "blender-preview",
                      ))
    elif preview:
        s.add(H.missing(f"Blender preview: {preview.get('skipped') or preview.get('failed')}"))
    return s


def section_truth(take: Take) -> H.Section | None:
    """Against the truth: only for a synthetic take scored by ``mocap demo`` (report/demo.json)."""
    path = take.session.stage_report_path("demo")
    if not path.exists():
        return None
    s = H.Section("truth", "Against the truth (virtual studio)")
    try:
        scores = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return s.add(H.error(f"{path}: cannot read ({e})"))
    targets, met = scores.get("targets", {}), scores.get("met", {})
    rows = [[k.replace("_", " "), v, f"<= {targets[k]}" if k in targets else "", "" if k not in met else
             ("met" if met[k] else "MISSED")] for k, v in scores.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and "seconds" not in k]
    s.add(H.table(["figure", "value", "target", ""], rows))
    errors = scores.get("measurement_errors_mm", {})
    if errors:
        sigma = scores.get("measurement_sigma_mm", {})
        rows = [[k.replace("_", " "), e, sigma.get(k, ""), "" if k not in sigma else ("yes" if abs(e) <= sigma[k] else "no")]
                for k, e in errors.items()]
        within = scores.get("measurements_within_sigma")
        s.add("<h3>Measurement errors (mm)</h3>",
              "" if within is None else
              f"<p>The stated one-sigma uncertainty covers {100 * within:.0f} % of the true errors.</p>",
              H.table(["measurement", "fitted - true", "stated sigma", "within sigma"], rows))
    joints = scores.get("mpjpe_per_joint_mm", {})
    if joints:
        s.add("<h3>Keypoint error per joint (mm)</h3>", H.table(["joint", "mm"], list(joints.items())))
    return s


def _grouped(warnings: list[Warning_]) -> list[Warning_]:
    """Warnings that repeat for many joints or cameras ("joint nose: ...", "joint left_eye: ...") as one."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    order: list[tuple[str, str, str] | Warning_] = []
    for w in warnings:
        m = re.match(r"^(joint|camera) (\S+): (.*)$", w.text)
        if not m:
            order.append(w)
            continue
        key = (w.source, m.group(1), m.group(3))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(m.group(2))
    out = []
    for item in order:
        if isinstance(item, Warning_):
            out.append(item)
            continue
        source, kind, text = item
        names = groups[item]
        label = f"{kind} {names[0]}" if len(names) == 1 else f"{len(names)} {kind}s ({', '.join(names)})"
        advice = next((w.advice for w in warnings if w.source == source and w.text.endswith(text)), "")
        out.append(Warning_(f"{label}: {text}", advice, source))
    return out


def section_warnings(take: Take) -> H.Section:
    """Every stage's warnings and what to do about them."""
    s = H.Section("warnings", "Warnings and advice")
    for stage, report in take.stage_reports.items():
        for w in report.get("warnings", []):
            take.warnings.append(Warning_(str(w), "", stage))
    for part, message in take.errors.items():
        take.warnings.append(Warning_(f"{part} could not be read: {message}", "rerun the stage that writes it", "report"))
    cameras = len(take.rig.names) if take.rig is not None else 0
    checks = figure_checks(take.stage_reports, cameras) + freshness_checks(take.stage_reports)
    if take.angles is not None:
        checks += angle_jump_checks(take.angles.angles, take.angles.times_s)
    take.warnings += [Warning_(text, advice, source) for text, advice, source in checks]
    items = []
    for w in _grouped(take.warnings):
        advice = f'<div class="advice">{H.esc(w.advice)}</div>' if w.advice else ""
        items.append(f"<li><b>[{H.esc(w.source)}]</b> {H.esc(w.text)}{advice}</li>")
    if not items:
        return s.add("<p>No warnings: every figure is within its normal range and every check passed.</p>")
    return s.add(f'<ul class="warnings">{"".join(items)}</ul>')


def section_overview(take: Take) -> H.Section:
    """The take at a glance: cameras, frames, which stages ran."""
    s = H.Section("overview", "Overview")
    cards = []
    cams = take.rig.names if take.rig is not None else (take.kp2d.camera_names if take.kp2d is not None else ())
    cards.append(_card("cameras", len(cams)))
    if take.kp3d is not None and take.kp3d.num_frames:
        cards.append(_card("seconds reconstructed", f"{np.ptp(take.kp3d.frame_times):.1f}"))
        cards.append(_card("frames", take.kp3d.num_frames))
    s.add(f'<div class="cards">{"".join(cards)}</div>')
    rows = []
    for stage in STAGES:
        r = take.stage_reports.get(stage)
        if r is None:
            continue
        rows.append([stage, r.get("written", ""), r.get("seconds"), len(r.get("warnings", []))])
    s.add("<h3>Stages run</h3>", H.table(["stage", "written", "seconds", "warnings"], rows) if rows
          else H.missing(f"no stage has run yet; start with `mocap calibrate {take.session.root}`"))
    return s


# ------------------------------------------------------------------------------------------------
# overlays
# ------------------------------------------------------------------------------------------------
def _body_frames(take: Take):  # noqa: ANN202 - BodyFrames | None
    from mocap_studio.reconstruction.body.fitting import FitConfig
    from mocap_studio.report.overlay import BodyFrames
    from mocap_studio.stages_body import fit_body_model

    b = take.body
    cfg = take.session.stage_config("fit", FitConfig, {"model": b.model, "gender": b.gender})
    model = fit_body_model(cfg)
    return BodyFrames(model, b.shape, b.pose_rotvec, b.trans, np.asarray(b.frame_times, float))


def _dropped(times: np.ndarray, fps: float) -> int:
    """Frames missing from a camera's timestamps (gaps longer than 1.5 frame periods)."""
    if len(times) < 2 or not np.isfinite(fps) or fps <= 0:
        return 0
    gaps = np.diff(np.asarray(times, float)) * fps
    return int(np.sum(np.round(gaps[gaps > 1.5]) - 1))


def section_overlays(take: Take, config, progress) -> tuple[H.Section, list[Path]]:  # noqa: ANN001
    """Overlay videos (skeleton and mesh over each camera's video) and frame strips; returns the section and the files written."""
    from mocap_studio.capture.frames import FrameSourceError, probe
    from mocap_studio.report.overlay import OverlaySettings, overlay_camera

    s = H.Section("overlays", "Overlays: skeleton and mesh over the video")
    if take.rig is None:
        s.ran = False
        return s.add(_not_run("calibration", _cmd(take, "calibrate"))), []
    try:
        sources = take.session.performance_sources()
    except (FileNotFoundError, ValueError) as e:
        return s.add(H.error(f"recordings: {e}")), []
    if take.kp3d is None and take.body is None:
        s.ran = False
        return s.add(_not_run("triangulation", _cmd(take, "triangulate"))), []
    keypoints = None
    if take.kp3d is not None:
        fmt = take.kp3d.format
        keypoints = (take.kp3d.xyz, np.asarray(take.kp3d.frame_times, float), fmt.joints, fmt.bones)
    body = None
    if take.body is not None:
        try:
            body = _body_frames(take)
        except (OSError, ValueError, ImportError, RuntimeError) as e:
            s.add(H.error(f"body model {take.body.model}: cannot load it ({e}); the mesh is left out"))
    span = np.asarray(take.kp3d.frame_times if take.kp3d is not None else take.body.frame_times, float)
    k = config.strip_frames
    strip_times = span[0] + np.ptp(span) * (np.arange(k) + 0.5) / k if k and len(span) else np.zeros(0)
    settings = OverlaySettings(config.max_width, config.mesh_style, config.mesh_alpha, config.video_crf)
    outputs: list[Path] = []
    # the cameras are drawn side by side (decoding, ray casting and encoding one camera's frames keeps about one
    # core busy); the section lists them in the take's order
    jobs: dict[str, tuple[Future, Any, float, Path | None] | str] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(len(sources), os.cpu_count() or 1, OVERLAY_THREADS))) as pool:
        for name, source in sources.items():
            if name not in take.rig.names:
                jobs[name] = H.missing(f"camera {name}: not in calibration.toml, so nothing can be drawn over it")
                continue
            try:
                info = probe(source)
            except FrameSourceError as e:
                jobs[name] = H.error(str(e))
                continue
            fps = info.fps if np.isfinite(info.fps) and info.fps > 0 else (take.session.config().frame_rate or 30.0)
            video = take.session.report_dir / "overlays" / f"{name}.mp4" if config.overlays else None
            jobs[name] = (pool.submit(overlay_camera, take.rig[name], source, take.offsets.get(name, 0.0), keypoints,
                                      body, settings, video, strip_times, fps, progress, info.frame_count), info, fps, video)
    for name, job in jobs.items():
        if isinstance(job, str):
            s.add(job)
            continue
        future, info, fps, video = job
        try:
            strip, times = future.result()
        except (FrameSourceError, OSError, ValueError) as e:
            s.add(H.error(f"camera {name}: overlay failed ({e})"))
            continue
        dropped = _dropped(times, fps) if info.kind == "video" else 0
        if dropped:
            take.warnings.append(Warning_(
                f"camera {name}: {dropped} frame(s) dropped (gaps in the video's timestamps)",
                "lower the resolution or frame rate, use a faster disk or cable; dropped frames are left as "
                "missing rows, not shifted", "report"))
        s.add(f"<h3>{H.esc(name)}</h3>")
        if video is not None and video.exists():
            outputs.append(video)
            s.add(f'<p>Video: <a href="overlays/{H.esc(video.name)}">overlays/{H.esc(video.name)}</a></p>')
        figs = []
        for i, t in enumerate(sorted(strip)):
            img = H.image(plots.image_jpeg(strip[t]), f"{name} at {t:.2f} s", f"strip-{name}-{i}", "image/jpeg", "frame")
            figs.append(f"<figure>{img}<figcaption>{t:.2f} s</figcaption></figure>")
        s.add(f'<div class="strip">{"".join(figs)}</div>')
    return s, outputs


def build_page(session: Session, config, progress=None) -> tuple[str, dict, list[str], list[Path]]:  # noqa: ANN001
    """The page's HTML, the figures for report.json, the warnings (text) and the extra files written."""
    take = load_take(session)
    sections = [
        section_calibration(take),
        section_sync(take),
        section_detection(take, config),
        section_triangulation(take, config),
        section_bones(take, config),
        section_trajectories(take),
        section_angles(take, config),
        section_body(take),
        section_export(take),
    ]
    overlays, outputs = section_overlays(take, config, progress)
    sections.append(overlays)
    truth = section_truth(take)
    if truth is not None:
        sections.append(truth)
    from mocap_studio.report.people import section_people, section_person

    # several people only: the take's page lists them (people.json), each person's page says whose it is
    people = section_people(session) or section_person(session)
    if people is not None:
        sections.insert(0, people)
    warnings = section_warnings(take)
    sections = [section_overview(take), *sections, warnings]
    name = session.config().name
    subtitle = f"{session.root} · written {time.strftime('%Y-%m-%d %H:%M')}"
    text = H.page(f"Take report: {name}", subtitle, sections)
    figures: dict[str, Any] = {
        "sections": {s.id: ("ok" if s.ran else "not run") for s in sections},
        "repetitions": {k: {"count": r.count, "partial": r.partial, "intervals_s": r.intervals.round(3).tolist()}
                        for k, r in (take.angles.repetitions.items() if take.angles else [])},
        "errors": dict(take.errors),
    }
    return text, figures, [w.text for w in take.warnings], outputs
