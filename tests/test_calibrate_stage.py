"""`mocap calibrate` end to end on a rendered session: board images from known cameras -> calibration.toml,
scored against the truth; resume, overwrite protection and bad input."""

import json
import shutil

import cv2
import numpy as np
import pytest
from mocap_studio.calibration.boards import load_board
from mocap_studio.calibration.compare import compare_rigs
from mocap_studio.calibration.formats import read_calibration, read_metadata
from mocap_studio.calibration.simulate import BoardRenderer, ring_rig, simulate_calibration
from mocap_studio.cli import main
from mocap_studio.session import Session

BOARD = "charuco_5x7_dict4x4_100"


@pytest.fixture(scope="module")
def rendered_session(tmp_path_factory):
    root = tmp_path_factory.mktemp("take")
    board = load_board(BOARD)
    rig = ring_rig(4, size=(800, 450), focal_px=650, seed=1, radius_m=3.5)
    sim = simulate_calibration(board.object_points, board.size_m, rig=rig, n_views=100, close_ups_per_camera=8, seed=1)
    for cam in rig:
        folder = root / "calibration" / cam.name
        folder.mkdir(parents=True)
        renderer = BoardRenderer(board, cam, seed=3)
        for v, pose in enumerate(sim.board_poses):
            cv2.imwrite(str(folder / f"frame_{v:04d}.png"), renderer.render(pose, seed=v))
    (root / "session.toml").write_text(f'[session]\nboard = "{BOARD}"\n\n[calibrate.bundle]\ndistortion_terms = 4\n')
    return root, sim


def test_calibrate_session_matches_the_truth(rendered_session, capsys):
    root, sim = rendered_session
    assert main(["calibrate", str(root)]) == 0
    session = Session(root)
    rig = read_calibration(session.calibration_path)
    assert rig.names == sim.rig.names
    cmp = compare_rigs(rig, sim.rig)
    assert cmp.centre_error_m.max() < 0.01, cmp.summary()
    assert cmp.rotation_error_deg.max() < 0.3, cmp.summary()
    # floor board at Z = 0, Z up: heights are right
    assert np.abs(rig.centers[:, 2] - sim.rig.centers[:, 2]).max() < 0.05
    report = json.loads(session.stage_report_path("calibrate").read_text())
    assert report["figures"]["reprojection_rms_px"] < 0.5
    for name in sim.rig.names:
        assert report["figures"]["cameras"][name]["board_views"] > 5
    for pic in report["figures"]["pictures"].values():
        assert (session.report_dir / pic).stat().st_size > 5000
    assert read_metadata(session.calibration_path)["board"] == BOARD
    assert "reprojection RMS" in capsys.readouterr().out


