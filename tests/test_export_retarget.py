"""Retargeting onto the preset rigs: target bone lengths, no flipped bones, feet on the floor at contact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mocap_studio.common.rotations import rotation_angle_deg
from mocap_studio.export.bvh import read_bvh, write_bvh
from mocap_studio.export.foot_ik import RetargetConfig, contact_frames
from mocap_studio.export.retarget import retarget
from mocap_studio.export.rig import PRESETS, Rig, feet_above_floor_m, load_rig, rig_from_bvh
from mocap_studio.export.synthetic import synthetic_walk

BVH_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mocap_files" / "bvh"


@pytest.fixture(scope="module")
def walk():
    return synthetic_walk(180)


def _direction_error_deg(src, src_rig, out, tgt, a: str, b: str) -> float:
    def unit(motion, rig):
        p = motion.world_positions_m()
        v = p[:, motion.joint_index(rig.bones[b])] - p[:, motion.joint_index(rig.bones[a])]
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    cos = np.sum(unit(src, src_rig) * unit(out, tgt), axis=-1)
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))).max())


@pytest.mark.parametrize("name", PRESETS)
def test_retarget_onto_presets(walk, name: str) -> None:
    src_rig, tgt = load_rig("smpl24"), load_rig(name)
    out = retarget(walk, src_rig, tgt)
    assert out.joint_names == tgt.joints
    # the target's own bone lengths
    rest = tgt.rest_positions_m
    expect = np.linalg.norm(rest[1:] - rest[tgt.parents[1:]], axis=1)
    assert np.allclose(out.bone_lengths_m()[1:], expect, atol=1e-12)
    assert np.allclose(out.rest_positions_m(), rest, atol=1e-12)
    # no flipped bones: per-frame local rotation changes stay as small as the source's world changes
    src_rot, _ = walk.world_transforms()
    src_jump = rotation_angle_deg(src_rot[1:], src_rot[:-1]).max()
    assert rotation_angle_deg(out.local_rotmat[1:], out.local_rotmat[:-1]).max() <= 2 * src_jump + 1.0
    # limbs point where the source's do, whatever the rest pose (T or A); legs up to what the leg IK
    # changes to plant the feet (exactly without it; this synthetic walk has near-straight knees, which
    # turn most for a given change of reach)
    plain = retarget(walk, src_rig, tgt, RetargetConfig(leg_ik=False))
    for a, b in (("left_shoulder", "left_elbow"), ("right_elbow", "right_wrist")):
        assert _direction_error_deg(walk, src_rig, out, tgt, a, b) < 1e-4
    for a, b in (("left_hip", "left_knee"), ("right_knee", "right_ankle")):
        assert _direction_error_deg(walk, src_rig, plain, tgt, a, b) < 1e-4
        assert _direction_error_deg(walk, src_rig, out, tgt, a, b) < 15.0
    # each foot on the floor at its contacts, and never through it
    contacts = contact_frames(walk, src_rig)
    height = feet_above_floor_m(out, tgt)
    for side, c in contacts.items():
        assert c.any()
        assert np.abs(height[side][c]).max() < 0.01
        assert height[side].min() > -0.01  # near contacts, where planting fades in


def test_given_contacts_are_used_and_detected_only_when_absent(walk) -> None:
    # the fit's contacts (body.npz: (T, 2), left then right) replace detection; the same contacts give the
    # same motion, others plant the feet elsewhere, with or without leg IK
    src_rig, tgt = load_rig("smpl24"), load_rig("mixamo")
    found = contact_frames(walk, src_rig)
    given = np.stack([found["left"], found["right"]], 1)
    for config in (RetargetConfig(), RetargetConfig(leg_ik=False)):
        detected = retarget(walk, src_rig, tgt, config)
        same = retarget(walk, src_rig, tgt, config, contacts=given)
        assert np.array_equal(same.local_rotmat, detected.local_rotmat)
        assert np.array_equal(same.root_translation_m, detected.root_translation_m)
    # the left foot planted for the whole clip: on the floor in every frame
    left_down = np.zeros_like(given)
    left_down[:, 0] = True
    height = feet_above_floor_m(retarget(walk, src_rig, tgt, contacts=left_down), tgt)
    assert np.abs(height["left"]).max() < 1e-6
    with pytest.raises(ValueError, match=r"contacts must have shape"):
        retarget(walk, src_rig, tgt, contacts=given[:-1])


def test_retargeted_clip_writes_and_reads_as_bvh(tmp_path: Path, walk) -> None:
    out = retarget(walk, load_rig("smpl24"), load_rig("mixamo"))
    back = read_bvh(write_bvh(tmp_path / "mixamo.bvh", out))
    order = [back.joint_index(n) for n in out.joint_names]
    assert np.abs(back.world_positions_m()[:, order] - out.world_positions_m()).max() < 1e-6


def test_missing_required_bone_is_named(walk) -> None:
    mixamo = load_rig("mixamo")
    bones = {k: v for k, v in mixamo.bones.items() if k != "left_knee"}
    broken = Rig(mixamo.name, mixamo.joints, mixamo.parents, mixamo.rest_positions_m, bones, source="test")
    with pytest.raises(ValueError, match=r"target rig 'mixamo'.*left_knee"):
        retarget(walk, load_rig("smpl24"), broken)
    with pytest.raises(FileNotFoundError, match="presets are"):
        load_rig("no_such_rig")


def test_retarget_refuses_nan_frames(walk) -> None:
    rot = walk.local_rotmat.copy()
    rot[7, 2] = np.nan
    with pytest.raises(ValueError, match="frames 7"):
        retarget(walk.with_rotations(rot), load_rig("smpl24"), load_rig("ue5_mannequin"))


@pytest.mark.skipif(not BVH_DIR.is_dir(), reason=f"real BVH files not present ({BVH_DIR}); ../shared is absent")
def test_real_cmu_walk_onto_mixamo_and_ue5() -> None:
    """A real CMU walk (frame 0, the T-pose calibration frame, dropped) onto Mixamo and the UE5 mannequin."""
    path = BVH_DIR / "cmu_12_01_walk.bvh"
    unit = 0.0254 * 2.2  # the cgspeed CMU conversion's unit, giving a 1.7 m performer
    src = read_bvh(path, unit_m=unit).slice_frames(1)
    src_rig = rig_from_bvh(path, "cmu_bvh", unit_m=unit)
    src_rot, _ = src.world_transforms()
    src_jump = rotation_angle_deg(src_rot[1:], src_rot[:-1]).max()
    contacts = contact_frames(src, src_rig)
    assert (contacts["left"] & contacts["right"]).sum() >= 10  # double support
    for name in ("mixamo", "ue5_mannequin"):
        tgt = load_rig(name)
        out = retarget(src, src_rig, tgt)
        assert rotation_angle_deg(out.local_rotmat[1:], out.local_rotmat[:-1]).max() <= 2 * src_jump + 1.0
        height = feet_above_floor_m(out, tgt)
        for side, planted in contacts.items():
            assert planted.sum() > 100
            err = np.abs(height[side][planted]).max()
            assert err < 0.01, f"{name}: {side} foot {100 * err:.1f} cm off the floor at contact"
            assert height[side].min() > -1e-6, f"{name}: {side} foot through the floor"
        # knees keep bending forwards: the knee stays in front of the hip-ankle line
        pos = out.world_positions_m()
        fwd = out.world_transforms()[0][:, out.joint_index(tgt.bones["pelvis"])] @ [0.0, -1.0, 0.0]
        for side in ("left", "right"):
            hip, knee, ankle = (pos[:, out.joint_index(tgt.bones[f"{side}_{c}"])] for c in ("hip", "knee", "ankle"))
            assert np.mean(np.sum((knee - 0.5 * (hip + ankle)) * fwd, axis=1) > -0.005) > 0.99
        # without leg IK one foot floats in double support (what the IK is for)
        plain = feet_above_floor_m(retarget(src, src_rig, tgt, RetargetConfig(leg_ik=False)), tgt)
        assert max(np.abs(plain[s][contacts[s]]).max() for s in plain) > 0.01
    # the UE5 root bone stays under the pelvis, near the floor
    ue5 = load_rig("ue5_mannequin")
    out = retarget(src, src_rig, ue5)
    pos = out.world_positions_m()
    pelvis = pos[:, out.joint_index("pelvis")]
    assert np.allclose(pos[:, 0, :2], pelvis[:, :2], atol=0.02)
    assert np.abs(pos[:, 0, 2]).max() < 0.10
