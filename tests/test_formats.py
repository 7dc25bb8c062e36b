"""Calibration files: round trips that measure projections, the peers' variants, real rigs from
../shared/data, bad input, and writes that never leave a half-written file."""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st
from mocap_studio.calibration.camera import Camera, CameraRig, epipolar_distance, look_at
from mocap_studio.calibration.formats import (
    CalibrationFileError,
    CameraNotFoundError,
    calibration_to_toml,
    detect_format,
    read_calibration,
    read_caliscope,
    read_easymocap,
    read_metadata,
    read_opencv_camera,
    read_opencv_stereo,
    read_qualisys,
    read_toml,
    write_calibration,
    write_easymocap,
)
from mocap_studio.common.rotations import rotation_angle_deg, rotmat_to_rotvec, rotvec_to_rotmat

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STEREO = DATA / "opencv_stereo_chessboard"
CALISCOPE = DATA / "caliscope_charuco_4cam"
MOUSE = DATA / "aniposelib_mouse_12cam"


def needs(folder: Path):
    return pytest.mark.skipif(
        not folder.is_dir(), reason=f"real data {folder} is absent (../shared/data not here)"
    )


def random_rig(names, seed=0, models=("pinhole5", "pinhole8", "pinhole4", "fisheye")) -> CameraRig:
    rng = np.random.default_rng(seed)
    cams = []
    for i, name in enumerate(names):
        angle = 2 * np.pi * i / len(names)
        eye = np.array([4 * np.cos(angle), 4 * np.sin(angle), 1.5 + rng.uniform(-0.3, 0.3)])
        R, t = look_at(eye, rng.uniform(-0.2, 0.2, 3) + [0, 0, 1])
        kind = models[i % len(models)]
        f = rng.uniform(700, 1500)
        K = np.array(
            [
                [f, 0, rng.uniform(600, 680)],
                [0, f * rng.uniform(0.99, 1.01), rng.uniform(330, 390)],
                [0, 0, 1],
            ]
        )
        if kind == "fisheye":
            dist, model = rng.normal(0, 0.02, 4), "fisheye"
        else:
            n = int(kind.removeprefix("pinhole"))
            dist, model = rng.normal(0, 0.05, n), "pinhole"
        cams.append(Camera(name, (1280, 720), K, dist, R, t, model))
    return CameraRig(tuple(cams))


def scene_points(n=500, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).uniform([-1, -1, 0], [1, 1, 2], (n, 3))


def max_projection_difference(rig_a: CameraRig, rig_b: CameraRig) -> float:
    pts = scene_points()
    diffs = [np.nanmax(np.abs(rig_a[n].project(pts) - rig_b[n].project(pts))) for n in rig_a.names]
    return float(max(diffs))


# --------------------------------------------------------------------------------------------------
# Our TOML: round trip, order, names
# --------------------------------------------------------------------------------------------------
def test_toml_round_trip_13_cameras_exact_and_natural_order(tmp_path):
    names = [f"cam_{i}" for i in (10, 2, 1, 13, 3, 11, 4, 12, 5, 6, 7, 8, 9)]
    rig = CameraRig.from_cameras(random_rig(names).cameras)  # natural order
    path = write_calibration(rig, tmp_path / "calibration.toml", metadata={"error": 0.31, "source": "test"})
    back = read_calibration(path)
    assert back.names == tuple(f"cam_{i}" for i in range(1, 14))
    assert max_projection_difference(rig, back) < 1e-9
    for cam in rig:
        other = back[cam.name]
        assert other.model == cam.model and other.size == cam.size
        np.testing.assert_array_equal(other.K, cam.K)
        np.testing.assert_array_equal(other.dist, cam.dist)
        np.testing.assert_array_equal(other.t, cam.t)
        assert np.abs(other.R - cam.R).max() < 1e-14  # (arccos-based angles cannot resolve this)
    meta = read_metadata(path)
    assert meta["error"] == 0.31 and meta["source"] == "test" and meta["adjusted"] is False
    assert meta["written_by"].startswith("mocap-studio") and "world-to-camera" in meta["convention"]
    # table names are zero-padded: a string sort (aniposelib's loader) keeps the file's order
    keys = [k for k in tomllib.loads(path.read_text()) if k != "metadata"]
    assert keys == sorted(keys) and keys[0] == "cam_00" and keys[-1] == "cam_12"


