"""The fit on takes as hard as real footage (issue 13), against known truth: noisy keypoints with outliers and
detector left/right swaps of the feet, a performer on a raised platform or on the floor.

- no flips: the world orientation of the feet, hands and head never turns more than the truth does plus a
  margin in one frame (a flip is a turn beyond 90 degrees in a frame; we hold a much tighter bound);
- smoothness: the fitted keypoints are no jerkier than the keypoints after the reference Butterworth filter;
- ground: estimated from the still feet, within 1 cm of a 0.2 m platform's top, the contacts on it, and at
  Z = 0 on the floor;
- the figures in the fit's report (flips, jerk, ground); the ground in body.npz and in retargeting.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from body_fixtures import noisy_keypoints, plausible_motion
from mocap_studio.common.rotations import rotvec_to_rotmat
from mocap_studio.reconstruction.body.anny_model import AnnyBody
from mocap_studio.reconstruction.body.fit_config import FitConfig
from mocap_studio.reconstruction.body.fit_contacts import estimate_ground
from mocap_studio.reconstruction.body.fit_quality import (
    FLIP_DEG,
    derivative_norm_mean,
    rotation_steps_deg,
    smoothness_figures,
    world_rotations,
)
from mocap_studio.reconstruction.body.fit_signals import _fill_nan, _side_swaps
from mocap_studio.reconstruction.body.fitting import fit_sequence
from mocap_studio.reconstruction.body.io import load_body_npz, save_body_npz
from scipy.signal import butter, filtfilt

FPS = 60.0
PLATFORM_M = 0.2
WATCHED = ("left_ankle", "right_ankle", "left_wrist", "right_wrist", "head")
FEET = ("ankle", "heel", "foot_index")


@pytest.fixture(scope="module")
def anny() -> AnnyBody:
    torch.set_num_threads(1)
    return AnnyBody()


def _swap_feet(xyz: np.ndarray, names: tuple[str, ...], seed: int) -> tuple[np.ndarray, list[int]]:
    """xyz (T, K, 3) with the left and right foot keypoints swapped in six runs of 1-7 frames (a detector's
    left/right confusion that triangulation passed on); returns the swapped frames too."""
    rng = np.random.default_rng(seed)
    left = [names.index(f"left_{n}") for n in FEET]
    right = [names.index(f"right_{n}") for n in FEET]
    out, frames = xyz.copy(), []
    for start in rng.choice(np.arange(5, len(xyz) - 12, 12), 6, replace=False):
        n = int(rng.integers(1, 8))
        out[start : start + n, left + right] = xyz[start : start + n, right + left]
        frames += range(start, start + n)
    return out, sorted(frames)


def _take(model, platform: float, seed: int = 3):  # noqa: ANN001, ANN202
    """A 200-frame take (squat, arm swings, a step; the left foot planted throughout) on a platform of the
    given height: 15 mm noise, 5 % outliers, 3 % missing points, swapped feet."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    shape = model.random_shape(rng)
    pose, trans, _ = plausible_motion(model, shape, 200, FPS, seed)
    trans = trans + np.array([0.0, 0.0, platform])
    clean = model.keypoints(shape, pose, trans, "blazepose33")
    kp = noisy_keypoints(clean, seed, noise_m=0.015, outliers=0.05, missing=0.03)
    xyz, swapped = _swap_feet(np.array(kp.xyz), kp.format.joints, seed)
    return shape, pose, trans, clean, replace(kp, xyz=xyz), swapped


def _world(model, pose_rotvec: np.ndarray) -> np.ndarray:  # noqa: ANN001
    T = len(pose_rotvec)
    local = rotvec_to_rotmat(pose_rotvec.reshape(-1, 3)).reshape(T, -1, 3, 3)
    return world_rotations(local, model.parents)[:, [model.semantic_joints[n] for n in WATCHED]]


@pytest.fixture(scope="module")
def platform_fit(anny):  # noqa: ANN001, ANN201
    take = _take(anny, PLATFORM_M)
    return take, fit_sequence(anny, take[4], FitConfig(), frame_rate=FPS)


def test_side_swaps_are_found(anny):
    # the feet's swaps are found frame for frame, and nothing else is relabelled
    take = _take(anny, 0.0, seed=5)
    kp, swapped = take[4], take[5]
    xyz = np.array(kp.xyz)
    weight = np.isfinite(xyz).all(-1).astype(float)
    order = _side_swaps(np.nan_to_num(xyz), weight, kp.format)
    names = kp.format.joints
    feet = [names.index(f"{side}_{n}") for side in ("left", "right") for n in FEET]
    moved = (order != np.arange(len(names))).any(1)
    assert np.flatnonzero(moved).tolist() == swapped
    assert (order[:, feet][moved] != np.array(feet)).all()
    others = np.setdiff1d(np.arange(len(names)), feet)
    assert (order[:, others] == others).all()


