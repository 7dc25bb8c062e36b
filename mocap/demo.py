"""``mocap demo``: a virtual studio take built once in the project cache, the whole pipeline run over it, and
the results scored against the studio's truth.

The take (``DEMO_STUDIO``): four cameras on a ring at 1280x720 and 30 fps, about 6 s of squats then jumping
jacks by a randomly shaped Anny body, a board recording (12 close-ups per camera: they pin down the focal
lengths, which 6 left at 0.18 % and 8 mm of camera centre; the board through the volume; then on the floor),
the cameras out of sync by up to a third of a second with claps on their audio, and two dropped frames. It is
built into ``<cache>/demo/take`` (``.partial`` while building, renamed when complete, so an interrupted build
never looks finished) and reused while ``DEMO_STUDIO`` is unchanged.

Scores (:func:`score_take`, for any synthetic take with a ``truth/`` folder): camera centres after a rigid
alignment and in the world frame, sync offsets, MPJPE of the 12 body joints (shoulders, elbows, wrists,
hips, knees, ankles of BlazePose-33), per-vertex error of the fitted mesh over the take, and the body
measurements of the fitted rest shape against the true shape's. ``TARGETS`` are the acceptance bounds.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from mocap_studio.common.fileio import write_json_atomic
from mocap_studio.pipeline import RunConfig, RunResult, run_pipeline
from mocap_studio.session import Session
from mocap_studio.stages import Progress
from mocap_studio.studio import StudioConfig

log = logging.getLogger(__name__)

DEMO_STUDIO = StudioConfig(
    rig="ring4", motions=("squat", "jumping_jack"), seconds=6.0, seed=0, vertices=True,
    calibration_views=60, close_ups_per_camera=12, floor_frames=3,
)
DEMO_FIT = {"silhouettes": True}
"""The demo take's [fit] table: its body is measured from the silhouettes too, as a take for measurements should be,
with the fit's default settings for them (``FitConfig``'s ``silhouette_*``: the contour, the rim, keypoint offsets,
the feet's allowance, 26 starts raced; README, "Shape from silhouettes", "Body measurements"). Keypoints alone
cannot fix a body's height within 15 mm (the demo performer 21.5 mm short, other performers 30 mm either way), the
head's top and the waist never being keypoints."""
BODY_JOINTS = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
TARGETS = {
    "camera_centre_error_max_mm": 5.0, "sync_error_max_ms": 2.0, "mpjpe_body_mm": 30.0,
    "per_vertex_error_mm": 35.0, "height_error_mm": 15.0,
}


def demo_root() -> Path:
    """Where the demo take lives by default: ``<project cache>/demo``."""
    from mocap_studio.common.cache import project_cache_dir

    return project_cache_dir() / "demo"


def _take_key(config: StudioConfig) -> dict[str, Any]:
    """What the take depends on: the studio settings, the body model's landmark data (the truth keypoints come
    from it) and the virtual studio's code."""
    from mocap_studio import studio
    from mocap_studio.common.fileio import fingerprint
    from mocap_studio.reconstruction.body.regressors import DATA_DIR

    code = Path(studio.__file__).resolve().parent
    files = sorted(DATA_DIR.glob("*")) + sorted(code.glob("*.py"))
    return {"studio": json.loads(json.dumps(asdict(config), default=str)), "fit": DEMO_FIT,
            "sources": fingerprint(files, root=code.parents[1])}


def build_take(root: Path, config: StudioConfig = DEMO_STUDIO, fresh: bool = False,
               progress: Progress | None = None) -> Session:
    """The demo take in ``root/take``: reused when it was completely built from the same ``config``."""
    from mocap_studio.stages_synth import run_synth

    take, partial = root / "take", root / "take.partial"
    stamp, key = take / "truth" / "demo_key.json", _take_key(config)
    if not fresh and stamp.exists():
        if json.loads(stamp.read_text()) == key:
            log.info("demo take: reusing %s", take)
            return Session(take)
        log.info("demo take: %s was built from other settings or model data; building it again", take)
    if partial.exists():
        shutil.rmtree(partial)  # an interrupted build of ours: nothing of the user's lives in the cache
    log.info("demo take: rendering 4 cameras x %.0f s at 1280x720 plus the board recording (once)", config.seconds)

    def synth_progress(label: str, done: int, total: int) -> None:
        if progress:
            progress(label, done, total)

    run_synth(partial, config, progress=synth_progress)
    _add_fit_settings(Session(partial))
    write_json_atomic(partial / "truth" / "demo_key.json", key)
    if take.exists():
        shutil.rmtree(take)
    partial.rename(take)
    return Session(take)


