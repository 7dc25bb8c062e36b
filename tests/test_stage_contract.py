"""The front end's contract: one stage registry, session.toml checked with suggestions, ``mocap config``, the
command line's common options, clear messages for a folder that is not a take and for damaged inputs."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from mocap_studio.calibration.formats import write_calibration
from mocap_studio.cli import main
from mocap_studio.common.config import ConfigError
from mocap_studio.reconstruction.keypoints import Keypoints2D, load_synchronized_keypoints2d
from mocap_studio.reconstruction.skeletons import BLAZEPOSE_33
from mocap_studio.reconstruction.synthetic import ring_rig, walking_skeleton
from mocap_studio.session import Session, StageReport
from mocap_studio.stages import PIPELINE, STAGES, TABLES, check_session_config


def _take(root, frames: int = 40) -> Session:
    """A calibrated take with keypoints2d.npz of a walking skeleton seen by four cameras."""
    rig = ring_rig(4, seed=1)
    xyz = walking_skeleton(frames)
    session = Session(root)
    root.mkdir(parents=True, exist_ok=True)
    write_calibration(rig, session.calibration_path)
    uv = np.stack([rig[c].project(xyz) for c in rig.names])
    conf = np.full(uv.shape[:-1], 0.9)
    Keypoints2D(uv, conf, tuple(rig.names), BLAZEPOSE_33.name, np.arange(frames) / 30.0).save(session.keypoints2d_path)
    return session


def test_the_registry_runs_every_pipeline_stage_and_names_its_table():
    assert set(PIPELINE) <= set(STAGES)
    for stage in STAGES.values():
        assert stage.table in TABLES
        assert callable(stage.config_class())


def test_an_unknown_table_or_key_names_the_nearest_valid_one(tmp_path, capsys):
    session = _take(tmp_path / "take")
    session.config_path.write_text("[triangulte]\nmin_cameras = 3\n")
    with pytest.raises(ConfigError, match=r"unknown table \[triangulte\] in .*session.toml; did you mean \[triangulate\]\?"):
        Session(session.root).config()
    assert main(["triangulate", str(session.root)]) == 1
    assert "[triangulte]" in capsys.readouterr().err  # the brackets survive the console's markup
    session.config_path.write_text("[triangulate]\nmin_camera = 3\n")
    assert main(["triangulate", str(session.root)]) == 1
    err = capsys.readouterr().err
    assert "[triangulate]" in err and "min_camera" in err and "did you mean min_cameras?" in err
    session.config_path.write_text("[retarget]\npin_fet = false\n")
    with pytest.raises(ConfigError, match="did you mean pin_feet"):
        check_session_config(Session(session.root))
    # a setting an older version had is named with what replaced it, not with the nearest name (shape_candidates)
    session.config_path.write_text("[fit]\nsilhouette_candidates = 8\n")
    with pytest.raises(ConfigError, match=r"\[fit\]: 'silhouette_candidates' is no longer a setting of FitConfig: "
                                          r".*silhouette_starts; remove it") as caught:
        check_session_config(Session(session.root))
    assert "did you mean" not in str(caught.value)


def test_mocap_config_prints_every_table_with_defaults(tmp_path, capsys):
    session = _take(tmp_path / "take")
    session.config_path.write_text('[session]\nframe_rate = 30\n[retarget]\nleg_ik = false\n')
    assert main(["config", str(session.root)]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert set(printed) == set(TABLES)
    assert printed["session"]["name"] == "take" and printed["session"]["frame_rate"] == 30.0
    assert printed["retarget"]["leg_ik"] is False and printed["retarget"]["pin_feet"] is True
    assert printed["triangulate"]["min_cameras"] == 2


def test_version_and_verbosity_after_the_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("mocap-studio ")
    session = _take(tmp_path / "take")
    assert main(["config", str(session.root), "-v"]) == 0
    assert main(["config", str(session.root), "--quiet"]) == 0


def test_a_bad_option_value_is_blamed_on_the_option(tmp_path, capsys):
    session = _take(tmp_path / "take")
    assert main(["triangulate", str(session.root), "--min-cameras", "0"]) == 1
    err = capsys.readouterr().err
    assert "--min-cameras" in err and "session.toml" not in err


def test_a_folder_that_is_not_a_take_says_so(tmp_path, capsys):
    (tmp_path / "holiday").mkdir()
    (tmp_path / "holiday" / "photo.txt").write_text("x")
    for command in ("export", "fit", "triangulate", "report", "sync"):
        assert main([command, str(tmp_path / "holiday")]) == 1
        assert "is not a session folder" in capsys.readouterr().err


def test_triangulate_writes_the_synchronized_keypoints_and_returns_its_report(tmp_path):
    from mocap_studio.stages_keypoints import run_triangulate

    session = _take(tmp_path / "take")
    report = run_triangulate(session)
    assert isinstance(report, StageReport) and not report.skipped
    synced = load_synchronized_keypoints2d(session.keypoints2d_synced_path)
    kp = Keypoints2D.load(session.keypoints2d_path)
    np.testing.assert_array_equal(synced.keypoints.xy, kp.xy)  # one timeline already: nothing resampled
    assert set(synced.camera_times) == set(kp.camera_names)
    again = STAGES["triangulate"].run(session)
    assert again.skipped and again.figures == report.figures


def test_a_truncated_keypoints_file_names_the_file_and_the_stage_to_rerun(tmp_path, capsys):
    session = _take(tmp_path / "take")
    data = session.keypoints2d_path.read_bytes()
    session.keypoints2d_path.write_bytes(data[: len(data) // 2])
    assert main(["triangulate", str(session.root)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "keypoints2d.npz" in err and "damaged or truncated" in err
    assert "mocap detect" in err and "--overwrite" in err
    assert "Traceback" not in err
