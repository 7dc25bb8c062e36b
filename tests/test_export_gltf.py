"""glTF/GLB: read back joint by joint, and the Khronos validator reports zero errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest
from export_readers import gltf_validator, validate_gltf
from mocap_studio.export.gltf import read_glb_joint_positions, write_glb, write_mesh_glb
from mocap_studio.export.mesh import capsule_mesh, skin
from mocap_studio.export.motion import Z_UP_TO_Y_UP
from mocap_studio.export.synthetic import synthetic_walk


def test_glb_joint_positions_match_motion(tmp_path: Path) -> None:
    m = synthetic_walk(50)
    path = write_glb(tmp_path / "walk.glb", m, capsule_mesh(m))
    names, pos = read_glb_joint_positions(path)
    assert names == list(m.joint_names)
    err_mm = 1000 * np.abs(pos - m.world_positions_m() @ Z_UP_TO_Y_UP.T).max()
    assert err_mm < 0.01  # float32 storage


def test_glb_inverse_bind_matrices_skin_the_rest_mesh(tmp_path: Path) -> None:
    """Skinning with the file's own matrices at frame 10 gives our skinned mesh."""
    m = synthetic_walk(20)
    mesh = capsule_mesh(m)
    doc = gl.GLTF2().load(str(write_glb(tmp_path / "w.glb", m, mesh)))
    blob = doc.binary_blob()
    acc = doc.accessors[doc.skins[0].inverseBindMatrices]
    view = doc.bufferViews[acc.bufferView]
    ibm = np.frombuffer(blob, "<f4", acc.count * 16, view.byteOffset).reshape(-1, 4, 4).transpose(0, 2, 1)
    rot, pos = m.world_transforms()
    world = np.zeros((m.num_joints, 4, 4))
    world[:, :3, :3] = Z_UP_TO_Y_UP @ rot[10] @ Z_UP_TO_Y_UP.T
    world[:, :3, 3] = pos[10] @ Z_UP_TO_Y_UP.T
    world[:, 3, 3] = 1
    skin_mats = world @ ibm
    v = np.c_[mesh.vertices_m @ Z_UP_TO_Y_UP.T, np.ones(mesh.num_vertices)]
    posed = np.einsum("vk,vkab,vb->va", mesh.joint_weights, skin_mats[mesh.joint_indices], v)[:, :3]
    assert np.abs(posed - skin(mesh, m, np.array([10]))[0] @ Z_UP_TO_Y_UP.T).max() < 1e-5


def test_glb_passes_khronos_validator(tmp_path: Path) -> None:
    modules, why = gltf_validator()
    if modules is None:
        pytest.skip(why)
    m = synthetic_walk(30)
    mesh = capsule_mesh(m)
    files = [
        write_glb(tmp_path / "walk.glb", m, mesh),
        write_glb(tmp_path / "skeleton_only.glb", m),
        write_mesh_glb(tmp_path / "frame.glb", skin(mesh, m, np.array([5]))[0], mesh.faces),
    ]
    for report in validate_gltf(files):
        assert report["numErrors"] == 0, report["messages"]
        assert report["numWarnings"] == 0, report["messages"]


def test_glb_refuses_nan_motion(tmp_path: Path) -> None:
    m = synthetic_walk(8)
    trans = m.root_translation_m.copy()
    trans[2] = np.nan
    with pytest.raises(ValueError, match="frames 2"):
        write_glb(tmp_path / "x.glb", m.with_rotations(m.local_rotmat, trans))
    assert not any(tmp_path.iterdir())