def test_no_flips_with_noise_and_swapped_feet(anny, platform_fit):
    take, res = platform_fit
    pose = take[1]
    fit_steps = rotation_steps_deg(_world(anny, res.pose_rotvec)).max(0)
    true_steps = rotation_steps_deg(_world(anny, pose)).max(0)
    # measured: 5-13 degrees a frame (truth 0-3); a flip is 90 and more (the fit before issue 13: 75 on the
    # planted foot at the swaps)
    assert (fit_steps <= true_steps + 20.0).all(), (fit_steps, true_steps)
    assert res.figures["flips"] == 0 and res.figures["orientation_step_max_deg"] < FLIP_DEG
    fit = anny.keypoints(res.shape, res.pose_rotvec, res.trans, "blazepose33")
    assert np.linalg.norm(fit - take[3], axis=-1).mean() < 0.015  # MPJPE, metres (measured 9.4 mm)


def test_fit_no_jerkier_than_filtered_keypoints(anny, platform_fit):
    take, res = platform_fit
    kp = np.array(take[4].xyz)
    b, a = butter(4, 6.0 / (FPS / 2))
    filtered = filtfilt(b, a, _fill_nan(kp), axis=0)
    fit = anny.keypoints(res.shape, res.pose_rotvec, res.trans, "blazepose33")
    jerk_fit, jerk_kp = derivative_norm_mean(fit, FPS, 3), derivative_norm_mean(filtered, FPS, 3)
    acc_fit, acc_kp = derivative_norm_mean(fit, FPS, 2), derivative_norm_mean(filtered, FPS, 2)
    assert jerk_fit <= jerk_kp and acc_fit <= acc_kp, (jerk_fit, jerk_kp, acc_fit, acc_kp)
    # the report's figures compare the fit with the keypoints it read
    for key in ("fitted_jerk_m_s3", "keypoints_jerk_m_s3", "jerk_ratio", "fitted_acceleration_m_s2",
                "acceleration_ratio"):
        assert np.isfinite(res.figures[key]), key


def test_ground_on_a_platform(anny, platform_fit):
    take, res = platform_fit
    assert abs(res.ground_z - PLATFORM_M) < 0.01, res.ground_z
    assert abs(res.figures["ground_z_m"] - res.ground_z) < 1e-12
    # the left foot is planted throughout: in contact, on the platform (its lowest point at the ground)
    assert res.contact[:, 0].mean() > 0.8
    verts = anny.evaluate(res.shape, res.pose_rotvec[res.contact[:, 0]], res.trans[res.contact[:, 0]]).vertices
    left = anny.skinning_weights()[:, anny.semantic_joints["left_ankle"]] > 0.5
    assert abs(np.median(verts[:, left, 2].min(1)) - PLATFORM_M) < 0.01
    # nothing of the body sinks into the platform
    assert anny.evaluate(res.shape, res.pose_rotvec, res.trans).vertices[..., 2].min() > PLATFORM_M - 0.03


def test_ground_on_the_floor(anny):
    take = _take(anny, 0.0, seed=7)
    res = fit_sequence(anny, take[4], FitConfig(), frame_rate=FPS)
    assert res.ground_z == 0.0 and abs(res.figures["ground"]["still_feet_z_m"]) < 0.01, res.figures["ground"]
    assert res.contact[:, 0].mean() > 0.8


def test_estimate_ground_from_still_feet():
    # two feet of three sole points each: stance on a 0.3 m box with 3 mm noise, swings up to 0.2 m above
    rng = np.random.default_rng(0)
    T = 240
    t = np.arange(T) / FPS
    soles = np.zeros((T, 6, 3))
    clearance = np.array([0.01, 0.02, 0.02, 0.01, 0.02, 0.02])
    for foot in range(2):
        swing = np.clip(np.sin(2 * np.pi * 0.5 * t + np.pi * foot), 0.0, None)  # half the time in the air
        for p in range(3):
            soles[:, 3 * foot + p, 0] = 0.3 * foot + 0.4 * np.cumsum(swing) / FPS
            soles[:, 3 * foot + p, 2] = 0.3 + clearance[3 * foot + p] + 0.2 * swing
    soles += rng.normal(0.0, 0.003, soles.shape)
    ground = estimate_ground(soles, clearance, FPS, FitConfig())
    assert ground.source == "still feet" and abs(ground.z - 0.3) < 0.003, ground
    # no still foot (a jump on the spot throughout): the lowest soles, said so
    bouncing = soles.copy()
    bouncing[..., 0] = 0.5 * np.sin(2 * np.pi * 2 * t)[:, None]
    assert estimate_ground(bouncing, clearance, FPS, FitConfig()).source == "lowest feet"
    assert estimate_ground(np.full((10, 6, 3), np.nan), clearance, FPS, FitConfig()).source == "none"
    with pytest.raises(ValueError, match="soles"):
        estimate_ground(soles[:, :5], clearance[:5], FPS, FitConfig())


def test_body_npz_keeps_the_ground(anny, platform_fit, tmp_path):
    _, res = platform_fit
    path = save_body_npz(tmp_path / "body.npz", res, anny.joint_names, anny.parents, anny.shape_names)
    back = load_body_npz(path)
    assert back.ground_z == pytest.approx(res.ground_z)
    from mocap_studio.stages_export import read_body  # what the export stage retargets with

    assert read_body(path).ground_z == pytest.approx(res.ground_z) and abs(res.ground_z - PLATFORM_M) < 0.01
    with np.load(path) as d:
        legacy = {k: d[k] for k in d.files if k != "ground_z"}
    np.savez(tmp_path / "old.npz", **legacy)
    assert load_body_npz(tmp_path / "old.npz").ground_z is None


