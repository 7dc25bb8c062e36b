"""Sparse bundle adjustment over cameras and either board poses or free 3D points.

Robust Levenberg-Marquardt on the normal equations with the Schur complement: each residual depends on one
camera and one board pose (or point), so the board poses are eliminated block by block and only the small
dense camera system is solved. The Jacobian comes from central differences that perturb one parameter
column of all cameras (or all board poses) at once: a few dozen residual evaluations per iteration.
Parameters per camera: rotation vector (3), translation (3), fx, fy, cx, cy, distortion.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from mocap_studio.calibration.camera import Camera, distort_camera_points
from mocap_studio.calibration.observations import BoardObservations
from mocap_studio.common.rotations import rotmat_to_rotvec, rotvec_to_rotmat
from scipy.sparse import csr_matrix

log = logging.getLogger(__name__)

POSE = slice(0, 6)
INTRINSICS = slice(6, 10)
DIST_START = 10


@dataclass(frozen=True)
class BundleConfig:
    """Bundle adjustment settings."""

    refine_intrinsics: bool = True
    """Refine focal lengths and principal points (fx, fy, cx, cy) of every camera."""
    refine_distortion: bool = True
    """Refine lens distortion (the first ``distortion_terms`` coefficients)."""
    distortion_terms: int = 5
    """How many distortion coefficients are free: 2 (k1 k2), 4 (+p1 p2) or 5 (+k3); fisheye uses up to 4."""
    loss: str = "soft_l1"
    """Robust loss passed to scipy.optimize.least_squares ('linear', 'huber', 'soft_l1', 'cauchy')."""
    loss_scale_px: float = 1.0
    """Residual size in pixels where the robust loss starts to down-weight."""
    outlier_threshold_px: float = 3.0
    """After a first solve, observations with a reprojection error above this (and above 5x the median)
    are dropped and the problem is solved again."""
    max_evaluations: int = 200
    """Upper bound on function evaluations per solve."""
    tolerance: float = 1e-10
    """Relative tolerance on the cost and the parameters."""


def cameras_to_params(cameras: Sequence[Camera], n_dist: int) -> np.ndarray:
    """Cameras -> (C, 10 + n_dist) parameter rows: rotvec, t, fx, fy, cx, cy, distortion."""
    rows = np.zeros((len(cameras), DIST_START + n_dist))
    for i, cam in enumerate(cameras):
        rows[i, 0:3] = cam.rotvec
        rows[i, 3:6] = cam.t
        rows[i, 6:10] = cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2]
        d = cam.dist[:n_dist]
        rows[i, DIST_START:DIST_START + len(d)] = d
    return rows


def params_to_cameras(params: np.ndarray, templates: Sequence[Camera]) -> list[Camera]:
    """Inverse of :func:`cameras_to_params`; names, sizes, skew and models come from ``templates``."""
    out = []
    for row, cam in zip(params, templates, strict=True):
        K = np.array([[row[6], cam.K[0, 1], row[8]], [0, row[7], row[9]], [0, 0, 1.0]])
        n = max(len(cam.dist), len(row) - DIST_START)
        dist = np.zeros(n)
        dist[: len(row) - DIST_START] = row[DIST_START:]
        if len(cam.dist) > len(row) - DIST_START:
            dist[len(row) - DIST_START:] = cam.dist[len(row) - DIST_START:]
        if cam.model == "fisheye":
            dist = dist[:4]
        out.append(Camera(cam.name, cam.size, K, dist, rotvec_to_rotmat(row[0:3]), row[3:6], cam.model))
    return out


def project_params(cam_params: np.ndarray, models: np.ndarray, cam_idx: np.ndarray, points_world: np.ndarray) -> np.ndarray:
    """Project world points (M, 3) through per-row cameras ``cam_params[cam_idx]`` -> pixels (M, 2).

    ``models``: (C,) bool, True for fisheye cameras.
    """
    R = rotvec_to_rotmat(cam_params[:, 0:3])
    p = cam_params[cam_idx]
    pc = np.einsum("mij,mj->mi", R[cam_idx], points_world) + p[:, 3:6]
    fisheye = models[cam_idx]
    if fisheye.any():
        xy = np.empty((len(pc), 2))
        xy[~fisheye] = distort_camera_points(pc[~fisheye], p[~fisheye, DIST_START:], "pinhole")
        xy[fisheye] = distort_camera_points(pc[fisheye], p[fisheye, DIST_START:DIST_START + 4], "fisheye")
    else:
        xy = distort_camera_points(pc, p[:, DIST_START:], "pinhole")
    return np.stack([p[:, 6] * xy[:, 0] + p[:, 8], p[:, 7] * xy[:, 1] + p[:, 9]], axis=-1)


def _free_camera_mask(n_cams: int, n_params: int, config: BundleConfig, fixed_pose: Sequence[int],
                      models: np.ndarray) -> np.ndarray:
    mask = np.zeros((n_cams, n_params), dtype=bool)
    mask[:, POSE] = True
    for c in fixed_pose:
        mask[c, POSE] = False
    if config.refine_intrinsics:
        mask[:, INTRINSICS] = True
    if config.refine_distortion:
        for c in range(n_cams):
            terms = min(config.distortion_terms, 4 if models[c] else n_params - DIST_START)
            mask[c, DIST_START:DIST_START + terms] = True
    return mask


def _robust(sq: np.ndarray, loss: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Robust cost rho(s) and weight rho'(s) for squared residual norms ``sq`` (as scipy defines them)."""
    z = sq / scale**2
    if loss == "linear":
        return sq, np.ones_like(sq)
    if loss == "huber":
        rho = np.where(z <= 1, z, 2 * np.sqrt(z) - 1)
        d = np.where(z <= 1, 1.0, 1 / np.sqrt(np.maximum(z, 1e-300)))
    elif loss == "soft_l1":
        rho = 2 * (np.sqrt(1 + z) - 1)
        d = 1 / np.sqrt(1 + z)
    elif loss == "cauchy":
        rho = np.log1p(z)
        d = 1 / (1 + z)
    else:
        raise ValueError(f"BundleConfig.loss must be 'linear', 'huber', 'soft_l1' or 'cauchy', got {loss!r}")
    return rho * scale**2, d


