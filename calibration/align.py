"""World alignment: put the floor at Z = 0 with Z up, from a board laid on the floor or from a chosen view.

A board's own frame has z pointing away from its printed side (into the board). Lying printed side up on
the floor, that is straight down, so the world is: X = board x, Y = -board y, Z = -board z, origin at the
board's corner 0 (or its centre when asked). Scale is metric already (the board's squares set it).
"""

from __future__ import annotations

import numpy as np
from mocap_studio.calibration.camera import CameraRig

# world-from-board rotation for a board lying printed side up
FLOOR_FROM_BOARD = np.diag([1.0, -1.0, -1.0])


def floor_transform(world_from_board: np.ndarray, centre_offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) mapping current world coordinates to floor-aligned ones (X_new = R @ X + t).

    world_from_board: (4, 4) pose of the board lying on the floor. centre_offset: (3,) point in board
    coordinates to use as the origin (default: corner 0, the board frame's origin).
    """
    world_from_board = np.asarray(world_from_board, float)
    if world_from_board.shape != (4, 4):
        raise ValueError(f"world_from_board must be (4, 4), got {world_from_board.shape}")
    offset = np.zeros(3) if centre_offset is None else np.asarray(centre_offset, float)
    # new_from_board = FLOOR_FROM_BOARD (translated so the offset point is the origin)
    R_wb, t_wb = world_from_board[:3, :3], world_from_board[:3, 3]
    R = FLOOR_FROM_BOARD @ R_wb.T
    t = -R @ (t_wb + R_wb @ offset)
    return R, t


def align_to_floor_board(rig: CameraRig, world_from_board: np.ndarray,
                         centre_offset: np.ndarray | None = None) -> tuple[CameraRig, np.ndarray, np.ndarray]:
    """Move the rig into the floor frame defined by a board on the floor. Returns (rig, R, t).

    If most cameras end up below the floor the board was seen from underneath (or is face down): the frame
    is turned over so the cameras are above it, which is the only physical reading.
    """
    R, t = floor_transform(world_from_board, centre_offset)
    aligned = rig.transformed(R, t)
    if np.median(aligned.centers[:, 2]) < 0:
        flip = np.diag([1.0, -1.0, -1.0])
        R, t = flip @ R, flip @ t
        aligned = rig.transformed(R, t)
    return aligned, R, t


def align_to_camera(rig: CameraRig, camera: str, height_m: float | None = None) -> tuple[CameraRig, np.ndarray, np.ndarray]:
    """World = the named camera's frame turned Z-up (camera y down -> world -Z); optionally lift the camera
    to ``height_m`` above a floor at Z = 0. Used when no floor view exists."""
    cam = rig[camera]
    to_zup = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])  # camera (x right, y down, z fwd) -> Z up
    R = to_zup @ cam.R
    t = to_zup @ cam.t
    if height_m is not None:
        t = t + np.array([0, 0, height_m])
    return rig.transformed(R, t), R, t


def transform_poses(poses: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Apply X_new = R X + t to (V, 4, 4) world-from-board poses."""
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = R, t
    return m @ np.asarray(poses)
