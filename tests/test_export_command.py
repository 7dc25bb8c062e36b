"""``mocap export`` end to end on a small synthetic session: body.npz (a tiny SMPL-format model written as an
official-style model file) and keypoints3d.npz in, BVH/FBX/GLB/USDZ/OBJ/TRC/C3D out, each read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from body_fixtures import write_synthetic_smpl
from mocap_studio.cli import main
from mocap_studio.commands import COMMANDS
from mocap_studio.common.rotations import rotmat_to_rotvec
from mocap_studio.export.amass import motion_from_body, read_amass, write_amass
from mocap_studio.export.bvh import read_bvh
from mocap_studio.export.c3d import points_m, read_c3d
from mocap_studio.export.gltf import read_glb_joint_positions
from mocap_studio.export.motion import Z_UP_TO_Y_UP
from mocap_studio.export.rig import load_rig
from mocap_studio.export.synthetic import synthetic_walk
from mocap_studio.export.trc import WORLD_TO_OPENSIM, read_trc
from mocap_studio.export.usd import read_usd_joint_positions
from mocap_studio.reconstruction.body.smpl_model import load_smpl
from mocap_studio.reconstruction.keypoints import Keypoints3D
from mocap_studio.reconstruction.skeletons import SMPL_24
from mocap_studio.stages_export import exported_file, file_name
from test_export_amass import tiny_smpl_arrays


@pytest.fixture()
def session(tmp_path: Path) -> Path:
    root = tmp_path / "take1"
    root.mkdir()
    arrays = tiny_smpl_arrays()
    arrays["J"] = arrays["J_regressor"] @ arrays["v_template"]
    write_synthetic_smpl(tmp_path / "models" / "smpl" / "SMPL_NEUTRAL.pkl", arrays)
    (root / "session.toml").write_text(f'[session]\nframe_rate = 60.0\n\n[export]\nsmpl_model_dir = "{tmp_path / "models"}"\n')
    # a body motion: the synthetic walk's SMPL-24 rotations, on the tiny model
    walk = synthetic_walk(40, 60.0)
    pose = np.zeros((40, 24, 3))
    model = load_smpl(tmp_path / "models")
    basis = model.model_to_world_rest
    local = walk.local_rotmat.copy()
    local[:, 0] = local[:, 0] @ basis  # the root carries the Y-up model into the Z-up world
    local[:, 1:] = basis.T @ local[:, 1:] @ basis
    pose[:] = rotmat_to_rotvec(local)
    trans = walk.root_translation_m - model.kinematic_tree(np.zeros(10)).rest_positions[0]
    write_amass(root / "body.npz", pose, trans, np.zeros(10), 60.0, "neutral", "smpl")
    # 3D keypoints: the walk's joints
    xyz = walk.world_positions_m().copy()
    xyz[5, 3] = np.nan
    Keypoints3D(xyz, np.ones((40, 24)), np.ones((40, 24, 3), bool), ("c1", "c2", "c3"), "smpl24", np.arange(40) / 60.0).save(
        root / "keypoints3d.npz"
    )
    return root


def test_export_command_writes_every_format(session: Path) -> None:
    assert "export" in COMMANDS
    rc = main(["export", str(session), "--format", "bvh,fbx,glb,usdz,obj,ply,apose_glb,trc,c3d,amass", "--rig", "mixamo"])
    assert rc == 0
    out = session / "export"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([*(f"take1.mixamo.{e}" for e in ("bvh", "fbx", "glb", "usdz")),
                            *(f"take1.apose.{e}" for e in ("obj", "ply", "glb")),
                            *(f"take1.{e}" for e in ("trc", "c3d", "amass.npz"))])
    # the animation is on the Mixamo rig, and every reader sees the same joints
    bvh = read_bvh(out / "take1.mixamo.bvh")
    rig = load_rig("mixamo")
    assert set(bvh.joint_names) == set(rig.joints) and bvh.num_frames == 40
    ref = bvh.world_positions_m()
    glb_names, glb_pos = read_glb_joint_positions(out / "take1.mixamo.glb")
    order = [bvh.joint_index(n) for n in glb_names]
    assert np.abs(glb_pos - ref[:, order] @ Z_UP_TO_Y_UP.T).max() < 1e-4  # glTF is Y up
    usd_names, usd_pos, _ = read_usd_joint_positions(out / "take1.mixamo.usdz")
    order = [bvh.joint_index(n.split("/")[-1]) for n in usd_names]
    assert np.abs(usd_pos - ref[:, order] @ Z_UP_TO_Y_UP.T).max() < 1e-4
    # keypoints: TRC in OpenSim axes, C3D in millimetres
    trc = read_trc(out / "take1.trc")
    kp = Keypoints3D.load(session / "keypoints3d.npz")
    assert trc.marker_names == SMPL_24.joints and trc.data_rate == 60.0
    assert np.nanmax(np.abs(trc.positions - kp.xyz @ WORLD_TO_OPENSIM.T)) < 1e-6
    c3d = read_c3d(out / "take1.c3d")
    assert np.nanmax(np.abs(points_m(c3d) - kp.xyz)) < 1e-6 and np.isnan(c3d.points[5, 3]).all()
    report = json.loads((session / "report" / "export.json").read_text())
    assert report["figures"]["rig"] == "mixamo" and not report["warnings"]
    # the avatar's distance from the body model is measured (the tiny model's diffuse random weights lose much
    # to 4 influences per vertex; test_export_avatar bounds it on Anny)
    assert set(report["figures"]["avatar"]["vertex_error_mm"]) == {"median", "p95", "max"}
    # unchanged inputs: skipped
    mtime = (out / "take1.mixamo.fbx").stat().st_mtime_ns
    assert main(["export", str(session), "--format", "bvh,fbx,glb,usdz,obj,ply,apose_glb,trc,c3d,amass", "--rig", "mixamo"]) == 0
    assert (out / "take1.mixamo.fbx").stat().st_mtime_ns == mtime
    # a second rig writes beside the first, which stays as it was
    assert main(["export", str(session), "--format", "bvh,fbx", "--rig", "ue5_mannequin"]) == 0
    assert (out / "take1.ue5_mannequin.fbx").exists() and (out / "take1.mixamo.fbx").stat().st_mtime_ns == mtime
    assert set(read_bvh(out / "take1.ue5_mannequin.bvh").joint_names) == set(load_rig("ue5_mannequin").joints)


def test_readers_find_exports_under_their_old_names(tmp_path: Path) -> None:
    (tmp_path / "take.fbx").write_bytes(b"old")
    assert exported_file(tmp_path, "take", "fbx", "mixamo") == tmp_path / "take.fbx"
    (tmp_path / "take.mixamo.fbx").write_bytes(b"new")
    assert exported_file(tmp_path, "take", "fbx", "mixamo") == tmp_path / "take.mixamo.fbx"
    assert file_name("take", "bvh", "my rig/v2") == "take.my_rig_v2.bvh"
    assert file_name("take", "ply") == "take.apose.ply" and file_name("take", "amass") == "take.amass.npz"


def test_export_body_skeleton_matches_the_model(session: Path) -> None:
    assert main(["export", str(session), "--format", "bvh", "--rig", "body"]) == 0
    bvh = read_bvh(session / "export" / "take1.body.bvh")
    model = load_smpl(session.parent / "models")
    body = read_amass(session / "body.npz")
    truth = model.evaluate(body.betas, body.pose_rotvec, body.trans).joints
    order = [bvh.joint_index(n) for n in model.joint_names]
    assert np.abs(bvh.world_positions_m()[:, order] - truth).max() < 1e-4
    expect = motion_from_body(model, body.betas, body.pose_rotvec, body.trans, 60.0)
    assert np.allclose(bvh.rest_positions_m()[order], expect.rest_positions_m(), atol=1e-6)


def test_export_without_body_exports_keypoints_and_says_so(session: Path) -> None:
    (session / "body.npz").unlink()
    assert main(["export", str(session), "--format", "bvh,trc"]) == 0
    assert sorted(p.name for p in (session / "export").iterdir()) == ["take1.trc"]
    report = json.loads((session / "report" / "export.json").read_text())
    assert "body.npz is missing" in report["warnings"][0]
    (session / "keypoints3d.npz").unlink()
    assert main(["export", str(session), "--format", "trc", "--overwrite"]) == 1  # nothing to export


def test_export_rejects_unknown_format(session: Path) -> None:
    assert main(["export", str(session), "--format", "xyz"]) == 1