def _segment_sum(index: np.ndarray, n: int):
    """A sparse (n, M) one-hot matrix: ``S @ X`` sums rows of X (M, ...) by ``index`` (much faster than
    ``np.add.at``)."""
    m = len(index)
    return csr_matrix((np.ones(m), (index, np.arange(m))), shape=(n, m))


def _gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row a^T b for (M, 2, i) and (M, 2, j) -> (M, i, j)."""
    return np.matmul(a.transpose(0, 2, 1), b)


def _levenberg_marquardt(
    residual: Callable[[np.ndarray, np.ndarray], np.ndarray],
    cam_params: np.ndarray,
    ent_params: np.ndarray,
    cam_idx: np.ndarray,
    ent_idx: np.ndarray,
    cam_free: np.ndarray,
    ent_free: np.ndarray,
    config: BundleConfig,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Robust Levenberg-Marquardt over cameras and entities (board poses or points) with the Schur complement.

    residual(cam_params (C, P), ent_params (E, Q)) -> (M, 2); row m depends only on camera cam_idx[m] and
    entity ent_idx[m]. The Jacobian is taken by central differences, perturbing one parameter column of
    every camera (or entity) at once, which is exact because rows of different cameras are disjoint.
    The camera block of the normal equations is dense (cameras are few); entities are eliminated.
    Only parameter columns free for some camera take part; block sums use sparse one-hot products.
    """
    n_c = cam_params.shape[0]
    n_e, ke = ent_params.shape
    cols = np.flatnonzero(cam_free.any(axis=0))
    kc = len(cols)
    free_c = cam_free[:, cols]
    m = len(cam_idx)
    evaluations = 0

    def cost_of(cp, ep):
        r = residual(cp, ep)
        rho, w = _robust(np.sum(r * r, axis=1), config.loss, config.loss_scale_px)
        return r, float(np.sum(rho)), w

    r, cost, w = cost_of(cam_params, ent_params)
    evaluations += 1
    lam = 1e-3
    # (camera, entity) pairs carry the off-diagonal blocks B
    pair_key = cam_idx * n_e + ent_idx
    pairs, pair_of_row = np.unique(pair_key, return_inverse=True)
    pair_cam, pair_ent = pairs // n_e, pairs % n_e
    # every ordered pair of pairs sharing an entity contributes B_p1 D^-1 B_p2^T to S[c1, c2]
    order = np.argsort(pair_ent, kind="stable")
    starts = np.searchsorted(pair_ent[order], np.arange(n_e))
    counts = np.bincount(pair_ent, minlength=n_e)
    i1_list, i2_list = [], []
    for n in np.unique(counts[counts > 0]):
        ents = np.flatnonzero(counts == n)
        members = order[starts[ents][:, None] + np.arange(n)[None]]  # (k, n)
        i1_list.append(np.repeat(members, n, axis=1).ravel())
        i2_list.append(np.tile(members, (1, n)).ravel())
    comb1, comb2 = np.concatenate(i1_list), np.concatenate(i2_list)
    sum_cam = _segment_sum(cam_idx, n_c)
    sum_ent = _segment_sum(ent_idx, n_e)
    sum_pair = _segment_sum(pair_of_row, len(pairs))
    sum_block = _segment_sum(pair_cam[comb1] * n_c + pair_cam[comb2], n_c * n_c)
    sum_pair_cam = _segment_sum(pair_cam, n_c)
    sum_pair_ent = _segment_sum(pair_ent, n_e)
    eye_c, eye_e = np.eye(kc), np.eye(ke)
    rel = 0.0
    for _ in range(config.max_evaluations):
        # --- Jacobian by central differences, one column of all cameras / entities at a time
        Jc = np.zeros((m, 2, kc))
        Je = np.zeros((m, 2, ke))
        for j, k in enumerate(cols):
            h = 1e-6 * np.maximum(1.0, np.abs(cam_params[:, k]))
            cp1, cp2 = cam_params.copy(), cam_params.copy()
            cp1[:, k] += h
            cp2[:, k] -= h
            Jc[:, :, j] = (residual(cp1, ent_params) - residual(cp2, ent_params)) / (2 * h[cam_idx])[:, None]
            evaluations += 2
        for k in range(ke):
            if not ent_free[:, k].any():
                continue
            h = 1e-6 * np.maximum(1.0, np.abs(ent_params[:, k]))
            ep1, ep2 = ent_params.copy(), ent_params.copy()
            ep1[:, k] += h
            ep2[:, k] -= h
            Je[:, :, k] = (residual(cam_params, ep1) - residual(cam_params, ep2)) / (2 * h[ent_idx])[:, None]
            evaluations += 2
        sw = np.sqrt(w)[:, None, None]
        Jc_w = Jc * free_c[cam_idx][:, None, :] * sw
        Je_w = Je * ent_free[ent_idx][:, None, :] * sw
        r_w = r * sw[:, :, 0]
        # --- normal equation blocks
        A = (sum_cam @ _gram(Jc_w, Jc_w).reshape(m, -1)).reshape(n_c, kc, kc)
        D = (sum_ent @ _gram(Je_w, Je_w).reshape(m, -1)).reshape(n_e, ke, ke)
        B = (sum_pair @ _gram(Jc_w, Je_w).reshape(m, -1)).reshape(len(pairs), kc, ke)
        gc = sum_cam @ np.matmul(r_w[:, None, :], Jc_w)[:, 0]
        ge = sum_ent @ np.matmul(r_w[:, None, :], Je_w)[:, 0]
        improved = False
        for _attempt in range(12):
            A_d = A + lam * np.einsum("cii->ci", A)[:, :, None] * eye_c + eye_c * (~free_c)[:, :, None]
            D_d = D + lam * np.einsum("eii->ei", D)[:, :, None] * eye_e + eye_e * (~ent_free)[:, :, None]
            D_inv = np.linalg.inv(D_d + 1e-12 * eye_e)
            BDi = np.matmul(B, D_inv[pair_ent])  # (P, kc, ke)
            contrib = np.matmul(BDi[comb1], B[comb2].transpose(0, 2, 1))  # (Q, kc, kc)
            blocks = (sum_block @ contrib.reshape(len(comb1), -1)).reshape(n_c, n_c, kc, kc)
            S = -blocks.transpose(0, 2, 1, 3).reshape(n_c * kc, n_c * kc)
            for c in range(n_c):
                S[c * kc:(c + 1) * kc, c * kc:(c + 1) * kc] += A_d[c]
            rhs = -gc + sum_pair_cam @ np.matmul(BDi, ge[pair_ent][:, :, None])[:, :, 0]
            try:
                dc = np.linalg.solve(S, rhs.ravel()).reshape(n_c, kc)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            # back-substitute the entities: D de = -ge - B^T dc
            bt_dc = sum_pair_ent @ np.matmul(B.transpose(0, 2, 1), dc[pair_cam][:, :, None])[:, :, 0]
            de = np.matmul(D_inv, (-ge - bt_dc)[:, :, None])[:, :, 0]
            new_c = cam_params.copy()
            new_c[:, cols] += dc * free_c
            new_e = ent_params + de * ent_free
            r_new, cost_new, w_new = cost_of(new_c, new_e)
            evaluations += 1
            if np.isfinite(cost_new) and cost_new < cost:
                rel = (cost - cost_new) / max(cost, 1e-300)
                cam_params, ent_params, r, w = new_c, new_e, r_new, w_new
                cost = cost_new
                lam = max(lam / 3, 1e-9)
                improved = True
                break
            lam *= 4
        if not improved or rel < config.tolerance:
            break
    return cam_params, ent_params, evaluations