def test_round_trip_keeps_an_unnatural_rig_order_only_by_name(tmp_path):
    rig = random_rig(["b", "a10", "a2"])
    back = read_calibration(write_calibration(rig, tmp_path / "c.toml"))
    assert back.names == ("a2", "a10", "b")
    assert max_projection_difference(rig, back) < 1e-9
    assert read_calibration(tmp_path / "c.toml", cameras=["b", "a2"]).names == ("b", "a2")


# Letters, decimal digits, punctuation, symbols and spaces. (calibration.camera.natural_key fails on
# other "digits" such as '²', which str.isdigit accepts but int() does not.)
camera_names = st.text(st.characters(categories=("L", "Nd", "P", "S", "Zs")), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None)
@given(st.lists(camera_names, min_size=1, max_size=5, unique=True), st.integers(0, 10_000))
def test_names_are_kept_exactly(tmp_path_factory, names, seed):
    rig = random_rig(names, seed)
    path = tmp_path_factory.mktemp("names") / "calibration.toml"
    back = read_toml(write_calibration(rig, path))
    assert sorted(back.names) == sorted(names)
    assert max_projection_difference(rig, back) < 1e-9


# --------------------------------------------------------------------------------------------------
# The peers' TOML variants
# --------------------------------------------------------------------------------------------------
def _aniposelib_text(rig: CameraRig) -> str:
    """As aniposelib's CameraGroup.dump writes it: tables cam_0.. in its camera order, name = str(name),
    toml's trailing commas, then [metadata]."""
    out = []
    for i, cam in enumerate(rig):

        def fmt(values):
            return "[ " + ", ".join(repr(float(v)) for v in values) + ",]"

        out += [
            f"[cam_{i}]",
            f'name = "{cam.name}"',
            f"size = [ {cam.size[0]}, {cam.size[1]},]",
            "matrix = [ " + ", ".join(fmt(row) for row in cam.K) + ",]",
            f"distortions = {fmt(cam.dist)}",
            f"rotation = {fmt(rotmat_to_rotvec(cam.R))}",
            f"translation = {fmt(cam.t)}",
            "",
        ]
    out += ["[metadata]", "adjusted = true", "error = 0.42", ""]
    return "\n".join(out)


def test_reads_aniposelib_file_with_12_cameras_in_natural_order(tmp_path):
    names = [str(n) for n in range(1, 13)]
    rig = random_rig(names, models=("pinhole5",))
    path = tmp_path / "calibration.toml"
    path.write_text(_aniposelib_text(rig))
    back = read_calibration(path)
    # aniposelib's loader sorts table names as strings: cam_0, cam_1, cam_10, cam_11, cam_2, ...
    string_sorted = [
        tomllib.loads(path.read_text())[k]["name"] for k in sorted(f"cam_{i}" for i in range(12))
    ]
    assert string_sorted[:4] == ["1", "2", "11", "12"]
    assert back.names == tuple(names)
    assert max_projection_difference(rig, back) < 1e-9
    assert read_metadata(path) == {"adjusted": True, "error": 0.42}


def test_reads_pose2sim_variant(tmp_path):
    # As Pose2Sim's toml_write writes it: tables named after the camera, float sizes, 4 distortions
    text = (
        "[int_cam01_img]\n"
        'name = "cam01"\n'
        "size = [ 1088.0, 1920.0]\n"
        "matrix = [ [ 1671.5, 0.0, 564.6], [ 0.0, 1671.4, 933.0], [ 0.0, 0.0, 1.0]]\n"
        "distortions = [ -0.0531, 0.151, -0.00012, 0.00065]\n"
        "rotation = [ 1.6787, 1.0319, -0.3910]\n"
        "translation = [ 0.2609, 0.9641, 2.9329]\n"
        "fisheye = false\n\n"
        "[int_cam10_img]\n"
        'name = "cam10"\n'
        "size = [ 1088.0, 1920.0]\n"
        "matrix = [ [ 1675.7, 0.0, 555.8], [ 0.0, 1675.4, 937.7], [ 0.0, 0.0, 1.0]]\n"
        "distortions = [ -0.052, 0.149, 1.67e-05, -0.00065]\n"
        "rotation = [ 1.3578, 1.5796, -1.1822]\n"
        "translation = [ -0.1652, 0.8084, 3.2044]\n"
        "fisheye = false\n\n"
        "[metadata]\nadjusted = false\nerror = 0.0\n"
    )
    path = tmp_path / "Calib_scene.toml"
    path.write_text(text)
    assert detect_format(path) == "toml"
    rig = read_calibration(path)
    assert rig.names == ("cam01", "cam10")
    cam = rig["cam01"]
    assert cam.size == (1088, 1920) and cam.K[0, 0] == 1671.5 and len(cam.dist) == 4
    np.testing.assert_allclose(cam.rotvec, [1.6787, 1.0319, -0.3910], atol=1e-12)


