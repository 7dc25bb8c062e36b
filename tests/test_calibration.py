"""Calibration against exact truth: simulated board recordings from known cameras."""

import numpy as np
import pytest
from mocap_studio.calibration.align import align_to_floor_board, floor_transform
from mocap_studio.calibration.bundle import BundleConfig, bundle_adjust_board
from mocap_studio.calibration.calibrate import CalibrationConfig, calibrate_rig
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.calibration.compare import compare_rigs
from mocap_studio.calibration.intrinsics import IntrinsicsConfig
from mocap_studio.calibration.observations import BoardObservations
from mocap_studio.calibration.simulate import (
    floor_board_pose,
    random_board_poses,
    ring_rig,
    simulate_board_recording,
    simulate_calibration,
)
from mocap_studio.common.rotations import rotation_angle_deg


def grid_board(nx: int, ny: int, square: float) -> np.ndarray:
    """Inner corners (N, 3) of an nx x ny-square board."""
    gx, gy = np.meshgrid(np.arange(1, nx) * square, np.arange(1, ny) * square)
    return np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1)


BOARD = grid_board(7, 10, 0.09)
EXTENT = (7 * 0.09, 10 * 0.09)


@pytest.fixture(scope="module")
def eight_camera_result():
    sim = simulate_calibration(BOARD, EXTENT, n_cameras=8, n_views=150, noise_px=0.2, seed=0,
                               close_ups_per_camera=12)
    config = CalibrationConfig(bundle=BundleConfig(distortion_terms=4))
    return sim, calibrate_rig(sim.observations, BOARD, config)


def test_eight_cameras_meet_the_accuracy_bounds(eight_camera_result):
    sim, result = eight_camera_result
    assert result.bundle.rms_px <= 0.3
    cmp = compare_rigs(result.rig, sim.rig)
    assert cmp.centre_error_m.max() <= 0.002, cmp.summary()
    assert cmp.rotation_error_deg.max() <= 0.05, cmp.summary()
    assert np.abs(cmp.focal_error_rel).max() <= 0.002, cmp.summary()
    assert result.unconnected == ()


def test_floor_alignment_puts_cameras_at_their_true_heights(eight_camera_result):
    sim, result = eight_camera_result
    # the floor board defines Z = 0 and Z up: heights and the vertical axis must match the truth
    assert np.abs(result.rig.centers[:, 2] - sim.rig.centers[:, 2]).max() < 0.006
    for est, true in zip(result.rig, sim.rig, strict=True):
        up_est = est.R @ np.array([0, 0, 1.0])
        up_true = true.R @ np.array([0, 0, 1.0])
        assert np.degrees(np.arccos(np.clip(up_est @ up_true, -1, 1))) < 0.15
    # the floor board's corners lie at Z = 0 in the aligned world
    floor = result.board_poses[np.argmax(sim.observations.view_frames)]
    corners = BOARD @ floor[:3, :3].T + floor[:3, 3]
    assert np.abs(corners[:, 2]).max() < 0.002


def test_noise_free_recording_is_recovered_exactly():
    rig = ring_rig(4, seed=3)
    poses = random_board_poses(40, seed=4)
    obs = simulate_board_recording(rig, BOARD, poses, noise_px=0.0, seed=5)
    result = calibrate_rig(obs, BOARD, CalibrationConfig(align="none", bundle=BundleConfig(distortion_terms=4)))
    cmp = compare_rigs(result.rig, rig)
    assert result.bundle.rms_px < 1e-5
    assert cmp.centre_error_m.max() < 1e-6 and cmp.rotation_error_deg.max() < 1e-5


def test_known_intrinsics_give_sub_millimetre_extrinsics():
    sim = simulate_calibration(BOARD, EXTENT, n_cameras=6, n_views=80, noise_px=0.2, seed=7, close_ups_per_camera=0)
    known = {c.name: c for c in sim.rig}
    config = CalibrationConfig(bundle=BundleConfig(refine_intrinsics=False, refine_distortion=False))
    result = calibrate_rig(sim.observations, BOARD, config, known_intrinsics=known)
    cmp = compare_rigs(result.rig, sim.rig)
    assert cmp.centre_error_m.max() < 0.001, cmp.summary()
    assert result.intrinsics == ()  # nothing was re-calibrated