@dataclass(frozen=True)
class BundleResult:
    """Result of a bundle adjustment."""

    cameras: list[Camera]
    poses: np.ndarray
    """(V, 4, 4) world-from-board poses (board problems) or (N, 3) points (point problems)."""
    residuals_px: np.ndarray
    """(M,) reprojection error per observation with the final parameters (outliers included)."""
    inliers: np.ndarray
    """(M,) bool: observations kept in the final solve."""
    seconds: float
    evaluations: int

    @property
    def rms_px(self) -> float:
        """Root-mean-square reprojection error of the inlier observations, in pixels (NaN when there are none)."""
        r = self.residuals_px[self.inliers]
        return float(np.sqrt(np.mean(r**2))) if len(r) else float("nan")


def _pose_params(poses: np.ndarray) -> np.ndarray:
    return np.concatenate([rotmat_to_rotvec(poses[:, :3, :3]), poses[:, :3, 3]], axis=1)


def _params_pose(params: np.ndarray) -> np.ndarray:
    out = np.tile(np.eye(4), (len(params), 1, 1))
    out[:, :3, :3] = rotvec_to_rotmat(params[:, :3])
    out[:, :3, 3] = params[:, 3:6]
    return out


def bundle_adjust_board(
    cameras: Sequence[Camera],
    obs: BoardObservations,
    object_points: np.ndarray,
    board_poses: np.ndarray,
    config: BundleConfig = BundleConfig(),
    fixed_camera: int = 0,
) -> BundleResult:
    """Refine cameras and board poses to minimise the reprojection error of board corners.

    cameras: C cameras in ``obs.camera_names`` order (initial values). object_points: (N, 3) board
    corners, metres. board_poses: (V, 4, 4) initial world-from-board transforms. The pose of
    ``fixed_camera`` is held (it fixes the gauge; the board fixes the scale).
    """
    start = time.perf_counter()
    if [c.name for c in cameras] != list(obs.camera_names):
        raise ValueError("bundle_adjust_board: cameras must be in obs.camera_names order")
    board_poses = np.asarray(board_poses, float)
    if board_poses.shape != (obs.n_views, 4, 4):
        raise ValueError(f"board_poses must have shape ({obs.n_views}, 4, 4), got {board_poses.shape}")
    object_points = np.asarray(object_points, float)
    n_dist = max(5, max(len(c.dist) for c in cameras))
    models = np.array([c.model == "fisheye" for c in cameras])
    cam_params = cameras_to_params(cameras, n_dist)
    view_params = _pose_params(board_poses)
    cam_free = _free_camera_mask(len(cameras), cam_params.shape[1], config, [fixed_camera], models)

    def world_points(vp, view_i, pt_i):
        Rv = rotvec_to_rotmat(vp[:, :3])
        return np.einsum("mij,mj->mi", Rv[view_i], object_points[pt_i]) + vp[view_i, 3:6]

    inliers = np.ones(len(obs.cam), dtype=bool)
    evaluations = 0
    for attempt in range(2):
        rows = np.flatnonzero(inliers)
        cam_i, view_i, pt_i, uv = obs.cam[rows], obs.view[rows], obs.point[rows], obs.uv[rows]
        view_free = np.zeros((obs.n_views, 6), dtype=bool)
        view_free[view_i] = True

        def residual(cp, vp, cam_i=cam_i, view_i=view_i, pt_i=pt_i, uv=uv):
            return project_params(cp, models, cam_i, world_points(vp, view_i, pt_i)) - uv

        cam_params, view_params, nfev = _levenberg_marquardt(
            residual, cam_params, view_params, cam_i, view_i, cam_free, view_free, config)
        evaluations += nfev
        err = np.linalg.norm(
            project_params(cam_params, models, obs.cam, world_points(view_params, obs.view, obs.point)) - obs.uv, axis=1)
        threshold = max(config.outlier_threshold_px, 5.0 * float(np.median(err)))
        new_inliers = err < threshold
        log.debug("bundle pass %d: rms %.3f px, %d outliers", attempt,
                  np.sqrt(np.mean(err[new_inliers] ** 2)), (~new_inliers).sum())
        if attempt == 0 and (new_inliers != inliers).any():
            inliers = new_inliers
        else:
            break
    return BundleResult(params_to_cameras(cam_params, cameras), _params_pose(view_params), err, inliers,
                        time.perf_counter() - start, evaluations)


