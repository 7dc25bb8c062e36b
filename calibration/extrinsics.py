"""Initial camera poses from board views that cameras share.

Each camera's pose relative to the board comes from PnP per view; each pair of cameras that saw the same
views gets a robust relative pose (rotation averaged after rejecting views that disagree, translation by
median); a maximum spanning tree over the camera graph (edge weight: agreeing shared views) chains the pairs
into one rig. Cameras in no component with the reference are reported by name.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from mocap_studio.calibration.camera import Camera
from mocap_studio.calibration.observations import BoardObservations
from mocap_studio.common.rotations import average_rotations, rotation_angle_deg, rotvec_to_rotmat
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

log = logging.getLogger(__name__)


def board_poses_in_cameras(cameras: Sequence[Camera], obs: BoardObservations, object_points: np.ndarray,
                           min_corners: int = 6, max_median_px: float = 2.0) -> dict[tuple[int, int], np.ndarray]:
    """PnP per (camera, view): {(c, v): camera_from_board (4, 4)} for views seen well enough."""
    out: dict[tuple[int, int], np.ndarray] = {}
    order = np.lexsort((obs.view, obs.cam))
    cam_s, view_s = obs.cam[order], obs.view[order]
    bounds = np.flatnonzero(np.diff(cam_s * (obs.n_views + 1) + view_s)) + 1
    for rows in np.split(order, bounds):
        if len(rows) < min_corners:
            continue
        c, v = int(obs.cam[rows[0]]), int(obs.view[rows[0]])
        pose = _robust_pnp(cameras[c], object_points[obs.point[rows]], obs.uv[rows], max_median_px)
        if pose is not None:
            out[(c, v)] = pose
    return out


def _robust_pnp(cam: Camera, obj: np.ndarray, uv: np.ndarray, max_median_px: float) -> np.ndarray | None:
    """camera_from_board (4, 4) of a planar board by IPPE + refinement, refitted once without corners
    that disagree (a wrong corner from the detector must not spoil the view); None if it does not fit."""
    ideal = cam.undistort_points(uv)  # normalized, so PnP sees an ideal pinhole camera
    keep = np.ones(len(obj), dtype=bool)
    pose = None
    for _ in range(2):
        if keep.sum() < 4:
            return None
        ok, rvec, tvec = cv2.solvePnP(obj[keep], ideal[keep], np.eye(3), None, flags=cv2.SOLVEPNP_IPPE)
        if not ok:
            return None
        ok, rvec, tvec = cv2.solvePnP(obj[keep], ideal[keep], np.eye(3), None, rvec, tvec, True,
                                      cv2.SOLVEPNP_ITERATIVE)
        if not ok:
            return None
        pose = np.eye(4)
        pose[:3, :3] = rotvec_to_rotmat(rvec.ravel())
        pose[:3, 3] = tvec.ravel()
        cam_pts = obj @ pose[:3, :3].T + pose[:3, 3]
        if np.any(cam_pts[:, 2] <= 0):
            return None
        err = np.linalg.norm(cam.project(cam.to_world(cam_pts)) - uv, axis=1)
        med = float(np.median(err))
        new_keep = err < max(3.0 * med, 1.0)
        if new_keep.all() or (new_keep == keep).all():
            break
        keep = new_keep
    return pose if med <= max_median_px else None


@dataclass(frozen=True)
class PairPose:
    """Robust relative pose b_from_a between two cameras."""

    R: np.ndarray
    t: np.ndarray
    shared_views: int
    agreeing_views: int
    spread_deg: float


def relative_pose_from_views(poses_a: list[np.ndarray], poses_b: list[np.ndarray], max_angle_deg: float = 2.0) -> PairPose:
    """b_from_a from per-view camera_from_board poses of a and b, robust to views where PnP flipped."""
    rel = np.stack([pb @ np.linalg.inv(pa) for pa, pb in zip(poses_a, poses_b, strict=True)])
    R = average_rotations(rel[:, :3, :3])
    keep = np.ones(len(rel), dtype=bool)
    for _ in range(3):
        ang = rotation_angle_deg(rel[:, :3, :3], R)
        thr = max(max_angle_deg, 3.0 * float(np.median(ang)))
        keep = ang <= thr
        R = average_rotations(rel[keep, :3, :3])
    t = np.median(rel[keep, :3, 3], axis=0)
    spread = float(np.median(rotation_angle_deg(rel[keep, :3, :3], R)))
    return PairPose(R, t, len(rel), int(keep.sum()), spread)


@dataclass(frozen=True)
class InitialExtrinsics:
    """Initial camera poses and board poses from pairwise board views, before the bundle adjustment."""

    cameras: list[Camera]
    """All cameras; those not connected to the reference keep their intrinsics and an identity pose."""
    board_poses: np.ndarray
    """(V, 4, 4) world-from-board poses (identity where no connected camera saw the view)."""
    view_initialized: np.ndarray
    """(V,) bool: views with a pose estimate from a connected camera."""
    reference: int
    connected: np.ndarray
    """(C,) bool: cameras connected to the reference through shared views."""
    pairs: dict[tuple[int, int], PairPose]


def initial_extrinsics(cameras: Sequence[Camera], obs: BoardObservations, object_points: np.ndarray,
                       reference: str | None = None) -> InitialExtrinsics:
    """Chain robust pairwise poses over a maximum spanning tree; the reference camera is the world origin."""
    n = len(cameras)
    pnp = board_poses_in_cameras(cameras, obs, object_points)
    by_view: dict[int, dict[int, np.ndarray]] = {}
    for (c, v), pose in pnp.items():
        by_view.setdefault(v, {})[c] = pose
    pairs: dict[tuple[int, int], PairPose] = {}
    weights = np.zeros((n, n))
    for a in range(n):
        for b in range(a + 1, n):
            shared = [v for v, cams in by_view.items() if a in cams and b in cams]
            if len(shared) < 2:
                continue
            pp = relative_pose_from_views([by_view[v][a] for v in shared], [by_view[v][b] for v in shared])
            pairs[(a, b)] = pp
            weights[a, b] = weights[b, a] = pp.agreeing_views
    if reference is not None:
        ref = list(obs.camera_names).index(reference)
    else:
        ref = int(np.argmax(weights.sum(axis=1)))
    _, labels = connected_components(csr_matrix(weights > 0), directed=False)
    connected = labels == labels[ref]
    # maximum spanning tree == minimum spanning tree of (max+1 - w) on existing edges
    cost = np.where(weights > 0, weights.max() + 1 - weights, 0)
    tree = minimum_spanning_tree(csr_matrix(cost)).toarray()
    tree = (tree + tree.T) > 0
    world_from_cam = {ref: np.eye(4)}
    queue = deque([ref])
    while queue:
        a = queue.popleft()
        for b in np.flatnonzero(tree[a]):
            b = int(b)
            if b in world_from_cam:
                continue
            if (a, b) in pairs:
                pp = pairs[(a, b)]
                b_from_a = np.eye(4)
                b_from_a[:3, :3], b_from_a[:3, 3] = pp.R, pp.t
            else:
                pp = pairs[(b, a)]
                a_from_b = np.eye(4)
                a_from_b[:3, :3], a_from_b[:3, 3] = pp.R, pp.t
                b_from_a = np.linalg.inv(a_from_b)
            world_from_cam[b] = world_from_cam[a] @ np.linalg.inv(b_from_a)
            queue.append(b)
    out_cams = []
    for c, cam in enumerate(cameras):
        if c in world_from_cam:
            cam_from_world = np.linalg.inv(world_from_cam[c])
            out_cams.append(cam.replace(R=cam_from_world[:3, :3], t=cam_from_world[:3, 3]))
        else:
            out_cams.append(cam.replace(R=np.eye(3), t=np.zeros(3)))
    board_poses = np.tile(np.eye(4), (obs.n_views, 1, 1))
    initialized = np.zeros(obs.n_views, dtype=bool)
    for v, cams in by_view.items():
        estimates = [world_from_cam[c] @ pose for c, pose in cams.items() if c in world_from_cam]
        if not estimates:
            continue
        initialized[v] = True
        est = np.stack(estimates)
        board_poses[v, :3, :3] = average_rotations(est[:, :3, :3])
        board_poses[v, :3, 3] = np.median(est[:, :3, 3], axis=0)
    return InitialExtrinsics(out_cams, board_poses, initialized, ref, connected, pairs)

