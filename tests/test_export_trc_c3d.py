"""TRC and C3D writers of 3D keypoints, read back by our readers and by the independent ``c3d`` package;
real C3D files (Vicon, Qualisys, Optotrak) read by both readers alike."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
from mocap_studio.export.c3d import C3DError, encode_c3d, points_m, read_c3d, write_c3d, write_c3d_keypoints
from mocap_studio.export.trc import WORLD_TO_OPENSIM, read_trc, write_trc, write_trc_keypoints
from mocap_studio.reconstruction.keypoints import Keypoints3D
from mocap_studio.reconstruction.skeletons import get_format

C3D_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mocap_files" / "c3d"


def _keypoints(n_frames: int = 90, cameras: int = 4) -> Keypoints3D:
    rng = np.random.default_rng(3)
    fmt = get_format("coco17")
    xyz = rng.normal(scale=0.5, size=(n_frames, fmt.num_joints, 3)) + [0, 0, 1.0]
    xyz[4, 3] = np.nan
    xyz[10:12, 0] = np.nan
    used = rng.random((n_frames, fmt.num_joints, cameras)) > 0.3
    error = np.where(np.isnan(xyz).any(-1), np.nan, 1.5)
    interp = np.zeros((n_frames, fmt.num_joints), bool)
    interp[20, 5] = True
    times = np.arange(n_frames) / 60.0
    return Keypoints3D(xyz, error, used, tuple(f"cam{i}" for i in range(cameras)), "coco17", times, interp)


# ------------------------------------------------------------------------------------------------ TRC
def test_trc_header_and_round_trip(tmp_path: Path) -> None:
    kp = _keypoints()
    path = write_trc_keypoints(tmp_path / "walk.trc", kp)
    lines = path.read_text().splitlines()
    assert lines[0].split("\t")[:4] == ["PathFileType", "4", "(X/Y/Z)", "walk.trc"]
    assert "Y up" in lines[0] and "OpenSim" in lines[0]
    assert lines[1].split("\t") == [
        "DataRate", "CameraRate", "NumFrames", "NumMarkers", "Units", "OrigDataRate", "OrigDataStartFrame",
        "OrigNumFrames",
    ]
    assert lines[2].split("\t") == ["60", "60", "90", "17", "m", "60", "1", "90"]
    assert lines[3].split("\t")[:3] == ["Frame#", "Time", "nose"]
    assert lines[4].split("\t")[2:5] == ["X1", "Y1", "Z1"]
    back = read_trc(path)
    assert back.marker_names == get_format("coco17").joints
    assert back.units == "m" and back.data_rate == 60.0
    assert np.array_equal(back.frame_numbers, np.arange(1, 91))
    assert np.allclose(back.times_s, np.arange(90) / 60.0, atol=1e-6)
    expect = kp.xyz @ WORLD_TO_OPENSIM.T
    assert np.array_equal(np.isnan(back.positions), np.isnan(expect))
    assert np.nanmax(np.abs(back.positions - expect)) <= 5e-7


def test_trc_opensim_axes_stand_the_subject_up_facing_x() -> None:
    # world: Z up, facing -Y, right hand at -X
    up, forward, right = (
        WORLD_TO_OPENSIM @ [0, 0, 1.0],
        WORLD_TO_OPENSIM @ [0, -1.0, 0],
        WORLD_TO_OPENSIM @ [-1.0, 0, 0],
    )
    assert np.allclose(up, [0, 1, 0]) and np.allclose(forward, [1, 0, 0]) and np.allclose(right, [0, 0, 1])
    assert np.isclose(np.linalg.det(WORLD_TO_OPENSIM), 1.0)


def test_trc_units_and_zup(tmp_path: Path) -> None:
    xyz = np.array([[[0.1, 0.2, 0.3], [1.0, -2.0, 0.5]]])
    back = read_trc(write_trc(tmp_path / "a.trc", xyz, ["a", "b"], 100.0, axes="zup", units="mm"))
    assert back.units == "mm" and np.allclose(back.positions, 1000 * xyz)


def test_trc_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"shape \(T, J, 3\)"):
        write_trc(tmp_path / "x.trc", np.zeros((4, 3)), ["a"], 30.0)
    with pytest.raises(ValueError, match="2 marker names for 3"):
        write_trc(tmp_path / "x.trc", np.zeros((4, 3, 3)), ["a", "b"], 30.0)
    with pytest.raises(ValueError, match="frame_rate"):
        write_trc(tmp_path / "x.trc", np.zeros((4, 1, 3)), ["a"], 0.0)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------ C3D
def test_c3d_round_trip_ours(tmp_path: Path) -> None:
    kp = _keypoints()
    path = write_c3d_keypoints(tmp_path / "walk.c3d", kp, 60.0)
    assert path.stat().st_size % 512 == 0
    d = read_c3d(path)
    assert d.labels == get_format("coco17").joints
    assert d.units == "mm" and d.frame_rate == 60.0 and d.first_frame == 1 and not d.truncated
    assert d.param("POINT", "USED").value == 17
    got = points_m(d)
    assert np.array_equal(np.isnan(got), np.isnan(kp.xyz))
    # float32 millimetres: relative precision 6e-8
    assert np.nanmax(np.abs(got - kp.xyz)) < 1e-7 * max(1.0, np.nanmax(np.abs(kp.xyz)))
    valid = kp.valid
    mask = (kp.cameras_used.astype(int) << np.arange(4)).sum(-1)
    assert np.array_equal(d.camera_mask[valid], mask[valid])
    assert np.all(d.residual[~valid] == -1)
    assert d.residual[20, 5] == 0.0  # interpolated
    assert np.allclose(d.residual[valid & ~kp.interpolated], 0.1, atol=1e-6)


@pytest.mark.filterwarnings("ignore:No analog data")
def test_c3d_read_by_the_c3d_package(tmp_path: Path) -> None:
    c3d = pytest.importorskip("c3d", reason="the independent `c3d` reader (test extra) is not installed")
    kp = _keypoints()
    path = write_c3d_keypoints(tmp_path / "walk.c3d", kp, 60.0)
    with open(path, "rb") as fh:
        reader = c3d.Reader(fh)
        assert reader.point_used == 17 and reader.point_rate == 60.0
        assert (reader.first_frame, reader.last_frame) == (1, 90)
        assert [s.strip() for s in reader.point_labels] == list(get_format("coco17").joints)
        assert reader.get("POINT:UNITS").string_value.strip() == "mm"
        frames = np.array([p for _, p, _ in reader.read_frames()])
    valid = kp.valid
    assert np.all(frames[..., 3][~valid] == -1)
    assert np.abs(frames[..., :3][valid] / 1000.0 - kp.xyz[valid]).max() < 1e-6


def test_c3d_many_frames_use_trial_fields(tmp_path: Path) -> None:
    """More than 65535 frames: the header's 16-bit last frame is not enough, TRIAL:ACTUAL_END_FIELD is."""
    xyz = np.zeros((70000, 1, 3))
    xyz[-1, 0] = [1.0, 2.0, 3.0]
    path = tmp_path / "long.c3d"
    path.write_bytes(encode_c3d(xyz, ["a"], 1000.0))
    d = read_c3d(path)
    assert d.points.shape == (70000, 1, 3) and not d.truncated
    assert np.allclose(points_m(d)[-1, 0], [1.0, 2.0, 3.0])


