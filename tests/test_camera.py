"""Camera model: projection against OpenCV, property tests for rays and distortion, NaN, errors."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mocap_studio.calibration.camera import (
    Camera,
    CameraRig,
    distort_normalized,
    epipolar_distance,
    fundamental_matrix,
    look_at,
    relative_pose,
    undistort_normalized,
)
from mocap_studio.common.order import natural_key
from mocap_studio.common.rotations import rotation_angle_deg, rotmat_to_rotvec, rotvec_to_rotmat

K = np.array([[900.0, 0, 640], [0, 905.0, 360], [0, 0, 1]])
DISTORTIONS = {
    "barrel5": np.array([-0.32, 0.12, 0.001, -0.002, -0.02]),
    "pincushion5": np.array([0.1, -0.2, 0.001, 0.002, 0.05]),
    "rational8": np.array([0.1, -0.2, 0.001, 0.002, 0.05, 0.05, -0.1, 0.03]),
    "none": np.zeros(5),
}
FISHEYE = np.array([0.05, -0.01, 0.002, -0.001])


def make_camera(dist, model="pinhole", rotvec=(0.1, -0.2, 0.3), t=(0.1, 0.2, 3.0), name="cam"):
    return Camera.from_rotvec(name, (1280, 720), K, dist, rotvec, t, model)


def image_grid(n=40):
    return np.stack(np.meshgrid(np.linspace(0, 1279, n), np.linspace(0, 719, n)), -1).reshape(-1, 2)


@pytest.mark.parametrize("name", list(DISTORTIONS))
def test_pinhole_projection_matches_opencv(name):
    dist = DISTORTIONS[name]
    cam = make_camera(dist)
    pts = np.random.default_rng(0).uniform(-1, 1, (300, 3))
    ours = cam.project(pts)
    ref, _ = cv2.projectPoints(pts, cam.rotvec, cam.t, K, dist)
    assert np.abs(ours - ref[:, 0]).max() < 1e-9


def test_fisheye_projection_matches_opencv():
    cam = make_camera(FISHEYE, "fisheye")
    pts = np.random.default_rng(1).uniform(-1, 1, (300, 3))
    ref, _ = cv2.fisheye.projectPoints(pts[:, None], cam.rotvec, cam.t, K, FISHEYE)
    assert np.abs(cam.project(pts) - ref[:, 0]).max() < 1e-9


@pytest.mark.parametrize("name", list(DISTORTIONS))
def test_undistort_then_distort_over_the_image_within_1e6_px(name):
    cam = make_camera(DISTORTIONS[name])
    uv = image_grid()
    back = cam.normalized_to_pixels(distort_normalized(cam.undistort_points(uv), cam.dist))
    assert np.abs(back - uv).max() < 1e-6


def test_fisheye_undistort_then_distort_within_1e6_px():
    cam = make_camera(FISHEYE, "fisheye")
    uv = image_grid()
    back = cam.normalized_to_pixels(distort_normalized(cam.undistort_points(uv), cam.dist, "fisheye"))
    assert np.abs(back - uv).max() < 1e-6


@settings(max_examples=60, deadline=None)
@given(
    rotvec=st.tuples(*[st.floats(-np.pi / 2, np.pi / 2)] * 3),
    point=st.tuples(st.floats(-0.8, 0.8), st.floats(-0.5, 0.5), st.floats(1.0, 8.0)),
    dist_name=st.sampled_from(list(DISTORTIONS) + ["fisheye"]),
)
def test_project_then_ray_returns_the_direction(rotvec, point, dist_name):
    model = "fisheye" if dist_name == "fisheye" else "pinhole"
    dist = FISHEYE if model == "fisheye" else DISTORTIONS[dist_name]
    R = rotvec_to_rotmat(np.array(rotvec))
    cam = Camera("c", (1280, 720), K, dist, R, np.array([0.2, -0.1, 0.5]), model)
    world = cam.to_world(np.array(point))
    ray = cam.rays(cam.project(world))
    expected = (world - cam.center) / np.linalg.norm(world - cam.center)
    assert np.abs(ray - expected).max() < 1e-9


@settings(max_examples=60, deadline=None)
@given(xy=st.tuples(st.floats(-0.6, 0.6), st.floats(-0.35, 0.35)), dist_name=st.sampled_from(list(DISTORTIONS)))
def test_distort_then_undistort_returns_the_point(xy, dist_name):
    dist = DISTORTIONS[dist_name]
    xy = np.array(xy)
    back = undistort_normalized(distort_normalized(xy, dist), dist)
    assert np.abs(back - xy).max() * K[0, 0] < 1e-6


def test_nan_passes_through_everything():
    for model, dist in (("pinhole", DISTORTIONS["barrel5"]), ("fisheye", FISHEYE)):
        cam = make_camera(dist, model)
        pts = np.array([[0.1, 0.2, 0.3], [np.nan, 0, 0]])
        uv = cam.project(pts)
        assert np.all(np.isfinite(uv[0])) and np.all(np.isnan(uv[1]))
        assert np.all(np.isnan(cam.rays(uv)[1])) and np.all(np.isfinite(cam.rays(uv)[0]))
        assert np.all(np.isnan(cam.undistort_points(uv)[1]))


def test_points_behind_the_camera_are_nan():
    cam = Camera("c", (1280, 720), K)
    assert np.all(np.isnan(cam.project(np.array([0.0, 0.0, -1.0]))))


def test_world_camera_transforms_and_relative_pose():
    a = make_camera(DISTORTIONS["none"], rotvec=(0.1, 0.2, 0.3), t=(0.0, 0.1, 2.0), name="a")
    b = make_camera(DISTORTIONS["none"], rotvec=(-0.3, 0.5, 0.1), t=(0.4, -0.1, 2.5), name="b")
    pts = np.random.default_rng(2).normal(size=(20, 3))
    assert np.allclose(a.to_world(a.to_camera(pts)), pts)
    R_ba, t_ba = relative_pose(a, b)
    assert np.allclose(a.to_camera(pts) @ R_ba.T + t_ba, b.to_camera(pts))
    assert np.allclose(a.world_from_camera @ a.camera_from_world, np.eye(4))


def test_epipolar_geometry_of_true_correspondences_is_zero():
    a = make_camera(DISTORTIONS["barrel5"], rotvec=(0.0, 0.3, 0.0), t=(0.0, 0.0, 3.0), name="a")
    b = make_camera(DISTORTIONS["pincushion5"], rotvec=(0.0, -0.3, 0.0), t=(0.5, 0.0, 3.0), name="b")
    pts = np.random.default_rng(3).uniform(-0.5, 0.5, (50, 3))
    ua, ub = a.project(pts), b.project(pts)
    assert epipolar_distance(a, b, ua, ub).max() < 1e-8
    assert epipolar_distance(a, b, ua, ub + [0, 5.0]).mean() > 1.0
    F = fundamental_matrix(a, b)
    ha = np.c_[a.undistort_pixels(ua), np.ones(50)]
    hb = np.c_[b.undistort_pixels(ub), np.ones(50)]
    assert np.abs(np.einsum("ni,ij,nj->n", hb, F, ha)).max() < 1e-9


def test_rig_looks_up_by_name_and_keeps_natural_order():
    cams = [make_camera(DISTORTIONS["none"], name=f"cam_{i}") for i in (10, 2, 1)]
    rig = CameraRig.from_cameras(cams)
    assert rig.names == ("cam_1", "cam_2", "cam_10")
    assert rig["cam_10"].name == "cam_10"
    with pytest.raises(KeyError, match="cam_3"):
        rig["cam_3"]
    with pytest.raises(TypeError, match="by name"):
        rig[0]
    with pytest.raises(ValueError, match="unique"):
        CameraRig((cams[0], cams[0]))
    assert sorted(["cam_10", "cam_2", "cam_1"], key=natural_key) == ["cam_1", "cam_2", "cam_10"]
    assert rig.project(np.zeros((4, 3))).shape == (3, 4, 2)


def test_rig_transform_keeps_projections():
    R, t = look_at([3, 0, 1.5], [0, 0, 1])
    rig = CameraRig((Camera("a", (1280, 720), K, DISTORTIONS["barrel5"], R, t),))
    pts = np.random.default_rng(4).normal(size=(10, 3))
    rot = rotvec_to_rotmat(np.array([0.2, -0.4, 1.0]))
    moved = rig.transformed(rot, np.array([1.0, 2.0, 3.0]), scale=2.5)
    new_pts = 2.5 * pts @ rot.T + [1.0, 2.0, 3.0]
    assert np.allclose(moved.project(new_pts), rig.project(pts), atol=1e-9)


def test_bad_camera_parameters_are_named():
    with pytest.raises(ValueError, match="camera 'x'.*K"):
        Camera("x", (10, 10), np.eye(2))
    with pytest.raises(ValueError, match="rotation"):
        Camera("x", (10, 10), K, R=np.ones((3, 3)))
    with pytest.raises(ValueError, match="distortion"):
        Camera("x", (10, 10), K, dist=np.zeros(3))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        Camera("x", (10, 10), K).project(np.zeros((4, 2)))


def test_rotation_conversions_round_trip():
    rv = np.random.default_rng(5).normal(size=(200, 3))
    R = rotvec_to_rotmat(rv)
    assert np.allclose(rotvec_to_rotmat(rotmat_to_rotvec(R)), R, atol=1e-12)
    assert np.allclose([cv2.Rodrigues(v)[0] for v in rv], R, atol=1e-12)
    assert rotation_angle_deg(R[0], R[0]) < 1e-6
