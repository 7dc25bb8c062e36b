"""Skinned meshes, skinning, and OBJ/PLY files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mocap_studio.export.mesh import SkinnedMesh, capsule_mesh, is_watertight, skin
from mocap_studio.export.synthetic import synthetic_walk
from mocap_studio.reconstruction.body.io import read_ply, write_obj, write_ply


def test_capsule_mesh_is_watertight_and_rest_skinning_is_identity() -> None:
    m = synthetic_walk(5)
    mesh = capsule_mesh(m)
    assert is_watertight(mesh.faces)
    rest = m.with_rotations(
        np.broadcast_to(np.eye(3), m.local_rotmat.shape).copy(),
        np.broadcast_to(m.rest_offsets_m[0], (5, 3)).copy(),
    )
    assert np.abs(skin(mesh, rest) - mesh.vertices_m).max() < 1e-12


def test_rigid_vertices_follow_their_joint() -> None:
    m = synthetic_walk(10)
    mesh = capsule_mesh(m)
    rigid = np.flatnonzero(mesh.joint_weights[:, 0] == 1.0)
    j = mesh.joint_indices[rigid, 0]
    rot, pos = m.world_transforms()
    rest = m.rest_positions_m()
    expect = np.einsum("tvab,vb->tva", rot[:, j], mesh.vertices_m[rigid] - rest[j]) + pos[:, j]
    assert np.abs(skin(mesh, m)[:, rigid] - expect).max() < 1e-12


def test_skinned_mesh_checks_shapes() -> None:
    with pytest.raises(ValueError, match="joint_weights"):
        SkinnedMesh(np.zeros((3, 3)), np.array([[0, 1, 2]]), np.zeros((3, 2)), np.full((3, 2), 0.3))
    with pytest.raises(ValueError, match="faces"):
        SkinnedMesh(np.zeros((3, 3)), np.array([[0, 1, 5]]), np.zeros((3, 1)), np.ones((3, 1)))


def test_obj_and_ply_round_trip(tmp_path: Path) -> None:
    m = synthetic_walk(3)
    mesh = capsule_mesh(m)
    obj = write_obj(tmp_path / "m.obj", mesh.vertices_m, mesh.faces)
    lines = obj.read_text().splitlines()
    v = np.array([ln.split()[1:] for ln in lines if ln.startswith("v ")], float)
    f = np.array([ln.split()[1:] for ln in lines if ln.startswith("f ")], int) - 1
    assert np.abs(v - mesh.vertices_m).max() < 1e-6 and np.array_equal(f, mesh.faces)
    pv, pf = read_ply(write_ply(tmp_path / "m.ply", mesh.vertices_m, mesh.faces))
    assert np.abs(pv - mesh.vertices_m).max() < 1e-6 and np.array_equal(pf, mesh.faces)


def test_mesh_writers_refuse_nan(tmp_path: Path) -> None:
    v = np.zeros((3, 3))
    v[1, 1] = np.nan
    for writer, name in ((write_obj, "a.obj"), (write_ply, "a.ply")):
        with pytest.raises(ValueError, match="NaN"):
            writer(tmp_path / name, v, np.array([[0, 1, 2]]))
    assert not any(tmp_path.iterdir())