def bundle_adjust_points(
    cameras: Sequence[Camera],
    uv: np.ndarray,
    points: np.ndarray,
    config: BundleConfig = BundleConfig(refine_intrinsics=False, refine_distortion=False),
    fixed_camera: int = 0,
) -> BundleResult:
    """Refine cameras and free 3D points from 2D correspondences (a moving person or animal).

    cameras: C cameras. uv: (C, N, 2) observed pixels, NaN where not seen. points: (N, 3) initial points
    (rows with NaN are ignored). The result's ``poses`` are the refined (N, 3) points and its residuals
    are per observation in (camera, point) row-major order of the finite entries. The pose of
    ``fixed_camera`` is held; scale is free (see :func:`calibration.refine.refine_with_keypoints`).
    """
    start = time.perf_counter()
    uv = np.asarray(uv, float)
    points = np.asarray(points, float)
    if uv.ndim != 3 or uv.shape[0] != len(cameras) or uv.shape[2] != 2:
        raise ValueError(f"uv must have shape ({len(cameras)}, N, 2), got {uv.shape}")
    if points.shape != (uv.shape[1], 3):
        raise ValueError(f"points must have shape ({uv.shape[1]}, 3), got {points.shape}")
    cam_i, pt_i = np.nonzero(np.all(np.isfinite(uv), axis=2) & np.all(np.isfinite(points), axis=1)[None])
    obs_uv = uv[cam_i, pt_i]
    n_dist = max(5, max(len(c.dist) for c in cameras))
    models = np.array([c.model == "fisheye" for c in cameras])
    cam_params = cameras_to_params(cameras, n_dist)
    cam_free = _free_camera_mask(len(cameras), cam_params.shape[1], config, [fixed_camera], models)
    pts = np.where(np.isfinite(points), points, 0.0)
    inliers = np.ones(len(cam_i), dtype=bool)
    evaluations = 0
    for attempt in range(2):
        rows = np.flatnonzero(inliers)
        ci, pi, ouv = cam_i[rows], pt_i[rows], obs_uv[rows]
        pt_free = np.zeros((len(pts), 3), dtype=bool)
        pt_free[pi] = True

        def residual(cp, p, ci=ci, pi=pi, ouv=ouv):
            return project_params(cp, models, ci, p[pi]) - ouv

        cam_params, pts, nfev = _levenberg_marquardt(residual, cam_params, pts, ci, pi, cam_free, pt_free, config)
        evaluations += nfev
        err = np.linalg.norm(project_params(cam_params, models, cam_i, pts[pt_i]) - obs_uv, axis=1)
        threshold = max(config.outlier_threshold_px, 5.0 * float(np.median(err)))
        new_inliers = err < threshold
        if attempt == 0 and (new_inliers != inliers).any():
            inliers = new_inliers
        else:
            break
    pts[~np.all(np.isfinite(points), axis=1)] = np.nan
    return BundleResult(params_to_cameras(cam_params, cameras), pts, err, inliers,
                        time.perf_counter() - start, evaluations)