def test_fisheye_flag_round_trips(tmp_path):
    rig = random_rig(["a", "b"], models=("fisheye",))
    text = calibration_to_toml(rig)
    assert "fisheye = true" in text
    (tmp_path / "f.toml").write_text(text)
    back = read_toml(tmp_path / "f.toml")
    assert all(c.model == "fisheye" for c in back)
    assert max_projection_difference(rig, back) < 1e-9


# --------------------------------------------------------------------------------------------------
# caliscope (real data): the convention, checked by reprojection
# --------------------------------------------------------------------------------------------------
def _caliscope_observations():
    folder = CALISCOPE / "calibration" / "extrinsic" / "CHARUCO"
    with open(folder / "xyz_CHARUCO.csv") as fh:
        xyz = {
            (r["sync_index"], r["keypoint_id"]): [float(r[k]) for k in ("x_coord", "y_coord", "z_coord")]
            for r in csv.DictReader(fh)
        }
    cams, points, pixels = [], [], []
    with open(folder / "xy_CHARUCO.csv") as fh:
        for r in csv.DictReader(fh):
            key = (r["sync_index"], r["keypoint_id"])
            if key in xyz:
                cams.append(f"cam_{r['cam_id']}")
                points.append(xyz[key])
                pixels.append([float(r["img_loc_x"]), float(r["img_loc_y"])])
    return np.array(cams), np.array(points), np.array(pixels)


def _reprojection_errors(rig, cams, points, pixels):
    err = np.empty(len(cams))
    for name in rig.names:
        sel = cams == name
        err[sel] = np.linalg.norm(rig[name].project(points[sel]) - pixels[sel], axis=-1)
    return err


@needs(CALISCOPE)
def test_caliscope_extrinsics_are_world_to_camera():
    rig = read_calibration(CALISCOPE / "camera_array.toml")
    assert rig.names == ("cam_0", "cam_1", "cam_2", "cam_3")
    assert rig["cam_0"].size == (1280, 720)
    cams, points, pixels = _caliscope_observations()
    assert len(cams) > 2000
    err = _reprojection_errors(rig, cams, points, pixels)
    # their triangulated board corners reproject onto their detections: median 1.15 px here
    assert np.median(err) < 1.5
    assert np.percentile(err, 90) < 4.0
    # the other reading (camera-to-world) is far off
    inverse = CameraRig(tuple(c.replace(R=c.R.T, t=-c.R.T @ c.t) for c in rig))
    assert np.nanmedian(_reprojection_errors(inverse, cams, points, pixels)) > 100


@needs(CALISCOPE)
def test_caliscope_config_toml_reads_as_the_same_rig():
    a = read_caliscope(CALISCOPE / "camera_array.toml")
    b = read_calibration(CALISCOPE / "config.toml")
    assert a.names == b.names
    assert max_projection_difference(a, b) < 1e-9


# --------------------------------------------------------------------------------------------------
# OpenCV stereo (real data)
# --------------------------------------------------------------------------------------------------
def _stereo_corners():
    pattern = (9, 6)
    left, right = [], []
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-3)
    for lp in sorted(STEREO.glob("left*.jpg")):
        a = cv2.imread(str(lp), cv2.IMREAD_GRAYSCALE)
        b = cv2.imread(str(lp.with_name(lp.name.replace("left", "right"))), cv2.IMREAD_GRAYSCALE)
        ok_a, ca = cv2.findChessboardCorners(a, pattern)
        ok_b, cb = cv2.findChessboardCorners(b, pattern)
        if ok_a and ok_b:
            left.append(cv2.cornerSubPix(a, ca, (11, 11), (-1, -1), criteria))
            right.append(cv2.cornerSubPix(b, cb, (11, 11), (-1, -1), criteria))
    return left, right


@needs(STEREO)
def test_opencv_single_camera_reference_focal():
    rig = read_calibration(STEREO / "left_intrinsics.yml")
    cam = rig.cameras[0]
    assert cam.size == (640, 480)
    assert cam.K[0, 0] == pytest.approx(535.9157, abs=1e-3)
    assert cam.dist[0] == pytest.approx(-0.26637, abs=1e-4)
    assert read_opencv_camera(STEREO / "left_intrinsics.yml", name="left").names == ("left",)