def test_quality_figures():
    # steps of a rotation turning 10 degrees a frame, then flipping 170 degrees once
    angles = np.radians(np.r_[np.arange(5) * 10.0, 40.0 + 170.0])
    rot = rotvec_to_rotmat(angles[:, None] * np.array([0.0, 0.0, 1.0]))[:, None]
    steps = rotation_steps_deg(rot)
    assert np.allclose(steps[:4, 0], 10.0) and steps[4, 0] == pytest.approx(170.0)
    # a path with constant acceleration 2 m/s^2: acceleration 2, jerk 0; NaN stencils skipped
    t = np.arange(30) / FPS
    path = np.stack([t**2, 0 * t, 0 * t], -1)[:, None]
    assert derivative_norm_mean(path, FPS, 2) == pytest.approx(2.0)
    assert derivative_norm_mean(path, FPS, 3) == pytest.approx(0.0, abs=1e-6)
    holed = path.copy()
    holed[10] = np.nan
    assert derivative_norm_mean(holed, FPS, 2) == pytest.approx(2.0)
    figures = smoothness_figures(2 * path, path, FPS)
    assert figures["acceleration_ratio"] == pytest.approx(2.0)


def test_exported_fbx_has_no_flips(anny, platform_fit, tmp_path):
    # the fitted take retargeted onto the Mixamo rig (the export's default: leg IK on the fit's contacts and
    # ground) and read back from the FBX by ufbx: the feet, hands and head turn no more in a frame than the
    # fitted body's do (plus what the leg IK adds), far from a flip
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("ufbx", reason="ufbx (test extra) is not installed")
    from mocap_studio.export.amass import motion_from_body, rig_from_body, skinned_mesh_from_body
    from mocap_studio.export.fbx import write_fbx
    from mocap_studio.export.retarget import retarget
    from mocap_studio.export.rig import load_rig

    _, res = platform_fit
    motion = motion_from_body(anny, res.shape, res.pose_rotvec, res.trans, FPS, name="take")
    source = rig_from_body(anny, motion, skinned_mesh_from_body(anny, res.shape))  # as the export stage builds it
    target = load_rig("mixamo")
    anim = retarget(motion, source, target, contacts=res.contact, ground_z=res.ground_z)
    path = write_fbx(tmp_path / "take.fbx", anim)
    out = tmp_path / "take.ufbx.npz"
    reader = Path(__file__).resolve().parent / "tools" / "ufbx_read.py"
    subprocess.run([sys.executable, str(reader), str(path), str(out), str(FPS), str(anim.num_frames)], check=True,
                   timeout=300)
    with np.load(out) as data:
        names, rotations = list(data["names"]), data["rotations"]
    watched = [target.bones[c] for c in ("left_ankle", "right_ankle", "left_wrist", "right_wrist", "head")]
    steps = rotation_steps_deg(rotations[:, [names.index(n) for n in watched]]).max(0)
    fitted = rotation_steps_deg(_world(anny, res.pose_rotvec)).max(0)
    assert (steps < FLIP_DEG).all() and (steps <= fitted + 10.0).all(), (steps, fitted)
    # the planted foot stands on the exported floor (Z = 0: the platform's top) wherever the fit has it in contact
    from mocap_studio.export.rig import feet_above_floor_m

    assert np.abs(feet_above_floor_m(anim, target)["left"][res.contact[:, 0]]).max() < 0.01
    # and the hips stay at standing height over the platform's top on every frame, planted or not
    hips = anim.world_positions_m()[:, list(anim.joint_names).index(target.bones["pelvis"]), 2]
    assert 0.6 < hips.min() and hips.max() < 1.3, (hips.min(), hips.max())


def test_flips_are_reported():
    # the fit's report names the frames where a foot, hand or head turned over, and a fit jerkier than its input
    from mocap_studio.reconstruction.body.fit_quality import flip_figures
    from mocap_studio.stages_body import quality_warnings

    angles = np.radians(np.r_[np.arange(5) * 10.0, 40.0 + 170.0, 40.0 + 170.0])
    rot = rotvec_to_rotmat(angles[:, None] * np.array([0.0, 0.0, 1.0]))[:, None]
    figures = flip_figures(rot, ("head",), FPS)
    assert figures["flips"] == 1 and figures["flip_frames"] == [5]
    assert figures["orientation_steps_per_joint_deg"]["head"] == pytest.approx(170.0)
    warnings = quality_warnings({**figures, "jerk_ratio": 2.0, "fitted_jerk_m_s3": 200.0, "keypoints_jerk_m_s3": 100.0})
    assert len(warnings) == 2 and "frames 5" in warnings[0] and "jerkier" in warnings[1]
    assert quality_warnings({"flips": 0, "jerk_ratio": 0.5}) == []
