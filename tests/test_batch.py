"""mocap batch: a studio of takes on Ray gives the same outputs as `mocap run` take by take, survives killed
workers, resumes, reports bad takes without stopping the others; and `mocap run` needs no Ray at all.

One local Ray runtime (2 CPUs) serves the module; every batch has a timeout so nothing hangs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mocap_studio.batch_studio import MARKER, StudioError, StudioSession, install_calibration, read_studio
from mocap_studio.cli import main as cli_main
from mocap_studio.session import Session

FRAMES = 12
SEEDS = (1, 2)
STUDIO_TOML = """\
[studio]
name = "test studio"

[defaults.run]
stages = ["calibrate", "detect", "sync", "triangulate", "fit", "export"]

[defaults.detect]
workers = 1  # `mocap run` detects in its own process (no worker start-up); the batch's detect tasks ignore it

[defaults.sync]
methods = ["none"]

[defaults.export]
formats = ["bvh", "trc"]
"""
# the studio's [defaults] written into each sequential take's own session.toml, so `mocap run` sees the same settings
SESSION_EXTRA = "\n" + STUDIO_TOML.split("\n\n", 1)[1].replace("defaults.", "")
DETERMINISTIC = ("calibration.toml", "keypoints2d.npz", "masks.npz", "sync.json", "keypoints2d_synced.npz",
                 "keypoints3d.npz", "body.npz")
"""Outputs compared byte for byte (plus every file in export/). Not compared: report/*.json and report/run.json
(they hold the time they were written and the seconds each stage took)."""
BATCH_TIMEOUT_S = 150


def _outputs(take: Path) -> dict[str, bytes]:
    files = {name: (take / name).read_bytes() for name in DETERMINISTIC}
    files.update({f"export/{p.name}": p.read_bytes() for p in sorted((take / "export").iterdir())})
    return files


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A studio of two short virtual-studio takes (no board recordings) and one calibration session."""
    from mocap_studio.stages_synth import run_synth
    from mocap_studio.studio import StudioConfig

    root = tmp_path_factory.mktemp("studio") / "pristine"
    for seed in SEEDS:
        take = root / "takes" / f"take_{seed}"
        run_synth(take, StudioConfig(frames=FRAMES, scale=0.5, in_sync=True, audio=False, calibration_views=2,
                                     close_ups_per_camera=0, floor_frames=1, seed=seed))
        shutil.rmtree(take / "calibration")
    (root / "calibrations" / "main").mkdir(parents=True)
    shutil.copy(root / "takes" / "take_1" / "truth" / "calibration.toml", root / "calibrations" / "main")
    (root / "studio.toml").write_text(STUDIO_TOML)
    return root


@pytest.fixture(scope="module")
def ray_runtime(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="the cluster extra (pip install .[cluster]) is not installed")
    faults = tmp_path_factory.mktemp("faults") / "armed"
    os.environ.setdefault("RAY_worker_niceness", "0")  # workers at this process's priority (Ray's default: +15)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"MOCAP_BATCH_FAULT_DIR": str(faults)}})
    try:
        yield faults
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def sequential(pristine, tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """Each take run alone by `mocap run` (the same settings in its own session.toml, the calibration copied)."""
    out = {}
    base = tmp_path_factory.mktemp("sequential")
    for seed in SEEDS:
        take = base / f"take_{seed}"  # the same folder name: exports are named after the take
        shutil.copytree(pristine / "takes" / take.name, take)
        shutil.copy(pristine / "calibrations" / "main" / "calibration.toml", take)
        with open(take / "session.toml", "a") as f:
            f.write(SESSION_EXTRA)
        assert cli_main(["run", str(take)]) == 0
        out[take.name] = _outputs(take)
    return out


@pytest.fixture(scope="module")
def batched(pristine, ray_runtime, tmp_path_factory):
    from mocap_studio.batch import run_batch

    root = tmp_path_factory.mktemp("batched") / "studio"
    shutil.copytree(pristine, root)
    t0 = time.perf_counter()
    result = run_batch(root, timeout_s=BATCH_TIMEOUT_S)
    return root, result, time.perf_counter() - t0


def test_batch_outputs_equal_sequential_runs(batched, sequential):
    root, result, seconds = batched
    assert [r["take"] for r in result.rows] == ["take_1", "take_2"]
    assert [r["status"] for r in result.rows] == ["done", "done"], [r.get("error") for r in result.rows]
    for row in result.rows:
        assert row["chunks_detected_in_batch"] == 4  # detection ran as Ray tasks, one per camera chunk
        assert row["calibration"] == "calibration from main"
        assert row["stages"]["fit"] == "ran" and row["stages"]["export"] == "ran"
        assert 0 < row["figures"]["triangulate.mean_reprojection_error_px"] < 5
        batch_files = _outputs(root / "takes" / row["take"])
        expected = sequential[row["take"]]
        assert sorted(batch_files) == sorted(expected)
        different = [name for name in expected if batch_files[name] != expected[name]]
        assert not different, f"{row['take']}: batch outputs differ from `mocap run`'s: {different}"
    summary = json.loads(result.summary_json.read_text())
    assert summary["takes_ok"] == 2 and summary["cluster"]["cpus"] == 2
    page = result.summary_html.read_text()
    assert "take_1" in page and "take_2" in page and "triangulate.mean_reprojection_error_px" in page
    assert seconds < BATCH_TIMEOUT_S


def test_second_batch_finds_everything_up_to_date_then_resumes_a_take(batched):
    from mocap_studio.batch import run_batch

    root, _, _ = batched
    t0 = time.perf_counter()
    assert cli_main(["batch", str(root)]) == 0  # the command, its progress view and summary table
    again = json.loads((root / "batch" / "summary.json").read_text())["takes"]
    assert [r["status"] for r in again] == ["up to date", "up to date"]
    assert time.perf_counter() - t0 < 30
    # an interrupted take (its fit's output gone) resumes at the fit; the other stays untouched
    body = root / "takes" / "take_2" / "body.npz"
    before = body.read_bytes()
    body.unlink()
    resumed = run_batch(root, timeout_s=90)
    rows = {r["take"]: r for r in resumed.rows}
    assert rows["take_1"]["status"] == "up to date"
    assert rows["take_2"]["status"] == "done"
    assert rows["take_2"]["stages"]["detect"] == "up to date" and rows["take_2"]["stages"]["fit"] == "ran"
    assert body.read_bytes() == before


def test_killed_workers_lose_no_take_and_a_bad_take_fails_alone(pristine, ray_runtime, sequential, tmp_path):
    from mocap_studio.batch import run_batch

    root = tmp_path / "studio"
    shutil.copytree(pristine, root)
    broken = root / "takes" / "take_9"
    shutil.copytree(root / "takes" / "take_1", broken)
    (broken / "videos" / "cam_2.mp4").write_bytes(b"not a video")
    ray_runtime.mkdir()  # arm the fault hook: one detect worker and one take worker (in its fit) kill themselves
    try:
        result = run_batch(root, timeout_s=BATCH_TIMEOUT_S)
    finally:
        killed = sorted(p.name for p in ray_runtime.iterdir())
        shutil.rmtree(ray_runtime)
    assert killed == ["killed-detect", "killed-fit"]
    rows = {r["take"]: r for r in result.rows}
    assert rows["take_9"]["status"] == "failed"
    assert "cam_2.mp4" in rows["take_9"]["error"]
    for name in ("take_1", "take_2"):
        assert rows[name]["status"] == "done", rows[name].get("error")
        assert _outputs(root / "takes" / name) == sequential[name]
    assert json.loads(result.summary_json.read_text())["takes_ok"] == 2


def test_mocap_run_works_without_ray(batched, tmp_path):
    root, _, _ = batched
    take = tmp_path / "take_1"
    shutil.copytree(root / "takes" / "take_1", take)
    code = (
        "import sys; sys.modules['ray'] = None\n"  # `import ray` now raises ImportError, as when it is not installed
        "from mocap_studio.cli import main\n"
        "import mocap_studio.commands.batch, mocap_studio.batch_studio\n"
        f"rc = main(['run', {str(take)!r}, '--stages', 'triangulate', '--overwrite', 'triangulate'])\n"
        "assert 'ray' not in {m.split('.')[0] for m in sys.modules if sys.modules[m] is not None}\n"
        f"rc_batch = main(['batch', {str(root)!r}])\n"
        "print('rc', rc, rc_batch)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rc 0 1" in proc.stdout
    assert "pip install 'mocap-studio[cluster]'" in proc.stderr


# ---- the studio folder (no Ray needed) -------------------------------------------------------------------
def _session(root: Path, calibration: bool = False) -> Path:
    (root / "videos").mkdir(parents=True)
    (root / "session.toml").write_text("[session]\nframe_rate = 30.0\n")
    if calibration:
        (root / "calibration.toml").write_text("# the user's own\n")
    return root


def test_calibration_chosen_by_name_date_default_and_errors(tmp_path):
    for name in ("2026-12-04_0800", "2026-12-04_1300"):
        (tmp_path / "calibrations" / name).mkdir(parents=True)
        (tmp_path / "calibrations" / name / "calibration.toml").write_text(f"# {name}\n")
    _session(tmp_path / "takes" / "2026-12-04_0930_walk")
    _session(tmp_path / "takes" / "2026-12-04_1400_run")
    _session(tmp_path / "takes" / "named")
    _session(tmp_path / "takes" / "undated")
    _session(tmp_path / "takes" / "own", calibration=True)
    (tmp_path / "studio.toml").write_text('[take.named]\ncalibration = "2026-12-04_1300"\n')
    studio = read_studio(tmp_path)
    chosen = {t.name: t.calibration for t in studio.takes}
    assert chosen == {"2026-12-04_0930_walk": "2026-12-04_0800", "2026-12-04_1400_run": "2026-12-04_1300",
                      "named": "2026-12-04_1300", "own": None, "undated": None}
    assert "undated" in studio.problems and "[take.undated] calibration" in studio.problems["undated"]
    # the user's own calibration.toml is never replaced; ours is, when the session's changes
    own = Session(tmp_path / "takes" / "own")
    note = install_calibration(own, Session(tmp_path / "calibrations" / "2026-12-04_0800"), "2026-12-04_0800")
    assert "kept the take's own" in note and own.calibration_path.read_text() == "# the user's own\n"
    walk = Session(tmp_path / "takes" / "2026-12-04_0930_walk")
    morning = Session(tmp_path / "calibrations" / "2026-12-04_0800")
    assert install_calibration(walk, morning, "m") == "calibration from m"
    assert (walk.report_dir / MARKER).exists()
    assert install_calibration(walk, morning, "m") == "calibration from m (unchanged)"
    morning.calibration_path.write_text("# recalibrated\n")
    assert install_calibration(walk, morning, "m") == "calibration from m"
    assert walk.calibration_path.read_text() == "# recalibrated\n"


@pytest.mark.parametrize("text, words", [
    ("[studio]\ntakse = 'x'\n", ["studio.toml [studio]", "'takse'", "did you mean takes"]),
    ("[defaults.sinc]\nmethods = ['none']\n", ["[defaults]", "[sinc]", "did you mean [sync]"]),
    ("[take.nope]\nskip = true\n", ["[take.nope]", "no take 'nope'"]),
    ("[resources.fit]\ncpus = 0\n", ["[resources.fit]", "cpus must be > 0"]),
    ("[resources.fitt]\ncpus = 1\n", ["did you mean fit"]),
])
def test_bad_studio_toml_is_named(tmp_path, text, words):
    _session(tmp_path / "takes" / "a")
    (tmp_path / "studio.toml").write_text(text)
    with pytest.raises(StudioError) as e:
        read_studio(tmp_path)
    for word in words:
        assert word in str(e.value)


def test_studio_defaults_sit_under_the_takes_own_settings(tmp_path):
    take = _session(tmp_path / "takes" / "a")
    with open(take / "session.toml", "a") as f:
        f.write("[export]\nrig = 'mixamo'\n")
    session = StudioSession(take, {"export": {"formats": ["bvh"], "rig": "smpl24"}, "sync": {"methods": ["none"]}})
    raw = session.raw_config()
    assert raw["export"] == {"formats": ["bvh"], "rig": "mixamo"} and raw["sync"] == {"methods": ["none"]}
    with pytest.raises(StudioError, match="no take found"):
        read_studio(tmp_path / "takes" / "a" / "videos")