@needs(STEREO)
def test_opencv_stereo_rig_baseline_and_epipolar_error(tmp_path):
    # The shared data has stereo_calib's intrinsics.yml (M1 D1 M2 D2) but no extrinsics.yml: make it
    # the way stereo_calib does (stereoCalibrate, intrinsics fixed, 25 mm squares), then read the pair.
    left, right = _stereo_corners()
    assert len(left) == 13
    fs = cv2.FileStorage(str(STEREO / "intrinsics.yml"), cv2.FILE_STORAGE_READ)
    M1, D1, M2, D2 = (fs.getNode(k).mat() for k in ("M1", "D1", "M2", "D2"))
    board = np.zeros((54, 3), np.float32)
    board[:, :2] = np.mgrid[0:9, 0:6].T.reshape(-1, 2) * 0.025
    _, _, _, _, _, R, T, _, _ = cv2.stereoCalibrate(
        [board] * len(left), left, right, M1, D1, M2, D2, (640, 480), flags=cv2.CALIB_FIX_INTRINSIC
    )
    out = cv2.FileStorage(str(tmp_path / "extrinsics.yml"), cv2.FILE_STORAGE_WRITE)
    out.write("R", R)
    out.write("T", T)
    out.release()
    (tmp_path / "intrinsics.yml").write_bytes((STEREO / "intrinsics.yml").read_bytes())

    rig = read_calibration(tmp_path / "intrinsics.yml", image_size=(640, 480))
    assert rig.names == ("left", "right")
    assert rig["left"].K[0, 0] == pytest.approx(534.803, abs=1e-3)
    np.testing.assert_array_equal(rig["left"].center, 0.0)
    baseline = np.linalg.norm(rig["right"].center)
    assert baseline == pytest.approx(np.linalg.norm(T), rel=1e-12)
    assert 0.07 < baseline < 0.10  # about 8.6 cm, the right camera to the left camera's right (+x)
    assert rig["right"].center[0] > 0.9 * baseline
    uv_l = np.concatenate(left).reshape(-1, 2)
    uv_r = np.concatenate(right).reshape(-1, 2)
    d = epipolar_distance(rig["left"], rig["right"], uv_l, uv_r)
    assert np.median(d) < 1.5  # 1.10 px here (OpenCV's intrinsics held fixed, as in the file)
    # read with explicit paths too
    same = read_opencv_stereo(tmp_path / "intrinsics.yml", tmp_path / "extrinsics.yml", image_size=(640, 480))
    assert max_projection_difference(rig, same) == 0.0


# --------------------------------------------------------------------------------------------------
# aniposelib's 12-camera mouse rig (real data)
# --------------------------------------------------------------------------------------------------
def _dlt_reprojection_median(cams, p2d):
    err = []
    for j in range(p2d.shape[1]):
        rows, obs = [], []
        for cam, uv in zip(cams, p2d[:, j], strict=True):
            if np.isnan(uv[0]):
                continue
            xy = cam.undistort_points(uv)
            P = np.hstack([cam.R, cam.t[:, None]])
            rows += [xy[0] * P[2] - P[0], xy[1] * P[2] - P[1]]
            obs.append((cam, uv))
        X = np.linalg.svd(np.array(rows))[2][-1]
        err += [np.linalg.norm(cam.project(X[:3] / X[3]) - uv) for cam, uv in obs]
    return float(np.nanmedian(err))


@needs(MOUSE)
def test_aniposelib_12_camera_rig_matches_its_tracks_in_natural_order():
    path = MOUSE / "calibration_right_4_10_2026_adjusted.toml"
    rig = read_calibration(path)
    assert rig.names == tuple(str(n) for n in range(10, 22))
    p2d = np.load(MOUSE / "points_right_4_10_2026_sub.npz")["p2d"]
    assert p2d.shape[0] == 12
    seen = np.flatnonzero((~np.isnan(p2d[..., 0])).sum(0) >= 3)
    sample = p2d[:, np.random.default_rng(0).choice(seen, 300, replace=False)]
    natural = _dlt_reprojection_median(rig.cameras, sample)
    doc = tomllib.loads(path.read_text())
    string_order = [rig[doc[k]["name"]] for k in sorted(k for k in doc if k != "metadata")]
    # the tracks follow the file's (natural) order; the string order of the table names does not fit
    assert natural < 40 and _dlt_reprojection_median(string_order, sample) > 3 * natural


