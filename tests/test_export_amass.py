"""AMASS-style npz round trip, and a Motion + skinned mesh from a body model that move exactly as the model's
own forward pass (a tiny SMPL-format model built from arrays, so no model file is needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mocap_studio.export.amass import (
    AmassError,
    motion_from_body,
    read_amass,
    skinned_mesh_from_body,
    write_amass,
)
from mocap_studio.export.bvh import read_bvh, write_bvh
from mocap_studio.export.mesh import skin
from mocap_studio.export.retarget import retarget
from mocap_studio.export.rig import feet_above_floor_m, load_rig, rig_from_motion
from mocap_studio.reconstruction.body.smpl_model import SmplBody

SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)


def tiny_smpl_arrays(seed: int = 0, num_vertices: int = 240) -> dict[str, np.ndarray]:
    """SMPL-format arrays (24 joints, Y up) with random geometry around a rough upright skeleton."""
    rng = np.random.default_rng(seed)
    n_joints = len(SMPL_PARENTS)
    up = {3, 6, 9, 12, 15}
    down = {1, 2, 4, 5, 7, 8, 10, 11}
    joints = np.zeros((n_joints, 3))
    for j in range(1, n_joints):
        step = 0.15 if j in up else -0.2 if j in down else 0.0
        joints[j] = joints[SMPL_PARENTS[j]] + rng.normal(0, 0.05, 3) + [0, step, 0]
    owner = np.concatenate([np.arange(n_joints), rng.integers(0, n_joints, num_vertices - n_joints)])
    vertices = joints[owner] + rng.normal(0, 0.03, (num_vertices, 3))
    regressor = np.zeros((n_joints, num_vertices))
    regressor[owner, np.arange(num_vertices)] = 1.0
    regressor /= regressor.sum(1, keepdims=True)
    weights = rng.random((num_vertices, n_joints)) ** 8
    weights[np.arange(num_vertices), owner] += 1.0
    weights /= weights.sum(1, keepdims=True)
    return {
        "v_template": vertices,
        "shapedirs": rng.normal(0, 0.01, (num_vertices, 3, 10)),
        "posedirs": np.zeros((num_vertices, 3, 9 * (n_joints - 1))),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": np.array([SMPL_PARENTS, list(range(n_joints))]),
        "f": rng.integers(0, num_vertices, (400, 3)),
    }


@pytest.fixture(scope="module")
def body() -> tuple[SmplBody, np.ndarray, np.ndarray, np.ndarray]:
    model = SmplBody(tiny_smpl_arrays(), num_betas=10)
    rng = np.random.default_rng(1)
    n_frames = 30
    shape = rng.normal(0, 1, 10)
    pose = rng.normal(0, 0.3, (n_frames, 24, 3))
    pose[:, 0] = [np.pi / 2, 0, 0]  # the root rotation stands the Y-up model up in the Z-up world
    trans = np.cumsum(rng.normal(0, 0.01, (n_frames, 3)), axis=0)
    return model, shape, pose, trans


def test_motion_from_body_matches_the_model(body) -> None:
    model, shape, pose, trans = body
    out = model.evaluate(shape, pose, trans)
    motion = motion_from_body(model, shape, pose, trans, 30.0, name="fit")
    assert motion.joint_names == model.joint_names
    assert np.abs(motion.world_positions_m() - out.joints).max() < 1e-5  # float32 model vs float64 FK
    # the rest pose stands upright in the world: head above pelvis
    rest = motion.rest_positions_m()
    assert rest[model.joint_names.index("head"), 2] > rest[0, 2] + 0.3
    mesh = skinned_mesh_from_body(model, shape, max_influences=24)
    assert np.abs(skin(mesh, motion) - out.vertices).max() < 1e-5
    # engines take 4 influences: the largest four, renormalised
    four = skinned_mesh_from_body(model, shape)
    dense = model.skinning_weights()
    assert four.joint_indices.shape == (model.num_vertices, 4)
    assert np.array_equal(np.sort(four.joint_indices, 1), np.sort(np.argsort(-dense, 1)[:, :4], 1))


def test_body_motion_exports_and_retargets(tmp_path: Path, body) -> None:
    model, shape, pose, trans = body
    motion = motion_from_body(model, shape, pose, trans, 30.0)
    back = read_bvh(write_bvh(tmp_path / "body.bvh", motion))
    order = [back.joint_index(n) for n in motion.joint_names]  # BVH lists joints depth first
    assert np.abs(back.world_positions_m()[:, order] - motion.world_positions_m()).max() < 1e-5
    bones = {n: n for n in model.joint_names}
    out = retarget(motion, rig_from_motion(motion, bones), load_rig("mixamo"))
    assert out.num_frames == 30 and np.isfinite(out.local_rotmat).all()
    assert np.isfinite(feet_above_floor_m(out, load_rig("mixamo"))["left"]).all()


def test_amass_round_trip(tmp_path: Path, body) -> None:
    _, shape, pose, trans = body
    path = write_amass(tmp_path / "take.npz", pose, trans, shape, 60.0, "female", "smpl")
    with np.load(path) as npz:
        assert npz["poses"].shape == (30, 72) and npz["trans"].shape == (30, 3)
        assert npz["pose_body"].shape == (30, 63) and npz["root_orient"].shape == (30, 3)
        assert str(npz["gender"]) == "female" and float(npz["mocap_framerate"]) == 60.0
        assert np.array_equal(npz["poses"][:, 3:66], npz["pose_body"])
    got = read_amass(path)
    assert np.array_equal(got.pose_rotvec, pose) and np.array_equal(got.trans, trans)
    assert np.array_equal(got.betas, shape) and got.gender == "female" and got.frame_rate == 60.0
    assert read_amass(path, num_joints=22).pose_rotvec.shape == (30, 22, 3)


def test_amass_bad_inputs(tmp_path: Path, body) -> None:
    _, shape, pose, trans = body
    bad = pose.copy()
    bad[4, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"frames \[4\]"):
        write_amass(tmp_path / "x.npz", bad, trans, shape, 60.0)
    with pytest.raises(ValueError, match="gender"):
        write_amass(tmp_path / "x.npz", pose, trans, shape, 60.0, gender="other")
    with pytest.raises(ValueError, match=r"trans must have shape \(30, 3\)"):
        write_amass(tmp_path / "x.npz", pose, trans[:5], shape, 60.0)
    assert not list(tmp_path.iterdir())
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(AmassError, match="missing array"):
        read_amass(tmp_path / "other.npz")
