"""FBX binary: read back by ufbx (an independent reader), joint by joint, with the skin and settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mocap_studio.export.fbx import FbxAxes, write_fbx
from mocap_studio.export.mesh import capsule_mesh, skin
from mocap_studio.export.motion import Z_UP_TO_Y_UP, Motion
from mocap_studio.export.synthetic import synthetic_walk

pytest.importorskip("ufbx", reason="ufbx (test extra) is not installed")
UFBX_READ = Path(__file__).resolve().parent / "tools" / "ufbx_read.py"


def read_with_ufbx(path: Path, motion: Motion) -> dict[str, np.ndarray]:
    out = path.with_suffix(".ufbx.npz")
    subprocess.run(
        [sys.executable, str(UFBX_READ), str(path), str(out), str(motion.frame_rate), str(motion.num_frames)],
        check=True,
        timeout=300,
    )
    with np.load(out) as data:
        return dict(data)


def positions_by_name(data: dict, motion: Motion) -> np.ndarray:
    names = list(data["names"])
    return data["positions"][:, [names.index(n) for n in motion.joint_names]]


@pytest.fixture(scope="module")
def walk_fbx(tmp_path_factory) -> tuple[Motion, object, dict]:
    m = synthetic_walk(45)
    mesh = capsule_mesh(m)
    path = write_fbx(tmp_path_factory.mktemp("fbx") / "walk.fbx", m, mesh)
    return m, mesh, read_with_ufbx(path, m)


def test_fbx_joints_match_motion_in_ufbx(walk_fbx) -> None:
    m, _, data = walk_fbx
    assert float(data["unit_meters"]) == pytest.approx(0.01)
    assert int(data["up_axis"]) == 2  # ufbx CoordinateAxis.POSITIVE_Y
    assert float(data["frames_per_second"]) == pytest.approx(60.0)
    assert int(data["num_anim_stacks"]) == 1 and int(data["num_bind_poses"]) == 1
    assert sorted(data["names"]) == sorted(m.joint_names)
    err_mm = 10 * np.abs(positions_by_name(data, m) - 100 * m.world_positions_m() @ Z_UP_TO_Y_UP.T).max()
    assert err_mm < 0.01


def test_fbx_mesh_is_skinned_to_the_skeleton(walk_fbx) -> None:
    """Skin frame 20 with ufbx's clusters (geometry_to_bone, weights) and ufbx's evaluated bones."""
    m, mesh, data = walk_fbx
    assert int(data["num_skin_deformers"]) == 1
    assert int(data["mesh_num_triangles"]) == len(mesh.faces)
    verts_cm = data["mesh_vertices"]
    assert np.abs(verts_cm - 100 * mesh.vertices_m @ Z_UP_TO_Y_UP.T).max() < 1e-9
    frame = 20
    names = list(data["names"])
    posed = np.zeros_like(verts_cm)
    for k, bone in enumerate(data["cluster_bones"]):
        j = names.index(bone)
        world = np.eye(4)
        world[:3, :3] = data["rotations"][frame, j]
        world[:3, 3] = data["positions"][frame, j]
        skin_mat = world @ data["cluster_geometry_to_bone"][k]
        w = data["cluster_weights"][:, k]
        posed += w[:, None] * (verts_cm @ skin_mat[:3, :3].T + skin_mat[:3, 3])
    expect = 100 * skin(mesh, m, np.array([frame]))[0] @ Z_UP_TO_Y_UP.T
    assert np.abs(posed - expect).max() < 1e-3  # cm


def test_fbx_z_up_metres(tmp_path: Path) -> None:
    m = synthetic_walk(10)
    data = read_with_ufbx(write_fbx(tmp_path / "z.fbx", m, axes=FbxAxes(up="Z", unit_m=1.0)), m)
    assert float(data["unit_meters"]) == pytest.approx(1.0)
    assert int(data["up_axis"]) == 4  # POSITIVE_Z
    assert np.abs(positions_by_name(data, m) - m.world_positions_m()).max() < 1e-6


def test_fbx_bad_inputs(tmp_path: Path) -> None:
    m = synthetic_walk(6)
    rot = m.local_rotmat.copy()
    rot[5, 0] = np.nan
    with pytest.raises(ValueError, match="frames 5"):
        write_fbx(tmp_path / "nan.fbx", m.with_rotations(rot))
    with pytest.raises(ValueError, match="up must be"):
        write_fbx(tmp_path / "x.fbx", m, axes=FbxAxes(up="X"))
    assert not any(tmp_path.iterdir())
