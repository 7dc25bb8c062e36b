"""Simulated board recordings from known cameras: exact truth for calibration tests and benchmarks, and a
way to predict what a planned rig and board will see before anything is printed.

The board's corner detections are the projections of its corners through the true cameras, with Gaussian
pixel noise; a corner is seen when it lands inside the image and the camera faces the board's printed side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mocap_studio.calibration.camera import Camera, CameraRig, look_at
from mocap_studio.calibration.observations import BoardObservations
from mocap_studio.common.rotations import rotvec_to_rotmat


@dataclass(frozen=True)
class SimulatedRecording:
    """Truth and observations of one simulated board recording."""

    rig: CameraRig
    """The true cameras (world frame: Z up, floor at Z = 0)."""
    observations: BoardObservations
    """Noisy corner observations, views indexed by frame."""
    board_poses: np.ndarray
    """(V, 4, 4) true world-from-board transforms per view."""
    floor_view: int
    """Index of the view with the board lying flat on the floor (the last one)."""


def ring_rig(
    n_cameras: int = 8,
    radius_m: float = 4.0,
    height_m: float = 2.2,
    size: tuple[int, int] = (1280, 720),
    focal_px: float = 1000.0,
    seed: int = 0,
    distortion: bool = True,
) -> CameraRig:
    """Cameras evenly on a ring around the origin, looking at (0, 0, 1), with varied focal lengths,
    principal points and mild lens distortion."""
    rng = np.random.default_rng(seed)
    cams = []
    for i in range(n_cameras):
        angle = 2 * np.pi * i / n_cameras + rng.uniform(-0.1, 0.1)
        eye = np.array([radius_m * np.cos(angle), radius_m * np.sin(angle), height_m + rng.uniform(-0.3, 0.3)])
        R, t = look_at(eye, np.array([0.0, 0.0, 1.0]) + rng.uniform(-0.2, 0.2, 3))
        f = focal_px * rng.uniform(0.9, 1.1)
        K = np.array(
            [[f, 0, size[0] / 2 + rng.uniform(-15, 15)], [0, f * rng.uniform(0.998, 1.002), size[1] / 2 + rng.uniform(-10, 10)],
             [0, 0, 1]]
        )
        dist = (
            np.array([rng.uniform(-0.25, 0.05), rng.uniform(-0.05, 0.1), rng.uniform(-1e-3, 1e-3),
                      rng.uniform(-1e-3, 1e-3), 0.0])
            if distortion
            else np.zeros(5)
        )
        cams.append(Camera(f"cam_{i}", size, K, dist, R, t))
    return CameraRig(tuple(cams))


def random_board_poses(n_views: int, seed: int = 0, volume_radius_m: float = 1.2,
                       height_range_m: tuple[float, float] = (0.4, 2.0)) -> np.ndarray:
    """(n_views, 4, 4) world-from-board poses of a board carried through the volume: upright-ish, turning
    to face different cameras, tilted by up to about 35 degrees."""
    rng = np.random.default_rng(seed)
    poses = np.zeros((n_views, 4, 4))
    for v in range(n_views):
        r = volume_radius_m * np.sqrt(rng.uniform())
        phi = rng.uniform(0, 2 * np.pi)
        centre = np.array([r * np.cos(phi), r * np.sin(phi), rng.uniform(*height_range_m)])
        yaw = rng.uniform(0, 2 * np.pi)
        # board printed side faces -z_board; start upright (board y pointing down the world Z axis)
        facing = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        z_board = -facing
        y_board = np.array([0.0, 0.0, -1.0])
        x_board = np.cross(y_board, z_board)
        base = np.stack([x_board, y_board, z_board], axis=1)
        tilt = rotvec_to_rotmat(rng.normal(0, 0.35, 3))
        R = base @ tilt
        poses[v, :3, :3] = R
        poses[v, :3, 3] = centre
        poses[v, 3, 3] = 1
    return poses


def close_up_board_poses(rig: CameraRig, per_camera: int, board_extent_m: tuple[float, float],
                         seed: int = 0, distance_m: tuple[float, float] = (1.2, 2.2)) -> np.ndarray:
    """(C * per_camera, 4, 4) poses of the board held up close to each camera in turn, tilted and moved
    across the image, as a calibration recording should include (they pin down focal length, principal
    point and distortion, which views from the middle of the room cannot)."""
    rng = np.random.default_rng(seed)
    poses = []
    half = np.array([board_extent_m[0] / 2, board_extent_m[1] / 2, 0.0])
    for cam in rig.cameras:
        w, h = cam.size
        for _ in range(per_camera):
            uv = np.array([rng.uniform(0.25, 0.75) * w, rng.uniform(0.3, 0.7) * h])
            ray = cam.rays(uv)
            centre = cam.center + ray * rng.uniform(*distance_m)
            # printed side towards the camera: board z along the ray; board y roughly down in the image
            z_b = ray
            y_b = cam.R.T @ np.array([0.0, 1.0, 0.0])
            y_b = y_b - (y_b @ z_b) * z_b
            y_b /= np.linalg.norm(y_b)
            base = np.stack([np.cross(y_b, z_b), y_b, z_b], axis=1)
            R = base @ rotvec_to_rotmat(np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.7, 0.7), rng.uniform(-0.3, 0.3)]))
            pose = np.eye(4)
            pose[:3, :3] = R
            pose[:3, 3] = centre - R @ half
            poses.append(pose)
    return np.stack(poses) if poses else np.zeros((0, 4, 4))


def floor_board_pose(board_extent_m: tuple[float, float], yaw_rad: float = 0.3) -> np.ndarray:
    """(4, 4) world-from-board pose of a board lying printed side up on the floor, centred at the origin."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    # world X = board x, world Y = -board y, world Z = -board z (printed side up)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([1.0, -1.0, -1.0])
    pose = np.eye(4)
    pose[:3, :3] = R
    pose[:3, 3] = -R @ np.array([board_extent_m[0] / 2, board_extent_m[1] / 2, 0.0])
    return pose