def _add_fit_settings(session: Session) -> None:
    """The take's session.toml with the demo's [fit] table (:data:`DEMO_FIT`) added."""
    import tomli_w
    from mocap_studio.common.fileio import write_text_atomic

    tables = dict(session.raw_config())  # the session's cached parse: not changed in place
    tables["fit"] = {**tables.get("fit", {}), **DEMO_FIT}
    write_text_atomic(session.config_path, tomli_w.dumps(tables))


# ---- scoring against the truth --------------------------------------------------------------------------
def _rig_comparison(session: Session):  # noqa: ANN202 - calibration.compare.RigComparison
    from mocap_studio.calibration.compare import compare_rigs
    from mocap_studio.calibration.formats import read_calibration

    est, truth = read_calibration(session.calibration_path), read_calibration(session.truth_dir / "calibration.toml")
    return est, truth, compare_rigs(est, truth)


def to_truth_world(session: Session) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) taking the take's world (set by its calibration: the board on the floor) into the truth's world.

    The calibrated world is where the user laid the board, so results are compared in the truth's world after
    the rigid motion that best aligns the calibrated cameras with the true ones (from the cameras alone, never
    from the keypoints or the body)."""
    _, _, comparison = _rig_comparison(session)
    return comparison.rotation, comparison.translation


def score_calibration(session: Session) -> dict[str, float]:
    est, truth, comparison = _rig_comparison(session)
    summary = comparison.summary()
    world = [1000 * float(np.linalg.norm(est[n].center - truth[n].center)) for n in truth.names if n in est]
    return {
        "camera_centre_error_mean_mm": summary["centre_error_mean_mm"],
        "camera_centre_error_max_mm": summary["centre_error_max_mm"],
        "camera_rotation_error_max_deg": summary["rotation_error_max_deg"],
        "focal_error_max_percent": summary["focal_error_max_percent"],
        "camera_centre_world_error_max_mm": max(world),  # the take's world is the floor board's: see to_truth_world
    }


def score_sync(session: Session) -> dict[str, float]:
    from mocap_studio.capture.sync import read_sync

    est = read_sync(session.sync_path)
    timing = json.loads((session.truth_dir / "timing.json").read_text())["cameras"]
    names = [c for c in timing if c in est]
    ref = names[0]
    errors = {c: 1000 * abs((est[c].offset_s - est[ref].offset_s) - (timing[c]["offset_s"] - timing[ref]["offset_s"]))
              for c in names[1:]}
    return {"sync_error_max_ms": max(errors.values()), "sync_error_ms": errors}


def score_keypoints(session: Session) -> dict[str, Any]:
    from mocap_studio.reconstruction.keypoints import load_keypoints3d
    from mocap_studio.reconstruction.skeletons import get_format
    from mocap_studio.report.overlay import interpolate_keypoints

    est = load_keypoints3d(session.keypoints3d_path)
    truth = load_keypoints3d(session.truth_dir / f"keypoints3d_{est.skeleton}.npz")
    names = get_format(est.skeleton).joints
    body = [i for i, n in enumerate(names) if any(b in n for b in BODY_JOINTS)]
    at = interpolate_keypoints(truth.xyz, truth.frame_times, est.frame_times)
    R, t = to_truth_world(session)
    err = 1000 * np.linalg.norm(est.xyz @ R.T + t - at, axis=-1)
    return {
        "mpjpe_body_mm": float(np.nanmean(err[:, body])),
        "mpjpe_all_mm": float(np.nanmean(err)),
        "mpjpe_per_joint_mm": {names[i]: round(float(np.nanmean(err[:, i])), 1) for i in body},
        "keypoint_frames_scored": int(np.isfinite(err[:, body]).any(1).sum()),
    }


def score_body(session: Session) -> dict[str, Any]:
    from mocap_studio.reconstruction.body.io import load_body_npz
    from mocap_studio.reconstruction.body.measurements import measure_body, read_measurements
    from mocap_studio.stages_body import load_body_model

    fitted, truth = load_body_npz(session.body_path), load_body_npz(session.truth_dir / "body.npz")
    model = load_body_model(fitted.model, fitted.gender)
    out: dict[str, Any] = {}
    vertices_path = session.truth_dir / "vertices.npy"
    if fitted.model == truth.model and vertices_path.exists():
        true_vertices = np.load(vertices_path, mmap_mode="r")
        # frames of the fit at the truth's frame times (the same reference clock), to 1 ms
        index = np.searchsorted(truth.frame_times, fitted.frame_times).clip(0, len(truth.frame_times) - 1)
        match = np.abs(truth.frame_times[index] - fitted.frame_times) < 1e-3
        errors = []
        R, t = to_truth_world(session)
        for start in range(0, len(index), 32):
            sel = np.flatnonzero(match[start:start + 32]) + start
            if len(sel) == 0:
                continue
            verts = model.evaluate(fitted.shape, fitted.pose_rotvec[sel], fitted.trans[sel]).vertices
            errors.append(np.linalg.norm(verts @ R.T + t - np.asarray(true_vertices[index[sel]]), axis=-1).mean(1))
        per_frame = 1000 * np.concatenate(errors) if errors else np.zeros(0)
        out["per_vertex_error_mm"] = float(per_frame.mean()) if len(per_frame) else float("nan")
        out["per_vertex_error_worst_frame_mm"] = float(per_frame.max()) if len(per_frame) else float("nan")
    measured, true = measure_body(model, fitted.shape).to_json(), measure_body(model, truth.shape).to_json()
    errors = {k: round(1000 * (measured[k] - true[k]), 1) for k in true if k != "units"}
    out["height_error_mm"] = abs(errors["height"])
    out["measurement_errors_mm"] = errors
    out["measurements_true_m"] = {k: v for k, v in true.items() if k != "units"}
    # the uncertainty the fit stage stated (measurements.json; files from before it carry none)
    stated_path = session.root / "measurements.json"
    if stated_path.exists():
        stated = read_measurements(json.loads(stated_path.read_text()))
        sigma = {k: round(1000 * m["sigma"], 1) for k, m in stated.items() if m["sigma"] is not None and k in errors}
        if sigma:
            out["measurement_sigma_mm"] = sigma
            out["measurements_within_sigma"] = float(np.mean([abs(errors[k]) <= sigma[k] for k in sigma]))
    return out


def score_take(session: Session) -> dict[str, Any]:
    """Every figure the take's outputs allow against ``truth/``; a missing output leaves its figures out."""
    if not session.truth_dir.is_dir():
        raise FileNotFoundError(f"{session.truth_dir}: no truth; only a synthetic take (mocap synth) can be scored")
    figures: dict[str, Any] = {}
    for needed, scorer in ((session.calibration_path, score_calibration), (session.sync_path, score_sync),
                           (session.keypoints3d_path, score_keypoints), (session.body_path, score_body)):
        if needed.exists():
            figures.update(scorer(session))
    figures["targets"] = TARGETS
    figures["met"] = {k: bool(figures[k] <= v) for k, v in TARGETS.items() if k in figures}
    return figures