# --------------------------------------------------------------------------------------------------
# EasyMocap
# --------------------------------------------------------------------------------------------------
def test_easymocap_round_trip(tmp_path):
    names = ["01", "2", "cam_10", "cam-3"]
    rig = random_rig(names, models=("pinhole5", "pinhole8", "pinhole4"))
    intri, extri = write_easymocap(rig, tmp_path)
    assert intri.read_text().startswith("%YAML:1.0")
    back = read_calibration(intri)
    assert sorted(back.names) == sorted(names)  # "01" stays "01"
    assert max_projection_difference(rig, back) < 1e-9
    assert read_calibration(extri).names == back.names
    assert read_calibration(tmp_path).names == back.names
    # OpenCV itself reads what we wrote
    fs = cv2.FileStorage(str(intri), cv2.FILE_STORAGE_READ)
    np.testing.assert_array_equal(fs.getNode("K_01").mat(), rig["01"].K)


def _write_easymocap_like_easymocap(folder: Path, rig: CameraRig, rotation: str = "R") -> None:
    """As EasyMocap's FileStorage wrapper writes: names list, K_, dist_ (1x5), R_ (3x1) / Rot_, T_ (3x1);
    no image sizes."""
    intri = cv2.FileStorage(str(folder / "intri.yml"), cv2.FILE_STORAGE_WRITE)
    extri = cv2.FileStorage(str(folder / "extri.yml"), cv2.FILE_STORAGE_WRITE)
    for fs in (intri, extri):
        fs.startWriteStruct("names", cv2.FileNode_SEQ)
        for cam in rig:
            fs.write("", cam.name)
        fs.endWriteStruct()
    for cam in rig:
        intri.write(f"K_{cam.name}", cam.K)
        intri.write(f"dist_{cam.name}", cam.dist.reshape(1, -1))
        if rotation == "R":
            extri.write(f"R_{cam.name}", rotmat_to_rotvec(cam.R).reshape(3, 1))
        else:
            extri.write(f"Rot_{cam.name}", cam.R)
        extri.write(f"T_{cam.name}", cam.t.reshape(3, 1))
    intri.release()
    extri.release()


@pytest.mark.parametrize("rotation", ["R", "Rot"])
def test_reads_easymocap_files_without_sizes(tmp_path, rotation):
    rig = random_rig(["1", "2", "10"], models=("pinhole5",))
    _write_easymocap_like_easymocap(tmp_path, rig, rotation)
    with pytest.raises(CalibrationFileError, match=r"intri\.yml: camera '1': no image size.*image_size="):
        read_calibration(tmp_path / "intri.yml")
    back = read_calibration(tmp_path / "intri.yml", image_size=(1280, 720))
    assert back.names == ("1", "2", "10")
    assert max_projection_difference(rig, back) < 1e-9
    per_camera = read_easymocap(
        tmp_path / "intri.yml", image_size={"1": (1280, 720), "2": (640, 480), "10": (1280, 720)}
    )
    assert per_camera["2"].size == (640, 480)


def test_easymocap_writer_rejects_names_opencv_cannot_key(tmp_path):
    with pytest.raises(ValueError, match="cam 1"):
        write_easymocap(random_rig(["cam 1"]), tmp_path)