def test_outlier_corners_are_rejected():
    rig = ring_rig(4, seed=1)
    obs = simulate_board_recording(rig, BOARD, random_board_poses(60, seed=2), noise_px=0.2, seed=3)
    uv = obs.uv.copy()
    bad = np.random.default_rng(0).choice(len(uv), len(uv) // 50, replace=False)
    uv[bad] += np.random.default_rng(1).normal(0, 30, (len(bad), 2))
    dirty = BoardObservations(obs.camera_names, obs.image_sizes, obs.cam, obs.view, obs.point, uv, obs.view_frames)
    known = {c.name: c for c in rig}
    result = calibrate_rig(dirty, BOARD, CalibrationConfig(align="none", bundle=BundleConfig(
        refine_intrinsics=False, refine_distortion=False)), known_intrinsics=known)
    flagged = ~result.bundle.inliers
    assert np.isin(np.flatnonzero(flagged), bad).mean() > 0.9  # what is rejected is bad
    assert compare_rigs(result.rig, rig).centre_error_m.max() < 0.002


def test_a_camera_that_shares_no_view_is_named():
    rig = ring_rig(4, seed=1)
    obs = simulate_board_recording(rig, BOARD, random_board_poses(60, seed=2), noise_px=0.2, seed=3)
    # camera 3 only sees views nobody else sees
    shared = obs.shared_view_counts()
    assert shared[3, :3].sum() > 0
    views_3 = set(obs.views_of_camera(3))
    others = set(np.unique(obs.view[obs.cam != 3]))
    keep = ~((obs.cam == 3) & np.isin(obs.view, list(views_3 & others)))
    keep &= ~((obs.cam != 3) & np.isin(obs.view, list(views_3)))
    isolated = obs.select(np.flatnonzero(keep))
    known = {c.name: c for c in rig}
    result = calibrate_rig(isolated, BOARD, CalibrationConfig(align="none"), known_intrinsics=known)
    assert result.unconnected == ("cam_3",)
    assert "cam_3" not in result.rig
    assert any("cam_3" in w and "shares no board view" in w for w in result.warnings)


def test_no_shared_views_at_all_is_a_clear_error():
    rig = ring_rig(2, seed=1)
    obs = simulate_board_recording(rig, BOARD, random_board_poses(40, seed=2), seed=3)
    only_first = obs.select(np.flatnonzero(obs.cam == 0))
    with pytest.raises(ValueError, match="no two cameras saw the board at the same time"):
        calibrate_rig(only_first, BOARD, known_intrinsics={c.name: c for c in rig})


def test_floor_transform_maps_the_board_plane_to_z0():
    pose = floor_board_pose(EXTENT, yaw_rad=0.7)
    pose[:3, 3] += [0.3, -0.2, 0.0]
    R, t = floor_transform(pose)
    corners = BOARD @ pose[:3, :3].T + pose[:3, 3]
    mapped = corners @ R.T + t
    assert np.allclose(mapped[:, 2], 0, atol=1e-12)
    origin = pose[:3, 3] @ R.T + t  # the board frame's origin becomes the world origin
    assert np.allclose(origin, 0, atol=1e-12)
    assert rotation_angle_deg(R @ R.T, np.eye(3)) < 1e-9


def test_floor_alignment_turns_an_upside_down_frame_over():
    rig = ring_rig(4, seed=2)
    pose = floor_board_pose(EXTENT)
    pose_upside_down = pose.copy()
    pose_upside_down[:3, :3] = pose[:3, :3] @ np.diag([1.0, -1.0, -1.0])
    aligned, _, _ = align_to_floor_board(rig, pose_upside_down)
    assert np.all(aligned.centers[:, 2] > 0)


def test_bundle_rejects_wrong_shapes():
    rig = ring_rig(2, seed=1)
    obs = simulate_board_recording(rig, BOARD, random_board_poses(5, seed=2), seed=3)
    with pytest.raises(ValueError, match="board_poses must have shape"):
        bundle_adjust_board(list(rig), obs, BOARD, np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="object_points must have shape"):
        calibrate_rig(obs, BOARD[:, :2])


def test_fisheye_cameras_calibrate():
    base = ring_rig(4, seed=6, distortion=False)
    fish = [c.replace(model="fisheye", dist=np.array([0.03, -0.01, 0.002, 0.0]),
                      K=np.array([[450.0, 0, 640], [0, 450.0, 360], [0, 0, 1]])) for c in base]
    rig = CameraRig(tuple(fish))
    sim = simulate_calibration(BOARD, EXTENT, rig=rig, n_views=80, noise_px=0.2, seed=6, close_ups_per_camera=10)
    result = calibrate_rig(sim.observations, BOARD, CalibrationConfig(intrinsics=IntrinsicsConfig(fisheye=True)))
    assert all(c.model == "fisheye" for c in result.rig)
    assert result.bundle.rms_px < 0.3
    cmp = compare_rigs(result.rig, sim.rig)
    assert cmp.centre_error_m.max() < 0.005, cmp.summary()
    assert np.abs(cmp.focal_error_rel).max() < 0.005, cmp.summary()
