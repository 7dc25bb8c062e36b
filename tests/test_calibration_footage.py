"""Calibration as real users meet it: checkerboard photos taken one camera at a time (intrinsics only),
views that are not simultaneous, absurd results refused, calibrations imported from other tools, and videos
whose size differs from the calibrated one (encoder padding, a scale).

Truth comes from simulated cameras (calibration.simulate) and from OpenCV's stereo photos
(../shared/data/opencv_stereo_chessboard: 13 pairs, 640x480, 9x6 inner corners, OpenCV's reference
intrinsics); Pose2Sim's multi-person demo calibration (a Qualisys export) is imported when installed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from mocap_studio.calibration.boards import Board
from mocap_studio.calibration.calibrate import CalibrationConfig, calibrate_intrinsics_only, calibrate_rig
from mocap_studio.calibration.camera import Camera, CameraRig, adapt_to_image_size
from mocap_studio.calibration.checks import ImplausibleCalibrationError, PlausibilityConfig, camera_problems
from mocap_studio.calibration.formats import (
    CalibrationFileError,
    calibration_to_toml,
    is_intrinsics_only,
    read_calibration,
    read_metadata,
    read_toml,
    require_extrinsics,
    write_calibration,
)
from mocap_studio.calibration.observations import BoardObservations
from mocap_studio.calibration.recordings import NotSimultaneousError, frame_keys, simultaneity_problem
from mocap_studio.calibration.simulate import close_up_board_poses, simulate_board_recording, simulate_calibration
from mocap_studio.cli import main
from mocap_studio.inputs import read_rig
from mocap_studio.session import Session

ROOT = Path(__file__).resolve().parents[1]
STEREO = ROOT.parent / "shared" / "data" / "opencv_stereo_chessboard"
needs_stereo = pytest.mark.skipif(not STEREO.exists(), reason=f"real data not present at {STEREO} (../shared/data)")
PACKAGES = ROOT / ".venv" / "lib" / "python3.11" / "site-packages"
QUALISYS = PACKAGES / "Pose2Sim" / "Demo_MultiPerson" / "calibration" / "Calib.qca.txt"
needs_qualisys = pytest.mark.skipif(
    not QUALISYS.exists(), reason=f"Pose2Sim's demo calibration not present at {QUALISYS} (make bench-setup installs it)")

# a user's printed board: 4 x 7 inner corners (5 x 8 squares of 40 mm)
CHECKER_4X7 = Board("checker_4x7", "checkerboard", 5, 8, 0.04)


def phone(name: str, f: float, seed: int) -> Camera:
    """A portrait phone camera (1080x1920) with mild distortion."""
    rng = np.random.default_rng(seed)
    K = np.array([[f, 0, 540 + rng.uniform(-20, 20)], [0, f, 960 + rng.uniform(-20, 20)], [0, 0, 1.0]])
    dist = np.array([rng.uniform(-0.1, 0.05), rng.uniform(-0.05, 0.1), 0.0, 0.0, 0.0])
    R = cv2.Rodrigues(rng.uniform(-0.5, 0.5, 3))[0]
    return Camera(name, (1080, 1920), K, dist, R, rng.uniform(-2, 2, 3))


def separate_photos(cameras: list[Camera], per_camera: int = 7, noise_px: float = 0.3) -> BoardObservations:
    """Board views of each camera on its own (different board poses), numbered 0.. in every camera, as
    photo folders are: frame i of two cameras shows two unrelated board poses."""
    cam, view, point, uv = [], [], [], []
    for c, camera in enumerate(cameras):
        single = CameraRig((camera,))
        poses = close_up_board_poses(single, per_camera, CHECKER_4X7.size_m, seed=10 + c, distance_m=(0.45, 0.8))
        obs = simulate_board_recording(single, CHECKER_4X7.object_points, poses, noise_px=noise_px, seed=20 + c)
        cam.append(np.full(len(obs.cam), c))
        view.append(obs.view)
        point.append(obs.point)
        uv.append(obs.uv)
    return BoardObservations(tuple(c.name for c in cameras), tuple(c.size for c in cameras), np.concatenate(cam),
                             np.concatenate(view), np.concatenate(point), np.concatenate(uv), np.arange(per_camera))


@pytest.fixture(scope="module")
def phones():
    cams = [phone(f"cam0{i + 1}", f, seed=i) for i, f in enumerate((1450.0, 1680.0, 1600.0, 1520.0))]
    return cams, separate_photos(cams)


# --------------------------------------------------------------------------------------------------
# Intrinsics only, from each camera's own photos
# --------------------------------------------------------------------------------------------------
def test_intrinsics_only_recovers_each_camera_from_its_own_seven_photos(phones):
    cams, obs = phones
    result = calibrate_intrinsics_only(obs, CHECKER_4X7.object_points)
    assert result.rig.names == tuple(c.name for c in cams)
    for true, est, rep in zip(cams, result.rig, result.intrinsics, strict=True):
        assert abs(est.K[0, 0] / true.K[0, 0] - 1) < 0.01, (true.name, est.K[0, 0], true.K[0, 0])
        assert abs(est.K[1, 1] / true.K[1, 1] - 1) < 0.01
        assert np.abs(est.K[:2, 2] - true.K[:2, 2]).max() < 15, (est.K[:2, 2], true.K[:2, 2])
        assert rep.rms_px < 0.5 and rep.views_used == 7
        np.testing.assert_array_equal(est.R, np.eye(3))
        np.testing.assert_array_equal(est.t, np.zeros(3))


def test_photos_of_different_cameras_are_not_bundle_adjusted_together(phones):
    # what a user met: frame i of every camera taken as one board pose gave focal lengths of 697,354 px
    _, obs = phones
    with pytest.raises(NotSimultaneousError, match=r"not simultaneous.*'cam01' and 'cam02'.*--intrinsics-only"):
        calibrate_rig(obs, CHECKER_4X7.object_points, CalibrationConfig(align="none"))


def test_synchronized_views_pass_the_simultaneity_check():
    sim = simulate_calibration(CHECKER_4X7.object_points, CHECKER_4X7.size_m, n_cameras=4, n_views=60, seed=3)
    result = calibrate_rig(sim.observations, CHECKER_4X7.object_points, CalibrationConfig(align="none"))
    assert len(result.rig) == 4


def test_intrinsics_only_file_round_trips_and_is_refused_for_3d(tmp_path, phones):
    _, obs = phones
    rig = calibrate_intrinsics_only(obs, CHECKER_4X7.object_points).rig
    path = write_calibration(rig, tmp_path / "intrinsics.toml", metadata={"intrinsics_only": True})
    back = read_toml(path)
    assert back.names == rig.names
    for a, b in zip(rig, back, strict=True):
        np.testing.assert_allclose(b.K, a.K, rtol=1e-12)
        np.testing.assert_allclose(b.dist, a.dist, rtol=1e-12)
        np.testing.assert_array_equal(b.R, np.eye(3))
        np.testing.assert_array_equal(b.t, np.zeros(3))
        assert b.size == a.size
    assert is_intrinsics_only(path) and read_metadata(path)["intrinsics_only"] is True
    with pytest.raises(CalibrationFileError, match=r"intrinsics\.toml.*intrinsics only.*--intrinsics"):
        require_extrinsics(path)
    # the same text again: writing what was read changes nothing but the time stamp
    again = calibration_to_toml(back, read_metadata(path))
    assert read_toml(write_calibration(read_toml(path), tmp_path / "again.toml", read_metadata(path))).names == rig.names
    assert "intrinsics_only = true" in again
    full = write_calibration(rig, tmp_path / "full.toml")
    assert not is_intrinsics_only(full)
    require_extrinsics(full)


# --------------------------------------------------------------------------------------------------
# Plausibility: absurd results are refused, real lenses are not
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("what", "size", "focal_diagonals"), [
    ("equidistant fisheye, 180 degrees over the diagonal", (1920, 1080), 1 / np.pi),
    ("phone ultra-wide, 120 degrees diagonal", (4032, 3024), 0.5 / np.tan(np.radians(60))),
    ("webcam, 78 degrees diagonal", (1280, 720), 0.5 / np.tan(np.radians(39))),
    ("phone 10x telephoto (240 mm equivalent)", (4032, 3024), 240 / 43.27),
    ("600 mm lens on full frame", (6000, 4000), 600 / 43.27),
])
def test_real_lenses_are_plausible(what, size, focal_diagonals):
    f = focal_diagonals * np.hypot(*size)
    cam = Camera("c", size, np.array([[f, 0, size[0] / 2], [0, f, size[1] / 2], [0, 0, 1]]))
    assert camera_problems(cam, rms_px=0.8) == [], what


@pytest.mark.parametrize("focal", [3.0, 250.0, 67_553.0, 697_354.0])
def test_absurd_focal_lengths_and_rms_are_refused(focal):
    cam = Camera("cam02", (1920, 1080), np.array([[focal, 0, 960], [0, focal, 540], [0, 0, 1]]))
    problems = camera_problems(cam)
    assert problems and "focal length" in problems[0]
    ok = Camera("cam01", (1920, 1080), np.array([[1500.0, 0, 960], [0, 1500, 540], [0, 0, 1]]))
    assert camera_problems(ok, rms_px=85.0)[0].startswith("its board corners reproject with an RMS of 85.00 px")


def test_calibrate_rig_refuses_an_implausible_result_naming_the_camera():
    sim = simulate_calibration(CHECKER_4X7.object_points, CHECKER_4X7.size_m, n_cameras=3, n_views=40, seed=5)
    strict = CalibrationConfig(align="none", plausibility=PlausibilityConfig(max_rms_px=0.05))  # noise is 0.2 px
    with pytest.raises(ImplausibleCalibrationError, match=r"(?s)camera 'cam_0'.*RMS.*No calibration file was written"):
        calibrate_rig(sim.observations, CHECKER_4X7.object_points, strict)


def test_intrinsics_only_refuses_an_implausible_camera(phones):
    _, obs = phones
    narrow = CalibrationConfig(plausibility=PlausibilityConfig(max_focal_diagonals=0.7))  # cam02: f = 0.76 d
    with pytest.raises(ImplausibleCalibrationError, match=r"camera 'cam02': focal length fx"):
        calibrate_intrinsics_only(obs, CHECKER_4X7.object_points, narrow)


# --------------------------------------------------------------------------------------------------
# Which recordings are simultaneous
# --------------------------------------------------------------------------------------------------
def _folder(root: Path, name: str, files: list[str]) -> Path:
    folder = root / name
    folder.mkdir()
    for f in files:
        (folder / f).write_bytes(b"")
    return folder


def test_image_folders_are_simultaneous_only_when_their_names_correspond(tmp_path):
    a = _folder(tmp_path, "a", [f"{i:04d}.png" for i in range(1, 6)])
    b = _folder(tmp_path, "b", [f"{i:04d}.png" for i in range(1, 6)])
    left = _folder(tmp_path, "left", [f"left{i:02d}.jpg" for i in (1, 2, 3, 11, 12)])
    right = _folder(tmp_path, "right", [f"right{i:02d}.jpg" for i in (1, 2, 3, 11, 12)])
    cam1 = _folder(tmp_path, "cam1", [f"frame{i:04d}_cam1.png" for i in range(5)])
    cam2 = _folder(tmp_path, "cam2", [f"frame{i:04d}_cam2.png" for i in range(5)])
    phone1 = _folder(tmp_path, "phone1", [f"IMG_{i:04d}.jpg" for i in range(1, 8)])
    phone2 = _folder(tmp_path, "phone2", [f"IMG_{i:04d}.jpg" for i in range(123, 130)])
    fewer = _folder(tmp_path, "fewer", [f"{i:04d}.png" for i in (1, 2, 4, 5)])
    assert frame_keys(sorted(left.iterdir())) == [1, 2, 3, 11, 12]
    assert simultaneity_problem({"a": a, "b": b}) is None
    assert simultaneity_problem({"left": left, "right": right}) is None
    assert simultaneity_problem({"cam1": cam1, "cam2": cam2}) is None
    problem = simultaneity_problem({"cam01": phone1, "cam02": phone2})
    assert problem and str(phone1) in problem and str(phone2) in problem and "--intrinsics-only" in problem
    assert "IMG_0123.jpg" in problem
    assert simultaneity_problem({"a": a, "fewer": fewer}) is not None  # frame 3 missing: indices would slip
    video = tmp_path / "cam3.mp4"
    video.write_bytes(b"")
    assert "cannot be matched in time" in simultaneity_problem({"a": a, "cam3": video})
    assert simultaneity_problem({"cam3": video, "cam4": video}) is None  # videos: checked on the board poses


# --------------------------------------------------------------------------------------------------
# Real photos: OpenCV's stereo chessboard, left/ and right/ as two cameras' separate photo folders
# --------------------------------------------------------------------------------------------------
def _reference_intrinsics() -> dict[str, list[np.ndarray]]:
    """Camera -> OpenCV's reference K matrices: the stereo calibration's (both) and the single-camera one (left)."""
    fs = cv2.FileStorage(str(STEREO / "intrinsics.yml"), cv2.FILE_STORAGE_READ)
    single = cv2.FileStorage(str(STEREO / "left_intrinsics.yml"), cv2.FILE_STORAGE_READ)
    return {"left": [fs.getNode("M1").mat(), single.getNode("camera_matrix").mat()], "right": [fs.getNode("M2").mat()]}


def _photo_folders(root: Path, rename_right: bool = False) -> dict[str, Path]:
    out = {}
    for side in ("left", "right"):
        folder = root / side
        folder.mkdir(parents=True)
        for i, path in enumerate(sorted(STEREO.glob(f"{side}*.jpg"))):
            name = f"IMG_{500 + 3 * i}.jpg" if (rename_right and side == "right") else path.name
            shutil.copy(path, folder / name)
        out[side] = folder
    return out


@needs_stereo
def test_stereo_photos_intrinsics_only_match_opencvs_reference(tmp_path, capsys):
    folders = _photo_folders(tmp_path, rename_right=True)
    out = tmp_path / "intrinsics.toml"
    args = ["calibrate", "--intrinsics-only", "--board", "checkerboard_9x6", "--out", str(out)]
    assert main(args + [f"--camera={k}={v}" for k, v in folders.items()]) == 0
    assert "intrinsics only" in capsys.readouterr().out
    rig = read_calibration(out)
    assert is_intrinsics_only(out)
    for name, refs in _reference_intrinsics().items():
        cam = rig[name]
        for ref in refs:  # focal lengths: 534.8 px in the stereo reference (both cameras), 535.9 px (left alone)
            f = ref[0, 0]
            assert abs(cam.K[0, 0] / f - 1) < 0.01 and abs(cam.K[1, 1] / f - 1) < 0.01, (name, cam.K, ref)
            assert np.abs(cam.K[:2, 2] - ref[:2, 2]).max() < 10, (name, cam.K, ref)
    report = json.loads((tmp_path / "intrinsics_report" / "report.json").read_text())
    for name in ("left", "right"):
        figures = report["figures"]["cameras"][name]
        assert figures["board_views"] == 13, figures  # SB alone finds 11 in each
        assert figures["found_by"]["classic"] == 2 and figures["intrinsics"]["rms_px"] < 0.3


@needs_stereo
def test_stereo_photos_with_unrelated_names_are_refused_for_a_full_calibration(tmp_path, capsys):
    folders = _photo_folders(tmp_path, rename_right=True)
    out = tmp_path / "rig.toml"
    args = ["calibrate", "--board", "checkerboard_9x6", "--out", str(out)]
    assert main(args + [f"--camera={k}={v}" for k, v in folders.items()]) == 1
    err = capsys.readouterr().err.replace("\n", " ")
    assert "names that do not correspond" in err and "--intrinsics-only" in err and str(folders["right"]) in err
    assert not out.exists()


@needs_stereo
def test_session_intrinsics_only_then_later_stages_refuse_until_poses_are_added(tmp_path, capsys):
    root = tmp_path / "take"
    _photo_folders(root / "calibration")
    (root / "session.toml").write_text('[session]\nboard = "checkerboard_9x6"\n')
    assert main(["calibrate", str(root), "--intrinsics-only"]) == 0
    session = Session(root)
    assert is_intrinsics_only(session.calibration_path)
    report = json.loads(session.stage_report_path("calibrate").read_text())
    assert report["figures"]["intrinsics_only"] and report["figures"]["cameras"]["left"]["board_views"] == 13
    with pytest.raises(CalibrationFileError, match=r"intrinsics only.*mocap calibrate .*--intrinsics"):
        read_rig(session)
    assert read_rig(session, require_extrinsics=False).names == ("left", "right")
    # the same pairs are simultaneous (left01 with right01): the poses come from them, starting from these intrinsics
    capsys.readouterr()
    assert main(["calibrate", str(root), "--intrinsics", str(session.calibration_path), "--align", "camera"]) == 0
    assert not is_intrinsics_only(session.calibration_path)
    rig = read_rig(session)
    baseline = np.linalg.norm(rig["right"].center - rig["left"].center)
    assert 0.05 < baseline < 0.15, baseline  # 3.3 squares of the 25 mm preset (the real square size is not published)


@needs_stereo
def test_refine_refuses_an_intrinsics_only_calibration(tmp_path, capsys):
    folders = _photo_folders(tmp_path)
    out = tmp_path / "intrinsics.toml"
    assert main(["calibrate", "--intrinsics-only", "--board", "checkerboard_9x6", "--out", str(out)]
                + [f"--camera={k}={v}" for k, v in folders.items()]) == 0
    points = tmp_path / "p2d.npz"
    np.savez(points, p2d=np.zeros((2, 60, 2)))
    assert main(["calibrate", "--refine", str(points), "--intrinsics", str(out), "--out", str(tmp_path / "r.toml")]) == 1
    assert "intrinsics only" in capsys.readouterr().err.replace("\n", " ")


# --------------------------------------------------------------------------------------------------
# Import of a calibration made elsewhere
# --------------------------------------------------------------------------------------------------
@needs_qualisys
def test_import_qualisys_into_a_session_and_the_overwrite_rules(tmp_path, capsys):
    root = tmp_path / "take"
    root.mkdir()
    (root / "session.toml").write_text("[session]\n")
    assert main(["calibrate", str(root), "--import", str(QUALISYS)]) == 0
    assert "qualisys" in capsys.readouterr().out
    session = Session(root)
    ours, theirs = read_calibration(session.calibration_path), read_calibration(QUALISYS)
    assert ours.names == theirs.names == ("cam01", "cam02", "cam03", "cam04")
    for a, b in zip(ours, theirs, strict=True):
        assert a.size == b.size == (1088, 1920)  # portrait
        np.testing.assert_allclose(a.K, b.K, rtol=1e-12)
        np.testing.assert_allclose(a.center, b.center, atol=1e-9)
    meta = read_metadata(session.calibration_path)
    assert meta["imported_format"] == "qualisys" and meta["imported_from"] == str(QUALISYS.resolve())
    before = session.calibration_path.read_text()
    # an imported file counts as made elsewhere: neither a second import nor mocap calibrate replaces it
    for extra in ([], ["--overwrite"]):
        assert main(["calibrate", str(root), "--import", str(QUALISYS)] + extra) == 1
        assert "--force" in capsys.readouterr().err
    assert session.calibration_path.read_text() == before
    assert main(["calibrate", str(root), "--import", str(QUALISYS), "--force"]) == 0
    backups = list(root.glob("calibration.toml.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == before
    # explicit mode
    out = tmp_path / "rig.toml"
    assert main(["calibrate", "--import", str(QUALISYS), "--out", str(out)]) == 0
    assert read_calibration(out).names == theirs.names
    assert main(["calibrate", "--import", str(QUALISYS), "--out", str(out)]) == 1


def test_import_refuses_an_absurd_calibration_and_keeps_the_intrinsics_only_flag(tmp_path, capsys):
    absurd = CameraRig((Camera("cam01", (1920, 1080), np.array([[697_354.0, 0, 960], [0, 697_354.0, 540], [0, 0, 1]])),))
    src = write_calibration(absurd, tmp_path / "absurd.toml")
    out = tmp_path / "out.toml"
    assert main(["calibrate", "--import", str(src), "--out", str(out)]) == 1
    err = capsys.readouterr().err.replace("\n", " ")
    assert "cam01" in err and "697,354" in err and not out.exists()
    ok = CameraRig((Camera("cam01", (1920, 1080), np.array([[1500.0, 0, 960], [0, 1500.0, 540], [0, 0, 1]])),))
    src = write_calibration(ok, tmp_path / "intrinsics.toml", metadata={"intrinsics_only": True})
    assert main(["calibrate", "--import", str(src), "--out", str(out)]) == 0
    assert is_intrinsics_only(out)


def test_an_existing_calibration_written_by_calibrate_needs_overwrite_to_import_over(tmp_path, capsys):
    root = tmp_path / "take"
    root.mkdir()
    (root / "session.toml").write_text("[session]\n")
    session = Session(root)
    cam = Camera("cam01", (1920, 1080), np.array([[1500.0, 0, 960], [0, 1500.0, 540], [0, 0, 1]]))
    src = write_calibration(CameraRig((cam,)), tmp_path / "elsewhere.toml")
    write_calibration(CameraRig((cam.replace(name="old"),)), session.calibration_path)
    session.stage_report_path("calibrate").parent.mkdir(parents=True, exist_ok=True)
    session.stage_report_path("calibrate").write_text(json.dumps({"stage": "calibrate", "outputs": [
        str(session.calibration_path)], "inputs_fingerprint": "x"}))
    assert main(["calibrate", str(root), "--import", str(src)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["calibrate", str(root), "--import", str(src), "--overwrite"]) == 0
    assert read_calibration(session.calibration_path).names == ("cam01",)
    assert not session.stage_report_path("calibrate").exists()  # it described the replaced calibration
    assert not list(root.glob("*.bak"))


# --------------------------------------------------------------------------------------------------
# Video size against calibrated size
# --------------------------------------------------------------------------------------------------
def _camera(size=(1088, 1920)) -> Camera:
    return Camera("cam01", size, np.array([[1681.2, 0, 533.0], [0, 1681.1, 948.1], [0, 0, 1]]),
                  np.array([-0.046, 0.14, 0.001, 0.001, 0.0]))


def test_encoder_padding_keeps_k():
    cam = _camera()
    adapted, message = adapt_to_image_size(cam, (1080, 1920), "videos/cam01.mp4")
    assert adapted.size == (1080, 1920)
    np.testing.assert_array_equal(adapted.K, cam.K)
    assert "cam01" in message and "1088x1920" in message and "1080x1920" in message
    assert "8 px fewer columns" in message and "padding" in message and "K kept" in message
    back, message = adapt_to_image_size(adapted, (1088, 1920))
    np.testing.assert_array_equal(back.K, cam.K)
    assert "8 px more columns" in message
    both, message = adapt_to_image_size(_camera((1920, 1080)), (1920, 1088))
    assert both.size == (1920, 1088) and "8 px more rows" in message
    same, message = adapt_to_image_size(cam, (1088, 1920))
    assert same is cam and message == ""


def test_a_uniform_scale_scales_k_and_projects_the_same_points():
    cam = _camera((1080, 1920))
    half, message = adapt_to_image_size(cam, (540, 960))
    assert "scaled by 0.5" in message
    points = np.random.default_rng(0).uniform([-1, -2, 4], [1, 2, 6], (50, 3))
    # pixel centres at integers: a pixel's edge at -0.5 stays at -0.5 when the image is resized
    np.testing.assert_allclose(half.project(points), (cam.project(points) + 0.5) * 0.5 - 0.5, atol=1e-9)
    # the padded calibration of a video downscaled by half: scale, then 4 px of padding
    padded, message = adapt_to_image_size(_camera((1088, 1920)), (540, 960))
    assert padded.K[0, 0] == pytest.approx(1681.2 / 2) and "scaled by 0.5" in message and "4 px fewer columns" in message
    # 1080x1920 video resized to 720x1280 against the padded calibration: 2/3, with the 8 px of padding
    assert adapt_to_image_size(_camera((1088, 1920)), (720, 1280))[0].K[0, 0] == pytest.approx(1681.2 * 2 / 3)
    # a tiny stand-in video (as some tests use) is neither padding nor a scale of 1280x720
    with pytest.raises(ValueError, match="32x32"):
        adapt_to_image_size(_camera((1280, 720)), (32, 32))


@pytest.mark.parametrize(("size", "why"), [((1920, 1088), "portrait against landscape"), ((1280, 1920), "1280x1920"),
                                           ((1080, 1440), "1080x1440")])
def test_other_sizes_are_refused_naming_camera_sizes_and_remedy(size, why):
    with pytest.raises(ValueError, match=r"camera 'cam01': calibrated for 1088x1920 images but videos/cam01\.mp4") as e:
        adapt_to_image_size(_camera(), size, "videos/cam01.mp4")
    assert why in str(e.value) and "Calibrate this camera again" in str(e.value)


def _video(path: Path, size: tuple[int, int], frames: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 40 * i, np.uint8))
    writer.release()
    return path


def test_read_rig_fits_each_camera_to_its_video(tmp_path):
    root = tmp_path / "take"
    root.mkdir()
    (root / "session.toml").write_text("[session]\n")
    session = Session(root)
    K = np.array([[300.0, 0, 68], [0, 300, 120], [0, 0, 1]])
    rig = CameraRig((Camera("cam01", (136, 240), K, t=[0, 0, 1.0]), Camera("cam02", (136, 240), K, t=[1, 0, 1.0]),
                     Camera("cam03", (136, 240), K, t=[2, 0, 1.0])))
    write_calibration(rig, session.calibration_path)
    _video(session.videos_dir / "cam01.mp4", (128, 240))  # 8 px of encoder padding
    _video(session.videos_dir / "cam02.mp4", (68, 120))  # half size
    warnings: list[str] = []
    assert read_rig(session)["cam01"].size == (136, 240)  # as calibrated unless asked
    fitted = read_rig(session, fit_to_recordings=True, warnings=warnings)
    assert fitted["cam01"].size == (128, 240) and np.array_equal(fitted["cam01"].K, K)
    assert fitted["cam02"].size == (68, 120) and fitted["cam02"].K[0, 0] == pytest.approx(150)
    assert fitted["cam03"].size == (136, 240)  # no recording: as calibrated
    assert len(warnings) == 2 and "cam01" in warnings[0] and "cam02" in warnings[1]
    _video(session.videos_dir / "cam03.mp4", (96, 240))
    with pytest.raises(ValueError, match=r"calibration\.toml: camera 'cam03': calibrated for 136x240 images but its "
                                         r"recording .*cam03\.mp4 is 96x240"):
        read_rig(session, fit_to_recordings=True)


def test_known_intrinsics_are_fitted_to_the_board_recordings_size():
    sim = simulate_calibration(CHECKER_4X7.object_points, CHECKER_4X7.size_m, n_cameras=3, n_views=40, seed=5)
    padded = {c.name: c.replace(size=(c.size[0], c.size[1] + 8)) for c in sim.rig}  # calibrated at 1280x728
    result = calibrate_rig(sim.observations, CHECKER_4X7.object_points, CalibrationConfig(align="none"), padded)
    assert all(c.size == (1280, 720) for c in result.rig)
    assert sum("8 px fewer rows" in w and "padding" in w for w in result.warnings) == 3
    other = {"cam_1": sim.rig["cam_1"].replace(size=(1280, 960))}  # 1920x1080 would be a scale of it
    with pytest.raises(ValueError, match=r"camera 'cam_1': calibrated for 1280x960 images but its board recording is "
                                         r"1280x720"):
        calibrate_rig(sim.observations, CHECKER_4X7.object_points, CalibrationConfig(align="none"), other)


@needs_stereo
def test_too_few_photos_name_the_camera_and_what_detection_kept(tmp_path, capsys):
    folders = _photo_folders(tmp_path)
    for extra in sorted(folders["right"].iterdir())[2:]:
        extra.unlink()
    out = tmp_path / "intrinsics.toml"
    assert main(["calibrate", "--intrinsics-only", "--board", "checkerboard_9x6", "--out", str(out)]
                + [f"--camera={k}={v}" for k, v in folders.items()]) == 1
    err = capsys.readouterr().err.replace("\n", " ")
    assert "camera 'right'" in err and "2 views" in err and "kept in 2 of 2 frames" in err and not out.exists()