def test_c3d_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"shape \(T, N, 3\)"):
        write_c3d(tmp_path / "x.c3d", np.zeros((3, 3)), ["a"], 30.0)
    with pytest.raises(ValueError, match="1 labels for 2 points"):
        write_c3d(tmp_path / "x.c3d", np.zeros((3, 2, 3)), ["a"], 30.0)
    with pytest.raises(ValueError, match="camera_mask must have shape"):
        write_c3d(tmp_path / "x.c3d", np.zeros((3, 1, 3)), ["a"], 30.0, camera_mask=np.zeros(3))
    (tmp_path / "junk.c3d").write_bytes(b"\0" * 1024)
    with pytest.raises(C3DError, match="not a C3D file"):
        read_c3d(tmp_path / "junk.c3d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.c3d"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_folder_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(OSError):
            write_c3d(folder / "x.c3d", np.zeros((3, 1, 3)), ["a"], 30.0)
        with pytest.raises(OSError):
            write_trc(folder / "x.trc", np.zeros((3, 1, 3)), ["a"], 30.0)
    finally:
        folder.chmod(stat.S_IRWXU)
    assert not list(folder.iterdir())


@pytest.mark.skipif(
    not C3D_DIR.is_dir(), reason=f"real C3D files not present ({C3D_DIR}); ../shared is absent"
)
@pytest.mark.parametrize("name", ["Vicon", "Qualisys", "Optotrak"])
def test_real_c3d_files_read_like_the_c3d_package(tmp_path: Path, name: str) -> None:
    c3d = pytest.importorskip("c3d", reason="the independent `c3d` reader (test extra) is not installed")
    path = C3D_DIR / f"{name}.c3d"
    d = read_c3d(path)
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Optotrak sample is truncated; c3d warns about it
        reader = c3d.Reader(fh)
        frames = np.array([p for _, p, _ in reader.read_frames()])
        labels = [s.strip() for s in reader.point_labels]
    assert list(d.labels) == labels
    assert d.points.shape == frames[..., :3].shape
    valid = frames[..., 3] >= 0
    assert np.array_equal(np.isfinite(d.points).all(-1), valid)
    assert np.array_equal(d.points[valid], frames[..., :3][valid])
    assert np.allclose(d.residual[valid], frames[..., 3][valid], atol=1e-4)
    assert d.frame_rate == reader.point_rate
    assert d.units == "mm"
    assert d.truncated == (name == "Optotrak")  # the sample file stops after 29 of 1149 frames
    # our reader's data re-written by our writer reads back the same (float32 mm)
    back = read_c3d(write_c3d(tmp_path / "again.c3d", points_m(d), d.labels, d.frame_rate))
    assert back.labels == d.labels and back.frame_rate == d.frame_rate
    assert np.array_equal(np.isnan(back.points), np.isnan(d.points))
    assert np.nanmax(np.abs(back.points - d.points)) <= 1e-6 * np.nanmax(np.abs(d.points))