def run_demo(root: Path | None = None, fresh: bool = False, progress: Progress | None = None,
             on_stage=None, config: StudioConfig = DEMO_STUDIO) -> tuple[Session, RunResult, dict[str, Any], float]:  # noqa: ANN001
    """Build (or reuse) the demo take, run every stage, score it; writes ``report/demo.json``.

    Returns (session, the run's stage outcomes, the scores, seconds spent building the take)."""
    from mocap_studio.common.cache import file_lock

    root = Path(root) if root else demo_root()
    # one demo at a time on a cache: a second one (another terminal) waits, then finds the take built and its
    # stages up to date, where two at once would render into the same take.partial
    with file_lock("demo", f"demo: another `mocap demo` is running on {root}; waiting for it to finish"):
        return _run_demo(root, fresh, progress, on_stage, config)


def _run_demo(root: Path, fresh: bool, progress: Progress | None, on_stage, config: StudioConfig  # noqa: ANN001
              ) -> tuple[Session, RunResult, dict[str, Any], float]:
    t0 = time.perf_counter()
    session = build_take(root, config, fresh=fresh, progress=progress)
    build_s = time.perf_counter() - t0
    scores: dict[str, Any] = {}

    def before(stage: str, done: RunResult) -> None:
        if stage == "report":  # score first, so that the take report shows the scores (report/demo.json)
            scores.update(score_take(session), build_seconds=round(build_s, 1),
                          pipeline_seconds_before_report=round(done.seconds, 1))
            write_json_atomic(session.stage_report_path("demo"), scores)

    result = run_pipeline(session, RunConfig(), overwrite=("report",), progress=progress, on_stage=on_stage,
                          before=before)
    scores["pipeline_seconds"] = round(result.seconds, 1)
    scores["stage_seconds"] = {o.stage: round(o.seconds, 1) for o in result.outcomes}
    write_json_atomic(session.stage_report_path("demo"), scores)
    return session, result, scores, build_s


__all__ = ["DEMO_FIT", "DEMO_STUDIO", "TARGETS", "build_take", "demo_root", "run_demo", "score_take"]