# --------------------------------------------------------------------------------------------------
# Qualisys .qca.txt
# --------------------------------------------------------------------------------------------------
# Structure from QTM exports as they appear in Pose2Sim's demo (Pose2Sim/Demo_MultiPerson/calibration/
# Calib.qca.txt, BSD-3-Clause) and in the Qualisys RT SDK's test data: <calibration><cameras><camera
# serial model viewrotation video_resolution> holding <fov_video left top right bottom> (inclusive pixel
# bounds), <transform x y z (camera centre, mm) r11..r33> and <intrinsic focalLengthU/V centerPointU/V
# (1/64 px) radialDistortion1..3 tangentalDistortion1..2>. The first camera's numbers are Pose2Sim's
# demo camera "cam01"; the second is a marker-only camera, which has no video and is skipped.
QCA = """<?xml version='1.0' encoding='ASCII'?>
<calibration created="2021-06-01" qtm-version="2021.1" type="regular" wandLength="601.1">
  <results std-dev="0.5" min-max-diff="1.2"/>
  <cameras>
    <camera active="1" avg-residual="0.402000" model="Miqus Video" point-count="2000" serial="cam01"
            viewrotation="0" video_resolution="1080p">
      <fov_marker bottom="1919" left="0" right="1087" top="0"/>
      <fov_video bottom="1919" left="0" right="1087" top="0"/>
      <transform r11="0.5536380477336265" r12="0.8046719867383512" r13="0.2144479094331626"
                 r21="-0.4345300743838753" r22="0.05946489349975602" r23="0.8986921279821063"
                 r31="0.7104002579937896" r32="-0.5907342212870501" r33="0.3825762057979294"
                 x="1460.2323709212087" y="-1909.1590482454608" z="1896.5058524092062"/>
      <intrinsic centerPointU="34110.316406" centerPointV="60680.792969" focalLengthU="107599.671875"
                 focalLengthV="107588.828125" focallength="9.314" radialDistortion1="-0.046183"
                 radialDistortion2="0.139983" radialDistortion3="0.000000" sensorMaxU="69568"
                 sensorMaxV="122816" sensorMinU="0.000000" sensorMinV="0.000000" skew="0.000000"
                 tangentalDistortion1="0.000608" tangentalDistortion2="0.00069"/>
    </camera>
    <camera active="1" avg-residual="0.30" model="Miqus M3" point-count="2500" serial="12039"
            viewrotation="0">
      <fov_video bottom="1023" left="0" right="1295" top="0"/>
      <transform r11="1" r12="0" r13="0" r21="0" r22="1" r23="0" r31="0" r32="0" r33="1"
                 x="0" y="0" z="3000"/>
      <intrinsic centerPointU="41000" centerPointV="33000" focalLengthU="112090.9" focalLengthV="112114.0"
                 radialDistortion1="-0.14" radialDistortion2="0.18" radialDistortion3="0"
                 tangentalDistortion1="0.0017" tangentalDistortion2="-0.0007"/>
    </camera>
  </cameras>
</calibration>
"""
# Pose2Sim's demo also ships Calib_scene.toml, an independent ChArUco + scene calibration of the same
# camera in the same lab frame: what the .qca must agree with (to the few cm / degrees two separate
# calibrations differ by).
DEMO_SCENE_CAM01 = {
    "rotation": [1.678784562972848, 1.031972654261743, -0.3910235872501538],
    "translation": [0.2609476905995074, 0.9641586618892432, 2.932963441842366],
    "fx": 1671.5012042021037,
    "k1": -0.05310342256182765,
    "k2": 0.1510044676505964,
}


def test_qualisys_reader_agrees_with_an_independent_calibration(tmp_path):
    path = tmp_path / "Calib.qca.txt"
    path.write_text(QCA)
    assert detect_format(path) == "qualisys"
    rig = read_calibration(path)
    assert rig.names == ("cam01",)  # the marker-only camera is skipped
    cam = rig["cam01"]
    assert cam.size == (1088, 1920)
    assert cam.K[0, 0] == pytest.approx(107599.671875 / 64) and cam.K[1, 2] == pytest.approx(
        60680.792969 / 64
    )
    np.testing.assert_allclose(cam.center, [1.4602323709212087, -1.9091590482454608, 1.8965058524092062])
    scene = Camera.from_rotvec(
        "scene",
        (1088, 1920),
        np.diag([DEMO_SCENE_CAM01["fx"]] * 2 + [1.0]),
        np.zeros(5),
        DEMO_SCENE_CAM01["rotation"],
        DEMO_SCENE_CAM01["translation"],
    )
    assert np.linalg.norm(cam.center - scene.center) < 0.06
    assert rotation_angle_deg(cam.R, scene.R) < 3.0
    assert cam.K[0, 0] == pytest.approx(DEMO_SCENE_CAM01["fx"], rel=0.01)
    # distortion is not scaled by 1/64 (Pose2Sim's converter does that): it matches the ChArUco k1, k2
    assert cam.dist[0] == pytest.approx(DEMO_SCENE_CAM01["k1"], abs=0.01)
    assert cam.dist[1] == pytest.approx(DEMO_SCENE_CAM01["k2"], abs=0.02)
    both = read_qualisys(path, video_only=False)
    assert set(both.names) == {"cam01", "12039"}