def simulate_board_recording(
    rig: CameraRig,
    object_points: np.ndarray,
    board_poses: np.ndarray,
    noise_px: float = 0.2,
    seed: int = 0,
    min_corners: int = 6,
    max_view_angle_deg: float = 75.0,
) -> BoardObservations:
    """Project board corners (N, 3) at each pose (V, 4, 4) into every camera, add noise, keep what is seen."""
    rng = np.random.default_rng(seed)
    object_points = np.asarray(object_points, float)
    cams, views, points, uvs = [], [], [], []
    for v, pose in enumerate(board_poses):
        world = object_points @ pose[:3, :3].T + pose[:3, 3]
        normal_to_viewer = -pose[:3, 2]
        for c, cam in enumerate(rig.cameras):
            to_cam = cam.center - pose[:3, 3]
            cos_angle = normal_to_viewer @ to_cam / np.linalg.norm(to_cam)
            if cos_angle < np.cos(np.radians(max_view_angle_deg)):
                continue
            uv = cam.project(world)
            seen = cam.in_image(uv, margin=-2.0)
            if seen.sum() < min_corners:
                continue
            idx = np.flatnonzero(seen)
            cams.append(np.full(len(idx), c))
            views.append(np.full(len(idx), v))
            points.append(idx)
            uvs.append(uv[idx] + rng.normal(0, noise_px, (len(idx), 2)))
    return BoardObservations(
        camera_names=rig.names,
        image_sizes=tuple(c.size for c in rig.cameras),
        cam=np.concatenate(cams),
        view=np.concatenate(views),
        point=np.concatenate(points),
        uv=np.concatenate(uvs),
        view_frames=np.arange(len(board_poses)),
    )