def test_second_run_is_skipped_and_changed_settings_rerun(rendered_session, capsys):
    root, _ = rendered_session
    session = Session(root)
    before = session.calibration_path.stat().st_mtime_ns
    assert main(["calibrate", str(root)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert session.calibration_path.stat().st_mtime_ns == before


def test_a_calibration_made_elsewhere_is_not_overwritten(rendered_session, tmp_path, capsys):
    root, _ = rendered_session
    assert main(["calibrate", str(root)]) == 0  # calibrated (or up to date) whatever ran before
    copy = tmp_path / "take"
    shutil.copytree(root, copy)
    (copy / "report" / "calibrate.json").unlink()  # as if calibration.toml came from another tool
    mine = (copy / "calibration.toml").read_text() + "# hand-edited\n"
    (copy / "calibration.toml").write_text(mine)
    assert main(["calibrate", str(copy)]) == 1
    assert "not written by 'mocap calibrate'" in capsys.readouterr().err.replace("\n", " ")
    assert (copy / "calibration.toml").read_text() == mine
    assert main(["calibrate", str(copy), "--force", "--frame-step", "2"]) == 0
    backups = list(copy.glob("calibration.toml.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == mine


def test_explicit_inputs(rendered_session, tmp_path):
    root, sim = rendered_session
    args = ["calibrate", "--board", BOARD, "--out", str(tmp_path / "rig.toml"), "--align", "none"]
    for name in sim.rig.names:
        args += ["--camera", f"{name}={root / 'calibration' / name}"]
    assert main(args) == 0
    rig = read_calibration(tmp_path / "rig.toml")
    assert compare_rigs(rig, sim.rig).centre_error_m.max() < 0.01
    assert (tmp_path / "rig_report" / "report.json").exists()
    assert main(args) == 1  # refuses to overwrite without --force


def test_bad_inputs_get_clear_messages(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["calibrate", str(empty)]) == 1
    err = capsys.readouterr().err
    assert "is not a session folder" in err
    (empty / "calibration").mkdir()
    assert main(["calibrate", str(empty)]) == 1
    assert "no board recordings" in capsys.readouterr().err
    (empty / "calibration").rmdir()
    assert main(["calibrate", "--board", BOARD, "--camera", "a=/nonexistent", "--out", str(tmp_path / "x.toml")]) == 1
    assert "/nonexistent" in capsys.readouterr().err
    (empty / "session.toml").write_text('[calibrate]\nalighn = "floor"\n')
    (empty / "calibration" / "cam_0").mkdir(parents=True)
    cv2.imwrite(str(empty / "calibration" / "cam_0" / "a.png"), np.zeros((10, 10), np.uint8))
    assert main(["calibrate", str(empty)]) == 1
    err = capsys.readouterr().err
    assert "alighn" in err and "did you mean align?" in err


def test_a_camera_that_never_sees_the_board_is_named_and_the_rest_calibrate(rendered_session, tmp_path, capsys):
    root, sim = rendered_session
    take = tmp_path / "take"
    shutil.copytree(root / "calibration", take / "calibration")
    shutil.copy(root / "session.toml", take / "session.toml")
    blank = take / "calibration" / "cam_9"
    blank.mkdir()
    empty = cv2.imencode(".png", np.full((450, 800), 90, np.uint8))[1].tobytes()
    for frame in (root / "calibration" / "cam_0").iterdir():  # simultaneous frames are named alike
        (blank / frame.name).write_bytes(empty)
    assert main(["calibrate", str(take)]) == 0
    report = json.loads((take / "report" / "calibrate.json").read_text())
    assert "cam_9" in report["figures"]["cameras_not_calibrated"]
    assert any("cam_9" in w for w in report["warnings"])
    assert "cam_9" not in read_calibration(take / "calibration.toml")


def test_wrong_board_definition_is_diagnosed_and_nothing_is_written(rendered_session, tmp_path, capsys):
    root, _ = rendered_session
    take = tmp_path / "take"
    shutil.copytree(root / "calibration", take / "calibration")
    # the printed board uses DICT_4X4_100; the session claims a 5x5 dictionary
    (take / "wrong.toml").write_text(
        'name = "wrong"\nkind = "charuco"\nsquares_x = 5\nsquares_y = 7\nsquare_size_m = 0.12\n'
        'marker_size_m = 0.09\ndictionary = "DICT_5X5_100"\ninverted = false\nlegacy_pattern = false\n')
    (take / "session.toml").write_text('[session]\nboard = "wrong.toml"\n[calibrate.detection]\nmax_frames = 12\n')
    assert main(["calibrate", str(take)]) == 1
    err = capsys.readouterr().err.replace("\n", " ")
    assert "DICT_4X4" in err and "cam_0" in err
    assert not (take / "calibration.toml").exists()
    assert not list(take.glob("**/.calibration*"))  # no temporary file left behind


def test_unreadable_video_names_the_file(tmp_path, capsys):
    take = tmp_path / "take"
    (take / "calibration").mkdir(parents=True)
    (take / "calibration" / "cam_0.mp4").write_bytes(b"\x00not a video" * 100)
    (take / "calibration" / "cam_1.mp4").write_bytes(b"\x00not a video" * 100)
    assert main(["calibrate", str(take)]) == 1
    err = capsys.readouterr().err.replace("\n", " ")
    assert "cam_0.mp4" in err
    assert not (take / "calibration.toml").exists()


def test_an_interrupted_calibration_resumes_after_the_finished_cameras(rendered_session, tmp_path, monkeypatch,
                                                                       caplog):
    import mocap_studio.stages_calibration as stage

    root, _ = rendered_session
    take = tmp_path / "take"
    shutil.copytree(root / "calibration", take / "calibration")
    shutil.copy(root / "session.toml", take / "session.toml")
    real = stage.detect_board_in_source
    seen = []

    def interrupted(camera, *args, **kwargs):
        seen.append(camera)
        if camera == "cam_2" and seen.count("cam_2") == 1 and len(seen) == 3:
            raise KeyboardInterrupt
        return real(camera, *args, **kwargs)

    monkeypatch.setattr(stage, "detect_board_in_source", interrupted)
    assert main(["calibrate", str(take)]) == 130  # Ctrl-C during the third camera
    assert not (take / "calibration.toml").exists()
    seen.clear()
    assert main(["calibrate", str(take)]) == 0
    assert seen == ["cam_2", "cam_3"]  # cam_0 and cam_1 came from the cache
    assert (take / "calibration.toml").exists()