def _qca_for(rig: CameraRig) -> str:
    """A .qca.txt of a known rig, following the conventions the reader documents."""
    cams = []
    for cam in rig:
        M = np.diag([1.0, -1.0, -1.0]) @ cam.R
        r = " ".join(f'r{i + 1}{j + 1}="{float(M[i, j])!r}"' for i in range(3) for j in range(3))
        x, y, z = (float(v) for v in cam.center * 1000)
        k1, k2, p1, p2, k3 = (float(v) for v in cam.dist)
        fu, fv, cu, cv = (float(v) * 64 for v in (cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2]))
        w, h = cam.size
        cams.append(
            f'<camera active="1" model="Miqus Video" serial="{cam.name}" viewrotation="0">'
            f'<fov_video left="0" top="0" right="{w - 1}" bottom="{h - 1}"/>'
            f'<transform x="{x!r}" y="{y!r}" z="{z!r}" {r}/>'
            f'<intrinsic focalLengthU="{fu!r}" focalLengthV="{fv!r}" '
            f'centerPointU="{cu!r}" centerPointV="{cv!r}" skew="0" '
            f'radialDistortion1="{k1!r}" radialDistortion2="{k2!r}" radialDistortion3="{k3!r}" '
            f'tangentalDistortion1="{p1!r}" tangentalDistortion2="{p2!r}"/></camera>'
        )
    return "<calibration><cameras>" + "".join(cams) + "</cameras></calibration>"


def test_qualisys_conventions_reproduce_a_known_rig(tmp_path):
    rig = random_rig(["1", "2", "10"], models=("pinhole5",))
    path = tmp_path / "rig.qca.txt"
    path.write_text(_qca_for(rig))
    back = read_calibration(path)
    assert back.names == ("1", "2", "10")
    assert max_projection_difference(rig, back) < 1e-6


def test_qualisys_rejects_rotated_views(tmp_path):
    path = tmp_path / "rot.qca.txt"
    path.write_text(QCA.replace('viewrotation="0" video_resolution', 'viewrotation="90" video_resolution'))
    with pytest.raises(CalibrationFileError, match=r"rot\.qca\.txt: camera 'cam01': viewrotation=90"):
        read_calibration(path)


# --------------------------------------------------------------------------------------------------
# Bad input: every error names the file, the camera and the fix
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def good_toml(tmp_path) -> Path:
    return write_calibration(random_rig(["cam_1", "cam_2"], models=("pinhole5",)), tmp_path / "calib.toml")


def _edit(path: Path, table: str, field: str, value=None) -> Path:
    """Set (or, with value None, remove) one field of one camera table and rewrite the file."""
    doc = tomllib.loads(path.read_text())
    if value is None:
        del doc[table][field]
    else:
        doc[table][field] = value
    path.write_text(tomli_w.dumps(doc))
    return path


def test_missing_field_names_file_camera_and_field(good_toml):
    _edit(good_toml, "cam_0", "translation")
    with pytest.raises(
        CalibrationFileError, match=r"calib\.toml: camera 'cam_1': .*no 'translation'.*add the"
    ):
        read_calibration(good_toml)


def test_wrong_matrix_shape(good_toml):
    _edit(good_toml, "cam_1", "matrix", [[1.0, 0.0, 2.0], [0.0, 1.0, 2.0]])
    with pytest.raises(
        CalibrationFileError, match=r"calib\.toml: camera 'cam_2': 'matrix' must have shape \(3, 3\)"
    ):
        read_calibration(good_toml)


def test_non_finite_values(good_toml):
    _edit(good_toml, "cam_0", "rotation", [float("nan"), 0.1, 0.2])
    with pytest.raises(CalibrationFileError, match=r"camera 'cam_1': 'rotation' has non-finite values"):
        read_calibration(good_toml)
    _edit(good_toml, "cam_0", "rotation", [0.0, 0.1, 0.2])
    _edit(good_toml, "cam_0", "translation", [0.0, float("inf"), 0.2])
    with pytest.raises(CalibrationFileError, match=r"camera 'cam_1': 'translation' has non-finite values"):
        read_calibration(good_toml)