def simulate_calibration(
    object_points: np.ndarray,
    board_extent_m: tuple[float, float],
    n_cameras: int = 8,
    n_views: int = 200,
    noise_px: float = 0.2,
    seed: int = 0,
    rig: CameraRig | None = None,
    close_ups_per_camera: int = 8,
) -> SimulatedRecording:
    """A full simulated recording: the board held up close to each camera, carried through the volume,
    then laid on the floor (the last view)."""
    rig = rig or ring_rig(n_cameras, seed=seed)
    poses = np.concatenate([
        close_up_board_poses(rig, close_ups_per_camera, board_extent_m, seed=seed + 3),
        random_board_poses(n_views, seed=seed + 1),
        floor_board_pose(board_extent_m)[None],
    ])
    obs = simulate_board_recording(rig, object_points, poses, noise_px=noise_px, seed=seed + 2)
    return SimulatedRecording(rig=rig, observations=obs, board_poses=poses, floor_view=len(poses) - 1)


class BoardRenderer:
    """Renders a board seen by a camera: each pixel's ray (through the real lens model) is intersected
    with the board's plane and the printed pattern is sampled there, 2x supersampled. Exact geometry, so
    detections of the rendered images can be scored against the projected truth."""

    def __init__(self, board, camera: Camera, pixels_per_square: int = 48, supersample: int = 2, seed: int = 0):
        from mocap_studio.calibration.boards import board_image

        self.board = board
        self.camera = camera
        self.ppm = pixels_per_square / board.square_size_m
        pattern = board_image(board, pixels_per_square).astype(np.float32)
        self.margin_px = pixels_per_square // 2
        paper = 0.0 if board.inverted else 255.0
        self.texture = np.pad(pattern, self.margin_px, constant_values=paper)
        w, h = camera.size
        s = supersample
        self.supersample = s
        u, v = np.meshgrid((np.arange(w * s) + 0.5) / s - 0.5, (np.arange(h * s) + 0.5) / s - 0.5)
        self.rays = camera.rays(np.stack([u, v], -1)).astype(np.float64)  # (h*s, w*s, 3)
        rng = np.random.default_rng(seed)
        # a floor-and-wall background with some texture, so the detector meets realistic clutter
        bg = cv2_resize(rng.uniform(60, 140, (h // 16 + 1, w // 16 + 1)).astype(np.float32), (w, h))
        self.background = bg

    def render(self, world_from_board: np.ndarray, noise: float = 2.0, seed: int = 0) -> np.ndarray:
        """(H, W) uint8 image of the board at ``world_from_board`` (4, 4)."""
        import cv2

        R, t = world_from_board[:3, :3], world_from_board[:3, 3]
        n = R[:, 2]
        c = self.camera.center
        denom = self.rays @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            s = ((t - c) @ n) / denom
        hit = c + self.rays * s[..., None]
        local = (hit - t) @ R  # board coordinates
        map_x = (local[..., 0] * self.ppm - 0.5 + self.margin_px).astype(np.float32)
        map_y = (local[..., 1] * self.ppm - 0.5 + self.margin_px).astype(np.float32)
        invalid = ~(s > 0)
        map_x[invalid] = -1e6
        map_y[invalid] = -1e6
        sampled = cv2.remap(self.texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=-1.0)
        w, h = self.camera.size
        small = cv2.resize(sampled, (w, h), interpolation=cv2.INTER_AREA)
        cover = cv2.resize((sampled >= 0).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        small = np.where(cover > 0, small / np.maximum(cover, 1e-6), 0)
        shade = 0.6 + 0.35 * abs(float(n @ (c - t) / np.linalg.norm(c - t)))  # a board turned away is darker
        image = cover * small * shade + (1 - cover) * self.background
        image += np.random.default_rng(seed).normal(0, noise, image.shape)
        return np.clip(image, 0, 255).astype(np.uint8)


def cv2_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image (H, W[, 3]) to ``size`` = (width, height) with bicubic interpolation."""
    import cv2

    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
