"""Motion kinematics and the BVH reader/writer: synthetic truth, real files, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mocap_studio.common.rotations import euler_to_rotmat, rotmat_to_euler
from mocap_studio.export.bvh import BvhError, read_bvh, write_bvh
from mocap_studio.export.motion import Motion
from mocap_studio.export.synthetic import foot_points_m, synthetic_walk

BVH_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mocap_files" / "bvh"
ORDERS = ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"]


@pytest.mark.parametrize("order", ORDERS)
def test_euler_round_trip(order: str) -> None:
    rng = np.random.default_rng(1)
    angles = rng.uniform(-1.5, 1.5, (200, 3))
    rot = euler_to_rotmat(angles, order)
    assert np.allclose(rotmat_to_euler(rot, order), angles, atol=1e-12)
    locked = euler_to_rotmat(np.array([0.4, np.pi / 2, 0.0]), order)
    assert np.allclose(euler_to_rotmat(rotmat_to_euler(locked, order), order), locked, atol=1e-12)


def test_motion_forward_kinematics_by_hand() -> None:
    rot = np.broadcast_to(np.eye(3), (1, 3, 3, 3)).copy()
    rot[0, 1] = euler_to_rotmat(np.array([np.pi / 2]), "Z")  # joint 1 turns its child by 90 deg about Z
    m = Motion(
        ("a", "b", "c"),
        np.array([-1, 0, 1]),
        np.array([[0, 0, 1.0], [1.0, 0, 0], [1.0, 0, 0]]),
        rot,
        np.array([[0.0, 0.0, 2.0]]),
        30.0,
    )
    pos = m.world_positions_m()
    assert np.allclose(pos[0], [[0, 0, 2], [1, 0, 2], [1, 1, 2]])
    assert np.allclose(m.rest_positions_m(), [[0, 0, 1], [1, 0, 1], [2, 0, 1]])


def test_motion_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="local_rotmat"):
        Motion(("a",), np.array([-1]), np.zeros((1, 3)), np.zeros((2, 2, 3, 3)), np.zeros((2, 3)), 30.0)
    with pytest.raises(ValueError, match="root_translation_m"):
        Motion(("a",), np.array([-1]), np.zeros((1, 3)), np.zeros((2, 1, 3, 3)), np.zeros((3, 3)), 30.0)
    with pytest.raises(ValueError, match="parents"):
        Motion(
            ("a", "b"), np.array([1, -1]), np.zeros((2, 3)), np.zeros((1, 2, 3, 3)), np.zeros((1, 3)), 30.0
        )


def test_synthetic_walk_is_on_the_floor() -> None:
    m = synthetic_walk(90)
    feet = foot_points_m(m)
    assert np.allclose(feet[..., 2].min(axis=1), 0.0, atol=1e-12)
    assert m.world_positions_m()[:, m.joint_index("head"), 2].min() > 1.4


@pytest.mark.parametrize("order", ORDERS)
def test_bvh_write_read_matches_motion(tmp_path: Path, order: str) -> None:
    m = synthetic_walk(40, seed=3)
    path = write_bvh(tmp_path / "walk.bvh", m, rotation_order=order)
    back = read_bvh(path)
    assert sorted(back.joint_names) == sorted(m.joint_names)  # written depth-first, so the order may differ
    order_back = [back.joint_index(n) for n in m.joint_names]
    assert back.frame_rate == pytest.approx(60.0, rel=1e-8)
    err_mm = 1000 * np.abs(back.world_positions_m()[:, order_back] - m.world_positions_m()).max()
    assert err_mm < 1e-3
    assert back.bvh_channels[1] == tuple(f"{a}rotation" for a in order)


def test_bvh_units_and_axes(tmp_path: Path) -> None:
    """Y-up centimetres in the file, Z-up metres in memory."""
    m = synthetic_walk(2)
    text = write_bvh(tmp_path / "w.bvh", m).read_text()
    hip = [ln for ln in text.splitlines() if "OFFSET" in ln][1].split()[1:]
    assert np.allclose(np.array(hip, float), [9.0, -7.0, 0.0], atol=1e-9)  # left_hip: +X 9 cm, 7 cm down (Y)
    inches = read_bvh(tmp_path / "w.bvh", unit_m=0.0254)
    assert np.allclose(inches.rest_offsets_m[1], m.rest_offsets_m[1] * 2.54)


def test_bvh_reader_layout_variants(tmp_path: Path) -> None:
    """Braces on the name line, 0 and 2 rotation channels, positions after rotations, tabs and CRLF."""
    text = (
        "HIERARCHY\r\nROOT Hips {\r\n OFFSET 0 90 0\r\n CHANNELS 6 Zrotation Xrotation Yrotation"
        " Xposition Yposition Zposition\r\n JOINT Leg\r\n {\r\n\tOFFSET 0 -40 0\r\n"
        "\tCHANNELS 2 Xrotation Zrotation\r\n"
        "\tJOINT Foot {\r\n\t OFFSET 0 -40 0\r\n\t CHANNELS 0\r\n\t End Site\r\n\t {\r\n\t  OFFSET 0 0 10\r\n"
        "\t }\r\n\t}\r\n }\r\n}\r\nMOTION\r\nFrames: 2\r\nFrame Time: 0.04\r\n"
        "0 0 0 1 90 2 90 0\r\n90 0 0 1 90 2 0 90\r\n"
    )
    (tmp_path / "v.bvh").write_bytes(text.encode())
    m = read_bvh(tmp_path / "v.bvh")
    assert m.joint_names == ("Hips", "Leg", "Foot")
    assert m.frame_rate == pytest.approx(25.0)
    assert m.bvh_channels[1] == ("Xrotation", "Zrotation")
    pos = m.world_positions_m()
    # frame 0: leg rotated 90 deg about file X: the foot swings from below the hip to file -Z (our +Y)
    assert np.allclose(pos[0, 2], pos[0, 1] + [0.0, 0.4, 0.0], atol=1e-12)
    assert np.allclose(pos[0, 0], [0.01, -0.02, 0.9])
    assert np.allclose(m.end_sites_m[2], [0.0, -0.1, 0.0])
    # written with a default layout and read again
    back = read_bvh(write_bvh(tmp_path / "v2.bvh", m))
    assert np.abs(back.world_positions_m() - pos).max() < 1e-9


@pytest.mark.parametrize("bad, match", [
    ("HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 3 Xrotation Yrotation Zrotation\n}\n", "no MOTION"),
    ("HIERARCHY\nROOT a\n{\nOFFSET 0 0\nCHANNELS 3 Xrotation Yrotation Zrotation\n}\nMOTION\nFrames: 1\n"
     "Frame Time: 0.1\n0 0 0\n", "line 5"),
    ("HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 3 Xrotation Yrotation Zrotation\n}\nMOTION\nFrames: 3\n"
     "Frame Time: 0.1\n0 0 0\n1 1 1\n", "truncated"),
    ("HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 1 Wrotation\n}\nMOTION\nFrames: 1\nFrame Time: 0.1\n0\n",
     "unknown channel"),
])
def test_bvh_reader_errors(tmp_path: Path, bad: str, match: str) -> None:
    (tmp_path / "bad.bvh").write_text(bad)
    with pytest.raises(BvhError, match=match):
        read_bvh(tmp_path / "bad.bvh")


def test_bvh_writer_refuses_nan_and_leaves_no_file(tmp_path: Path) -> None:
    m = synthetic_walk(10)
    rot = m.local_rotmat.copy()
    rot[4, 3] = np.nan
    with pytest.raises(ValueError, match=r"frames 4\b"):
        write_bvh(tmp_path / "nan.bvh", m.with_rotations(rot))
    assert list(tmp_path.iterdir()) == []


def test_bvh_writer_unwritable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        write_bvh(blocker / "x.bvh", synthetic_walk(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _real_bvh_files() -> list[Path]:
    return sorted(BVH_DIR.glob("*.bvh")) if BVH_DIR.is_dir() else []


@pytest.mark.skipif(
    not BVH_DIR.is_dir(), reason=f"real BVH files not present ({BVH_DIR}); ../shared is absent"
)
def test_real_files_cover_four_rotation_orders() -> None:
    orders = set()
    for path in _real_bvh_files():
        for chans in read_bvh(path).bvh_channels:
            orders.add("".join(c[0] for c in chans if c.endswith("rotation")))
    assert len(orders - {""}) >= 4


@pytest.mark.skipif(
    not BVH_DIR.is_dir(), reason=f"real BVH files not present ({BVH_DIR}); ../shared is absent"
)
@pytest.mark.parametrize("name", [p.name for p in _real_bvh_files()] or ["none"])
def test_real_bvh_round_trip_exact(tmp_path: Path, name: str) -> None:
    """read -> write -> read returns the same motion, and writing it again gives the same bytes."""
    original = read_bvh(BVH_DIR / name)
    first = write_bvh(tmp_path / "a.bvh", original)
    again = read_bvh(first)
    assert again.joint_names == original.joint_names
    assert again.bvh_channels == original.bvh_channels
    assert np.array_equal(again.parents, original.parents)
    assert np.array_equal(again.rest_offsets_m, original.rest_offsets_m)
    assert np.array_equal(again.root_translation_m, original.root_translation_m)
    assert np.allclose(again.end_sites_m, original.end_sites_m, equal_nan=True, rtol=0, atol=0)
    assert again.frame_rate == pytest.approx(original.frame_rate, rel=1e-9)
    assert np.abs(again.local_rotmat - original.local_rotmat).max() < 1e-12
    assert np.abs(again.world_positions_m() - original.world_positions_m()).max() < 1e-12
    second = write_bvh(tmp_path / "b.bvh", again)
    assert first.read_bytes() == second.read_bytes()