def test_wrong_size_and_focal(good_toml):
    _edit(good_toml, "cam_0", "size", [640.5, 480])
    with pytest.raises(
        CalibrationFileError, match=r"camera 'cam_1': 'size' must be \[width, height\] in whole"
    ):
        read_calibration(good_toml)
    _edit(good_toml, "cam_0", "size", [640, 480])
    _edit(good_toml, "cam_0", "matrix", [[-500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
    with pytest.raises(CalibrationFileError, match=r"camera 'cam_1': 'matrix' is not a camera matrix"):
        read_calibration(good_toml)


def test_not_a_rotation_matrix(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        "[a]\nsize = [640, 480]\nmatrix = [[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]\n"
        "distortions = []\nrotation = [[1, 0, 0], [0, 2, 0], [0, 0, 1]]\ntranslation = [0, 0, 0]\n"
    )
    with pytest.raises(
        CalibrationFileError, match=r"c\.toml: camera 'a': 'rotation' is a 3x3 matrix but not a rot"
    ):
        read_calibration(path)


def test_unparseable_files(tmp_path):
    bad_toml = tmp_path / "broken.toml"
    bad_toml.write_text("[cam_0\nname = 'x'\n")
    with pytest.raises(CalibrationFileError, match=r"broken\.toml: not valid TOML"):
        read_calibration(bad_toml)
    bad_yml = tmp_path / "intri.yml"
    bad_yml.write_text("%YAML:1.0\nnames: [a, b\n")
    with pytest.raises(CalibrationFileError, match=r"intri\.yml: not a readable OpenCV YAML/XML file"):
        read_calibration(bad_yml)
    bad_xml = tmp_path / "c.qca.txt"
    bad_xml.write_text("<calibration><cameras><camera>")
    with pytest.raises(CalibrationFileError, match=r"c\.qca\.txt: not valid XML"):
        read_calibration(bad_xml)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(CalibrationFileError, match=r"notes\.txt: unknown calibration file type"):
        read_calibration(other)


def test_missing_file_and_absent_camera(tmp_path, good_toml):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.toml: calibration file not found"):
        read_calibration(tmp_path / "nowhere.toml")
    with pytest.raises(CameraNotFoundError, match=r"calib\.toml: camera 'cam_7': .*not in the file.*cam_1"):
        read_calibration(good_toml, cameras=["cam_1", "cam_7"])
    with pytest.raises(ValueError):  # CameraNotFoundError is a ValueError
        read_calibration(good_toml, cameras=["cam_9"])


def test_easymocap_missing_matrix(tmp_path):
    rig = random_rig(["a", "b"], models=("pinhole5",))
    write_easymocap(rig, tmp_path)
    text = (tmp_path / "intri.yml").read_text().replace("K_b:", "Kx_b:")
    (tmp_path / "intri.yml").write_text(text)
    with pytest.raises(CalibrationFileError, match=r"intri\.yml: camera 'b': no 'K_b' entry"):
        read_calibration(tmp_path / "intri.yml")


def test_caliscope_without_extrinsics(tmp_path):
    path = tmp_path / "camera_array.toml"
    path.write_text(
        "[cameras.0]\ncam_id = 0\nsize = [1280, 720]\n"
        "matrix = [[900.0, 0.0, 640.0], [0.0, 900.0, 360.0], [0.0, 0.0, 1.0]]\n"
        "distortions = [0.0, 0.0, 0.0, 0.0, 0.0]\n"
    )
    with pytest.raises(CalibrationFileError, match=r"camera_array\.toml: camera 'cam_0': .*'rotation'"):
        read_calibration(path)


# --------------------------------------------------------------------------------------------------
# Writes are atomic
# --------------------------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = write_calibration(random_rig(["a", "b"]), tmp_path / "calibration.toml")
    before = path.read_bytes()

    def half_then_fail(self, data):
        with open(self, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_calibration(random_rig(["c", "d", "e"], seed=3), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibration.toml"]
    assert read_calibration(path).names == ("a", "b")


def test_unwritable_metadata_fails_before_touching_the_file(tmp_path):
    path = write_calibration(random_rig(["a"]), tmp_path / "calibration.toml")
    before = path.read_bytes()
    with pytest.raises(TypeError, match="metadata"):
        write_calibration(random_rig(["z"]), path, metadata={"bad": object()})
    assert path.read_bytes() == before


def test_easymocap_pair_is_replaced_together(tmp_path, monkeypatch):
    write_easymocap(random_rig(["a", "b"], models=("pinhole5",)), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    calls = []
    original = Path.write_text

    def fail_second(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 2:
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fail_second)
    with pytest.raises(OSError):
        write_easymocap(random_rig(["x"], models=("pinhole5",)), tmp_path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_rotations_written_as_rotvec_read_back_within_machine_precision(tmp_path):
    R = rotvec_to_rotmat(np.array([0.0, np.pi - 1e-9, 0.0]))  # near the rotvec's pi singularity
    cam = Camera(
        "a", (640, 480), np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), np.zeros(5), R, [0, 0, 2]
    )
    back = read_calibration(write_calibration(CameraRig((cam,)), tmp_path / "c.toml"))
    assert rotation_angle_deg(back["a"].R, R) < 1e-6
