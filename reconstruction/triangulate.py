"""Robust multi-view triangulation of 2D keypoints, vectorized over all frames and joints.

The pipeline (:func:`triangulate`):

1. Match the keypoints' cameras to the rig by name and undistort every observation to normalized
   coordinates (x/z, y/z).
2. Hypotheses from every camera pair: each pair's two-view DLT is reprojected into all cameras and scored
   with a truncated squared error (MSAC); the best hypothesis gives a first set of inlier views per point.
3. Re-triangulate from the inliers with a confidence- and depth-weighted DLT and re-select inliers twice.
   The inlier threshold adapts to the take: the image noise is estimated from the inlier residuals and the
   threshold becomes a multiple of it (never above the configured maximum).
4. Left/right swaps are fixed per view: where a view's left and right observations fit the other side's
   3D point better, they are exchanged and the points are triangulated again.
5. Optional robust refinement: Gauss-Newton on the pixel reprojection error with Huber weights.
6. Points seen by fewer than ``min_cameras`` inlier views are left missing; short gaps are interpolated.

Everything works on whole arrays; the only Python loops run over camera pairs, chunks of frames and
joints (for gap filling), never over single points.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import numpy as np
from mocap_studio.calibration.camera import CameraRig, fundamental_matrix
from mocap_studio.reconstruction.consistency import (
    BoneOutliers,
    body_halves,
    find_view_swaps,
    orient_halves,
    reject_bone_outliers,
)
from mocap_studio.reconstruction.filtering import runs
from mocap_studio.reconstruction.keypoints import Keypoints2D, Keypoints3D
from mocap_studio.reconstruction.temporal import choose_over_time

log = logging.getLogger(__name__)

LO_HYPOTHESES = 3  # pair hypotheses refitted from their inliers before the final choice
NOISE_SAMPLE_FRAMES = 64  # frames used to estimate the image noise (spread over the take)
MAX_ERROR_FRACTION = 0.01  # automatic bound of the inlier threshold: this share of the image diagonal
FALLBACK_MAX_ERROR_PX = 15.0  # the bound where no image size is known (triangulate_normalized)

__all__ = [
    "TriangulationConfig",
    "TriangulationDiagnostics",
    "triangulate",
    "triangulate_with_diagnostics",
    "triangulate_normalized",
    "weighted_dlt",
    "fill_gaps",
    "match_rig",
]


@dataclass(frozen=True)
class TriangulationConfig:
    """Settings of the ``triangulate`` stage (the ``[triangulate]`` table of session.toml)."""

    min_cameras: int = 2
    """Never triangulate a joint from fewer inlier cameras than this."""
    min_confidence: float = 0.2
    """Observations with a lower detector confidence are ignored, except as below."""
    candidate_min_confidence: float = 0.02
    """Observations between this confidence and ``min_confidence`` still offer candidate points to the choice
    over time (``temporal``: their camera pairs and rays), scored by the confident views alone; ``min_confidence``
    turns it off. On the studio's crowd takes (five, three performers each) body MPJPE 25.0 -> 24.4 mm on
    average (README, "Several people in one take"); ten lone-performer takes are unchanged to 0.01 mm, the demo's
    14.2 -> 14.1."""
    weak_view_weight: float = 0.0
    """The views between ``candidate_min_confidence`` and ``min_confidence`` also score the choice over time's
    candidates, each at this fraction of a trusted view's say (``temporal``); 0 (a lone performer's): they only
    offer candidates. A several-people take's people use ``crowd_weak_view_weight`` instead."""
    crowd_weak_view_weight: float = 0.5
    """``weak_view_weight`` for the people of a several-people take (``[associate] people`` other than 1), whose
    hidden views stay as weak views (``[associate] crop_hidden_confidence``). On the studio's crowd takes, body
    MPJPE per take (seeds 0 / 11 / 7, mean of three performers) 27.7 / 23.5 / 24.9 mm at 0, 27.4 / 23.2 / 24.8 at
    0.3, 26.7 / 23.4 / 24.8 at 0.5, 27.3 / 23.6 at 1 (README, "Several people in one take")."""
    max_reprojection_error_px: float = 0.0
    """Upper bound of the inlier threshold (px): a view farther than this from the point is an outlier. 0: 1 %
    of the largest camera's image diagonal (14.7 px at 1280x720, 22 px on 1080x1920 phones), since detectors'
    disagreement between views grows with the image (a virtual-studio phone take: limbs 36.2 mm from the truth
    with 15 px, 32.3 mm with 22 px)."""
    min_reprojection_error_px: float = 3.0
    """Lower bound of the adaptive inlier threshold, so that a very clean take keeps its inliers."""
    noise_multiplier: float = 4.0
    """Adaptive threshold = this many times the image noise estimated from the take (then bounded)."""
    fix_swaps: bool = True
    """Exchange left and right where the other side fits better: a view's upper or lower body labelled mirrored
    (the person's left called right, as detectors do for runs of frames; found by epipolar distances to the
    other views and a two-state path over the take), then single left/right pairs."""
    orient_halves: bool = True
    """After the mirrored views, choose each body half's orientation over the take (``consistency.orient_halves``):
    where most of a half's views were mirrored at once, the half was triangulated mirrored."""
    temporal: bool = True
    """Choose the limb joints' points over the whole take (Viterbi over candidate points: the robust point,
    every camera pair's, one camera's ray at the segment's length from the parent joint), scored by
    reprojection, segment length and motion: a hidden wrist that two cameras place wrongly in agreement is
    put where the one camera that sees it says. Such a point may rest on one camera."""
    bone_outlier_tolerance: float = 0.3
    """Before gaps are filled and the filter runs, a joint whose rigid segments differ from the take's median
    lengths by more than this fraction (and 5 cm) is set missing, and counted in the report."""
    refine: bool = False
    """Gauss-Newton refinement of each point on the pixel reprojection error (Huber-weighted). Off by
    default: on the benchmark scene the depth-weighted DLT is within 0.3 % of it, in 25 % less time."""
    weight_by_confidence: bool = True
    """Weight each view by its detector confidence in the least-squares solves."""
    max_gap_frames: int = 10
    """Gaps of at most this many frames are interpolated linearly; longer gaps stay missing."""
    chunk_frames: int = 256
    """Frames processed at once (bounds memory: about 40 MB per 256 frames at 33 joints, 8 cameras)."""

    def __post_init__(self) -> None:
        if self.min_cameras < 2:
            raise ValueError(f"min_cameras must be at least 2, got {self.min_cameras}")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if not (0.0 <= self.weak_view_weight <= 1.0 and 0.0 <= self.crowd_weak_view_weight <= 1.0):
            raise ValueError(f"weak_view_weight and crowd_weak_view_weight must be in [0, 1] (a fraction of a trusted "
                             f"view's say), got {self.weak_view_weight} and {self.crowd_weak_view_weight}")
        if not 0 <= self.candidate_min_confidence <= self.min_confidence:
            raise ValueError(f"candidate_min_confidence must be in [0, min_confidence = {self.min_confidence}], got "
                             f"{self.candidate_min_confidence}")
        if self.min_reprojection_error_px <= 0 or (
                self.max_reprojection_error_px and self.min_reprojection_error_px > self.max_reprojection_error_px):
            raise ValueError("need 0 < min_reprojection_error_px <= max_reprojection_error_px (or 0: automatic)")
        if self.max_gap_frames < 0 or self.chunk_frames < 1:
            raise ValueError("max_gap_frames must be >= 0 and chunk_frames >= 1")


@dataclass(frozen=True, eq=False)
class TriangulationDiagnostics:
    """What triangulation found, for the stage report.

    residual_px: (C, T, J) reprojection error of each used view in pixels, NaN for views not used.
    swapped: (C, T, J) bool, observations exchanged with their left/right mirror.
    threshold_px: the inlier threshold used. noise_px: the image noise estimated from the inliers.
    long_gaps: (joint name, first frame, frame count) of gaps left missing.
    """

    residual_px: np.ndarray
    swapped: np.ndarray
    threshold_px: float
    noise_px: float
    long_gaps: tuple[tuple[str, int, int], ...] = field(default=())
    view_swapped: np.ndarray | None = None
    """(C, T) bool: frames in which a whole view was labelled mirrored (and fixed)."""
    bone_outliers: BoneOutliers | None = None
    """Joints removed for segment lengths far from the take's, with the raw length variation."""
    retimed: np.ndarray | None = None
    """(T, J) bool: limb points re-chosen over time (see ``TriangulationConfig.temporal``)."""


# --------------------------------------------------------------------------------------------------
# Linear algebra on batches of 3x3 systems
# --------------------------------------------------------------------------------------------------
def _solve3(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve M x = b for symmetric (..., 3, 3) M by cofactors; NaN where M is (near) singular.

    Closed form because numpy's batched solve pays a per-matrix overhead and raises on one bad matrix.
    """
    a, bb, c = M[..., 0, 0], M[..., 0, 1], M[..., 0, 2]
    d, e, f = M[..., 1, 1], M[..., 1, 2], M[..., 2, 2]
    c00 = d * f - e * e
    c01 = c * e - bb * f
    c02 = bb * e - c * d
    c11 = a * f - c * c
    c12 = bb * c - a * e
    c22 = a * d - bb * bb
    det = a * c00 + bb * c01 + c * c02
    scale = np.maximum(np.abs(a) + np.abs(d) + np.abs(f), 1e-300) ** 3
    ok = np.abs(det) > 1e-12 * scale
    with np.errstate(invalid="ignore", divide="ignore"):
        inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), np.nan)
    x0 = c00 * b[..., 0] + c01 * b[..., 1] + c02 * b[..., 2]
    x1 = c01 * b[..., 0] + c11 * b[..., 1] + c12 * b[..., 2]
    x2 = c02 * b[..., 0] + c12 * b[..., 1] + c22 * b[..., 2]
    return np.stack([x0, x1, x2], -1) * inv_det[..., None]


def _dlt_terms(extrinsics: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-observation normal-equation terms of the DLT with the homogeneous coordinate fixed to 1.

    extrinsics (C, 3, 4) ``[R | t]``; xy (N, C, 2) normalized coordinates -> M (N, C, 9) (row-major 3x3),
    b (N, C, 3) such that the weighted solution is ``solve(sum_c w M, sum_c w b)``. NaN observations give
    zero terms.
    """
    P = extrinsics[None]  # (1, C, 3, 4)
    row_x = xy[..., 0:1] * P[..., 2, :] - P[..., 0, :]  # (N, C, 4)
    row_y = xy[..., 1:2] * P[..., 2, :] - P[..., 1, :]
    M = row_x[..., :3, None] * row_x[..., None, :3] + row_y[..., :3, None] * row_y[..., None, :3]
    b = -(row_x[..., :3] * row_x[..., 3:] + row_y[..., :3] * row_y[..., 3:])
    bad = ~np.isfinite(xy).all(-1)
    M[bad] = 0.0
    b[bad] = 0.0
    return M.reshape(M.shape[:-2] + (9,)), b


def _weighted_solve(M: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Solve the summed normal equations: M (N, C, 9), b (N, C, 3), w (N, C) row weights squared -> (N, 3)."""
    Ms = np.matmul(w[:, None, :], M)[:, 0].reshape(-1, 3, 3)
    bs = np.matmul(w[:, None, :], b)[:, 0]
    return _solve3(Ms, bs)


def weighted_dlt(extrinsics: np.ndarray, xy: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted linear triangulation. extrinsics (C, 3, 4) ``[R | t]``, xy (C, N, 2) undistorted
    normalized coordinates (NaN where not seen), weights (C, N) (0 drops a view) -> points (N, 3), NaN
    where fewer than two views have weight."""
    extrinsics, xy, weights = _check_dlt_inputs(extrinsics, xy, weights)
    xy = xy.transpose(1, 0, 2)
    M, b = _dlt_terms(extrinsics, xy)
    # row weights enter the normal equations squared
    w = np.where(np.isfinite(xy).all(-1), weights.T, 0.0) ** 2
    X = _weighted_solve(M, b, w)
    X[(w > 0).sum(1) < 2] = np.nan
    return X


def _check_dlt_inputs(extrinsics, xy, weights):
    extrinsics = np.asarray(extrinsics, float)
    xy = np.asarray(xy, float)
    weights = np.asarray(weights, float)
    if extrinsics.ndim != 3 or extrinsics.shape[1:] != (3, 4):
        raise ValueError(f"extrinsics must have shape (C, 3, 4), got {extrinsics.shape}")
    C = extrinsics.shape[0]
    if xy.ndim != 3 or xy.shape[0] != C or xy.shape[2] != 2:
        raise ValueError(f"xy must have shape ({C}, N, 2), got {xy.shape}")
    if weights.shape != xy.shape[:2]:
        raise ValueError(f"weights must have shape {xy.shape[:2]}, got {weights.shape}")
    return extrinsics, xy, weights


def _to_cameras(extrinsics: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Points X (..., 3) in every camera's coordinates (..., C, 3), as one BLAS product."""
    C = extrinsics.shape[0]
    A = extrinsics[:, :, :3].transpose(2, 0, 1).reshape(3, 3 * C)  # column block c is R_c^T
    cam = (X.reshape(-1, 3) @ A).reshape(X.shape[:-1] + (C, 3))
    return cam + extrinsics[:, :, 3]


def _pixel_errors(extrinsics, focal, X, xy):
    """Reprojection error in (undistorted) pixels. X (N, H, 3), xy (N, C, 2) -> (N, H, C); inf behind a
    camera or where not observed."""
    cam = _to_cameras(extrinsics, np.nan_to_num(X, nan=0.0))  # (N, H, C, 3)
    z = cam[..., 2]
    front = z > 1e-6
    z = np.where(front, z, 1.0)
    dx = cam[..., 0] / z - xy[:, None, :, 0]
    dy = cam[..., 1] / z - xy[:, None, :, 1]
    err = np.sqrt(dx * dx + dy * dy) * focal
    ok = front & np.isfinite(err) & np.isfinite(X).all(-1)[..., None]
    return np.where(ok, err, np.inf)


# --------------------------------------------------------------------------------------------------
# Robust triangulation of a batch of points (point-major layout: N points, then C cameras)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Batch:
    """Observations of N points: xy (N, C, 2) normalized, conf (N, C), valid (N, C)."""

    xy: np.ndarray
    conf: np.ndarray
    valid: np.ndarray


def _solve_weighted(extrinsics, terms, batch: _Batch, use: np.ndarray, weight_by_conf: bool, X_prev=None):
    """DLT from the views in ``use`` (N, C); rows weighted by confidence and 1/depth of X_prev so the
    algebraic error approximates the image error."""
    M, b = terms
    w = use * (batch.conf if weight_by_conf else 1.0)
    if X_prev is not None:
        z = _to_cameras(extrinsics, np.nan_to_num(X_prev))[..., 2]
        w = w / np.where(z > 1e-6, z, np.inf)
    X = _weighted_solve(M, b, w**2)
    X[use.sum(1) < 2] = np.nan
    return X


def _camera_pairs(C: int) -> np.ndarray:
    return np.array(list(itertools.combinations(range(C), 2)), dtype=int).reshape(-1, 2)


def hypothesis_pairs(extrinsics: np.ndarray, budget: int) -> np.ndarray:
    """A well-spread subset of camera pairs (H, 2) for the first hypotheses: pairs whose optical axes are
    closest to perpendicular (best conditioned), each camera used about equally often.

    With 10 % outlier views, ``budget`` = C + 2 pairs leave about one point in a thousand with no clean
    pair; those points are retried with every pair.
    """
    C = extrinsics.shape[0]
    pairs = _camera_pairs(C)
    if len(pairs) <= budget:
        return pairs
    axes = extrinsics[:, 2, :3]  # optical axes in world coordinates (rows of R)
    sine = np.linalg.norm(np.cross(axes[pairs[:, 0]], axes[pairs[:, 1]]), axis=-1)
    order = np.argsort(-sine, kind="stable")
    cap = int(np.ceil(2 * budget / C))
    count = np.zeros(C, int)
    chosen: list[int] = []
    for k in order:
        a, b = pairs[k]
        if len(chosen) < budget and max(count[a], count[b]) < cap:
            chosen.append(int(k))
            count[a] += 1
            count[b] += 1
    for k in order:  # top up if the cap left the budget unfilled
        if len(chosen) >= budget:
            break
        if int(k) not in chosen:
            chosen.append(int(k))
    return pairs[np.sort(chosen)]


def _best_pair_hypothesis(extrinsics, focal, terms, batch: _Batch, threshold: float, pairs) -> np.ndarray:
    """Inlier views (N, C) of the best two-view hypothesis per point (MSAC over the camera ``pairs``)."""
    M, b = terms
    N, C = batch.valid.shape
    Xh = _solve3(
        (M[:, pairs[:, 0]] + M[:, pairs[:, 1]]).reshape(N, -1, 3, 3), b[:, pairs[:, 0]] + b[:, pairs[:, 1]]
    )  # (N, H, 3)
    pair_ok = batch.valid[:, pairs[:, 0]] & batch.valid[:, pairs[:, 1]]  # (N, H)
    Xh[~pair_ok] = np.nan
    err = _pixel_errors(extrinsics, focal, Xh, batch.xy)  # (N, H, C)
    cost = np.minimum(err, threshold) ** 2
    # the pair itself must fit, or the hypothesis is a degenerate (behind-camera) solution
    H = len(pairs)
    own_a = err[:, np.arange(H), pairs[:, 0]]
    own_b = err[:, np.arange(H), pairs[:, 1]]
    fits = pair_ok & (own_a < threshold) & (own_b < threshold)
    total = np.where(fits, cost.sum(-1), np.inf)  # (N, H)
    # local optimisation: a two-view point carries the noise of two views, so the best raw hypothesis is
    # not always the best after a refit; refit the top few from their inliers and score again
    K = min(LO_HYPOTHESES, total.shape[1])
    top = np.argpartition(total, K - 1, axis=1)[:, :K] if total.shape[1] > K else np.argsort(total, axis=1)
    rows = np.arange(N)[:, None]
    cand = batch.valid[:, None, :] & (err[rows, top] < threshold)  # (N, K, C)
    w = cand.astype(float).reshape(N * K, C)
    Xk = _weighted_solve(np.repeat(M, K, axis=0), np.repeat(b, K, axis=0), w).reshape(N, K, 3)
    Xk[(cand.sum(-1) < 2) | ~np.isfinite(total[rows, top])] = np.nan
    err_k = _pixel_errors(extrinsics, focal, Xk, batch.xy)  # (N, K, C)
    cost_k = (np.minimum(err_k, threshold) ** 2).sum(-1)
    total_k = np.where(np.isfinite(Xk).all(-1), cost_k, np.inf)
    best = np.argmin(total_k, axis=1)
    best_err = err_k[np.arange(N), best]  # (N, C)
    found = np.isfinite(total_k[np.arange(N), best])
    return batch.valid & (best_err < threshold) & found[:, None]


def _robust_points(extrinsics, focal, batch: _Batch, threshold: float, config: TriangulationConfig):
    """Points (N, 3), inlier views (N, C) and their pixel residuals (N, C) for one batch."""
    terms = _dlt_terms(extrinsics, batch.xy)
    C = extrinsics.shape[0]
    first_pairs = hypothesis_pairs(extrinsics, C + 2)
    inliers = _best_pair_hypothesis(extrinsics, focal, terms, batch, threshold, first_pairs)
    # retry with every pair where the subset found no convincing consensus (all its pairs contaminated)
    n_valid, n_in = batch.valid.sum(1), inliers.sum(1)
    retry = (n_valid >= 3) & ((n_in < 3) | (2 * n_in < n_valid))
    if retry.any() and len(_camera_pairs(C)) > C + 2:
        sub = _Batch(batch.xy[retry], batch.conf[retry], batch.valid[retry])
        inliers[retry] = _best_pair_hypothesis(
            extrinsics, focal, (terms[0][retry], terms[1][retry]), sub, threshold, _camera_pairs(C)
        )
    X = _solve_weighted(extrinsics, terms, batch, inliers, config.weight_by_confidence)
    for _ in range(2):
        err = _pixel_errors(extrinsics, focal, X[:, None], batch.xy)[:, 0]  # (N, C)
        new = batch.valid & (err < threshold)
        # keep the previous set where re-selection would fall below two views
        keep = new.sum(1) >= 2
        inliers = np.where(keep[:, None], new, inliers)
        X = _solve_weighted(extrinsics, terms, batch, inliers, config.weight_by_confidence, X)
    if config.refine:
        X = _refine(extrinsics, focal, batch, inliers, X, threshold, config.weight_by_confidence)
    err = _pixel_errors(extrinsics, focal, X[:, None], batch.xy)[:, 0]
    inliers &= err < threshold
    return X, inliers, np.where(inliers, err, np.nan)


def _refine(extrinsics, focal, batch: _Batch, use, X, threshold, weight_by_conf, iterations: int = 3):
    """Gauss-Newton on the pixel reprojection error with Huber weights (scale threshold / 3)."""
    R = extrinsics[:, :, :3]  # (C, 3, 3)
    huber = threshold / 3.0
    base = use * (batch.conf if weight_by_conf else 1.0)
    ok = np.isfinite(X).all(-1) & (use.sum(1) >= 2)
    X = np.where(ok[:, None], X, 0.0)
    obs = np.nan_to_num(batch.xy)
    for _ in range(iterations):
        cam = _to_cameras(extrinsics, X)  # (N, C, 3)
        front = cam[..., 2] > 1e-6
        z = np.where(front, cam[..., 2], 1.0)
        p = cam[..., :2] / z[..., None]
        r = (p - obs) * focal[:, None]  # (N, C, 2) pixels
        rn = np.sqrt((r * r).sum(-1))
        w = base * front * np.where(rn > huber, huber / np.maximum(rn, 1e-12), 1.0)
        # d p / d X = (1/z) (R[:2] - p R[2]), in pixels
        J = (R[None, :, :2, :] - p[..., None] * R[None, :, 2:3, :]) * (focal / z)[..., None, None]
        Jw = J * w[..., None, None]  # (N, C, 2, 3)
        Hm = np.matmul(Jw.reshape(len(X), -1, 3).transpose(0, 2, 1), J.reshape(len(X), -1, 3))
        g = np.matmul(Jw.reshape(len(X), -1, 3).transpose(0, 2, 1), r.reshape(len(X), -1, 1))[..., 0]
        step = _solve3(Hm, g)
        good = ok & np.isfinite(step).all(-1)
        X[good] -= step[good]
    X[~ok] = np.nan
    return X


def triangulate_normalized(
    extrinsics: np.ndarray,
    focal_px: np.ndarray,
    xy: np.ndarray,
    confidence: np.ndarray,
    config: TriangulationConfig | None = None,
    threshold_px: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust triangulation of N points from undistorted normalized observations.

    extrinsics (C, 3, 4) ``[R | t]``; focal_px (C,) pixels per normalized unit (to express errors in
    pixels); xy (C, N, 2), NaN where not seen; confidence (C, N).
    Returns points (N, 3) (NaN where fewer than ``min_cameras`` inliers), inliers (C, N) bool and the
    inliers' pixel residuals (C, N) (NaN elsewhere). ``threshold_px`` overrides the inlier threshold.
    """
    config = config or TriangulationConfig()
    extrinsics, xy, confidence = _check_dlt_inputs(extrinsics, xy, confidence)
    focal_px = np.asarray(focal_px, float).reshape(-1)
    if focal_px.shape != (extrinsics.shape[0],):
        raise ValueError(f"focal_px must have shape ({extrinsics.shape[0]},), got {focal_px.shape}")
    threshold = (config.max_reprojection_error_px or FALLBACK_MAX_ERROR_PX) if threshold_px is None \
        else float(threshold_px)
    xy, confidence = xy.transpose(1, 0, 2), confidence.T
    valid = np.isfinite(xy).all(-1) & (confidence >= config.min_confidence) & (confidence > 0)
    batch = _Batch(np.where(valid[..., None], xy, np.nan), np.where(valid, confidence, 0.0), valid)
    X, inliers, residual = _robust_points(extrinsics, focal_px, batch, threshold, config)
    enough = inliers.sum(1) >= config.min_cameras
    X[~enough] = np.nan
    inliers &= enough[:, None]
    residual[~inliers] = np.nan
    return X, inliers.T, residual.T


# --------------------------------------------------------------------------------------------------
# The stage function
# --------------------------------------------------------------------------------------------------
def match_rig(rig: CameraRig, camera_names: tuple[str, ...], source: str = "keypoints") -> CameraRig:
    """The rig's cameras in the order of ``camera_names``; a clear error for cameras it lacks."""
    missing = [n for n in camera_names if n not in rig]
    if missing:
        raise KeyError(
            f"{source} has camera(s) {missing} that the calibration lacks (calibrated: {list(rig.names)}); "
            "calibrate them or drop them from the session's camera list"
        )
    return rig.subset(camera_names)


def _chunks(T: int, size: int):
    for start in range(0, T, size):
        yield slice(start, min(T, start + size))


def _run_all(extrinsics, focal, xy, conf, config, threshold):
    """Triangulate (C, T, J, ...) observations chunk by chunk -> X (T, J, 3), inliers, residuals (C, T, J)."""
    C, T, J = conf.shape
    X = np.full((T, J, 3), np.nan)
    inl = np.zeros((C, T, J), bool)
    res = np.full((C, T, J), np.nan)
    for sl in _chunks(T, config.chunk_frames):
        n = (sl.stop - sl.start) * J
        Xc, ic, rc = triangulate_normalized(
            extrinsics, focal, xy[:, sl].reshape(C, n, 2), conf[:, sl].reshape(C, n), config, threshold
        )
        X[sl] = Xc.reshape(-1, J, 3)
        inl[:, sl] = ic.reshape(C, -1, J)
        res[:, sl] = rc.reshape(C, -1, J)
    return X, inl, res


def _estimate_noise(residual: np.ndarray) -> float:
    """Image noise sigma (px) from inlier residual norms (C, T, J): the median of a 2D Gaussian's norm is
    1.1774 sigma. A point fitted to n views leaves 2n - 3 of its 2n degrees of freedom in the residuals, so
    each residual is scaled by sqrt(2n / (2n - 3)) first (two views alone shrink residuals to half the noise,
    which would set the inlier threshold too tight on takes seen mostly by two cameras). NaN without residuals.
    """
    ok = np.isfinite(residual)
    n = ok.sum(0, keepdims=True).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.sqrt(2 * n / np.maximum(2 * n - 3, 1e-9))
    r = (residual * scale)[ok & (n >= 2)]
    return float(np.median(r) / 1.1774) if r.size else float("nan")


def _fix_swaps(extrinsics, focal, xy, conf, X, pairs, threshold):
    """Exchange left/right observations per view where the mirrored assignment fits the 3D points better.

    xy (C, T, J, 2), conf (C, T, J), X (T, J, 3) -> (xy, conf, swapped (C, T, J) bool)."""
    if not pairs:
        return xy, conf, np.zeros(conf.shape, bool)
    left, right = np.array(pairs).T
    cam = np.moveaxis(_to_cameras(extrinsics, np.nan_to_num(X)), -2, 0)  # (C, T, J, 3)
    z = np.where(np.isfinite(X).all(-1)[None], cam[..., 2], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        proj = cam[..., :2] / z[..., None]

    def err(obs, pts, depth):
        e = np.linalg.norm(obs - pts, axis=-1) * focal[:, None, None]
        with np.errstate(invalid="ignore"):
            return np.where((depth > 1e-6) & np.isfinite(e), np.minimum(e, threshold), threshold)

    xl, xr, pl, pr = xy[:, :, left], xy[:, :, right], proj[:, :, left], proj[:, :, right]
    zl, zr = z[:, :, left], z[:, :, right]
    seen_l, seen_r = np.isfinite(xl).all(-1), np.isfinite(xr).all(-1)
    keep_l, keep_r = err(xl, pl, zl), err(xr, pr, zr)
    swap_l, swap_r = err(xl, pr, zr), err(xr, pl, zl)
    # swap only where the current labels are wrong (an inlier test fails) and the exchanged ones both pass;
    # symmetric poses (hands together), where both labelings fit, are left alone
    fits_swapped = (~seen_l | (swap_l < threshold)) & (~seen_r | (swap_r < threshold)) & (seen_l | seen_r)
    wrong_now = (seen_l & (keep_l >= threshold)) | (seen_r & (keep_r >= threshold))
    do = fits_swapped & wrong_now & (swap_l + swap_r < keep_l + keep_r)
    swapped = np.zeros(conf.shape, bool)
    swapped[:, :, left] = do
    swapped[:, :, right] = do
    xy, conf = xy.copy(), conf.copy()
    lx, rx = xy[:, :, left].copy(), xy[:, :, right].copy()
    lc, rc = conf[:, :, left].copy(), conf[:, :, right].copy()
    xy[:, :, left] = np.where(do[..., None], rx, lx)
    xy[:, :, right] = np.where(do[..., None], lx, rx)
    conf[:, :, left] = np.where(do, rc, lc)
    conf[:, :, right] = np.where(do, lc, rc)
    return xy, conf, swapped


COLLAPSE_M = 0.05  # a left and right joint closer than this (and usually far apart) have collapsed


def _separate_collapsed(extrinsics, focal, xy, conf, X, inl, res, pairs, threshold, config) -> None:
    """Re-triangulate left/right joints that landed on the same 3D point, without the ambiguous views.

    A detector that puts both labels on one limb (the other hidden) in several views makes both joints
    triangulate to that limb. Where a pair that is normally apart (median separation over the take above
    0.15 m) comes closer than COLLAPSE_M, each side is triangulated again from the views where its two
    labels are distinct. Views where they coincide are left out; if too few views remain (hands really
    together, seen alike from everywhere) the point stays as it was. Updates X, inl, res in place.
    """
    if not pairs:
        return
    left, right = np.array(pairs).T
    sep = np.linalg.norm(X[:, left] - X[:, right], axis=-1)  # (T, K)
    finite = np.isfinite(sep)
    typical = np.array([np.median(sep[finite[:, k], k]) if finite[:, k].any() else 0.0 for k in range(len(left))])
    with np.errstate(invalid="ignore"):
        collapsed = (sep < COLLAPSE_M) & (typical > 3 * COLLAPSE_M)[None]
    if not collapsed.any():
        return
    t_idx, k_idx = np.nonzero(collapsed)
    gap_px = np.linalg.norm(xy[:, t_idx, left[k_idx]] - xy[:, t_idx, right[k_idx]], axis=-1) * focal[:, None]
    with np.errstate(invalid="ignore"):
        distinct = gap_px >= threshold  # (C, n): views that tell the two sides apart
    for side in (left, right):
        j_idx = side[k_idx]
        c = np.where(distinct, conf[:, t_idx, j_idx], 0.0)
        Xs, ins, rs = triangulate_normalized(extrinsics, focal, xy[:, t_idx, j_idx], c, config, threshold)
        ok = np.isfinite(Xs).all(-1)
        X[t_idx[ok], j_idx[ok]] = Xs[ok]
        inl[:, t_idx[ok], j_idx[ok]] = ins[:, ok]
        res[:, t_idx[ok], j_idx[ok]] = rs[:, ok]
    log.info("re-triangulated %d left/right pair(s) that had collapsed onto one limb", len(t_idx))


def _update_inliers(extrinsics, focal, xy, seen, X, inl, res, mask, threshold) -> None:
    """Inlier views and residuals (C, T, J) of the points at ``mask`` (T, J), in place."""
    t_idx, j_idx = np.nonzero(mask)
    P = X[t_idx, j_idx]  # (n, 3)
    cam = np.einsum("cij,nj->cni", extrinsics[:, :, :3], P) + extrinsics[:, None, :, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        e = focal[:, None] * np.linalg.norm(cam[..., :2] / cam[..., 2:3] - xy[:, t_idx, j_idx], axis=-1)
    ok = seen[:, t_idx, j_idx] & (cam[..., 2] > 0) & (e < threshold) & np.isfinite(P).all(-1)[None]
    inl[:, t_idx, j_idx] = ok
    res[:, t_idx, j_idx] = np.where(ok, e, np.nan)


def fill_gaps(
    xyz: np.ndarray, max_gap_frames: int
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
    """Interpolate missing runs of at most ``max_gap_frames`` frames between two known frames.

    xyz (T, J, D) -> (filled (T, J, D), interpolated (T, J) bool, long gaps [(joint, first frame, length)]).
    Gaps at the start or end of the take are never filled (nothing to interpolate towards).
    """
    xyz = np.asarray(xyz, float)
    if xyz.ndim != 3:
        raise ValueError(f"xyz must have shape (T, J, D), got {xyz.shape}")
    T, J, _ = xyz.shape
    out = xyz.copy()
    interpolated = np.zeros((T, J), bool)
    long_gaps: list[tuple[int, int, int]] = []
    missing_all = ~np.isfinite(xyz).all(-1)
    frames = np.arange(T)
    for j in np.flatnonzero(missing_all.any(0)):
        missing = missing_all[:, j]
        if missing.all():
            long_gaps.append((int(j), 0, T))
            continue
        known = ~missing
        for s, e in runs(missing):
            if s == 0 or e == T or e - s > max_gap_frames:
                long_gaps.append((int(j), int(s), int(e - s)))
                continue
            for d in range(xyz.shape[2]):
                out[s:e, j, d] = np.interp(frames[s:e], frames[known], xyz[known, j, d])
            interpolated[s:e, j] = True
    return out, interpolated, long_gaps


def triangulate_with_diagnostics(
    rig: CameraRig, keypoints: Keypoints2D, config: TriangulationConfig | None = None
) -> tuple[Keypoints3D, TriangulationDiagnostics]:
    """Triangulate 2D keypoints (C, T, J) into :class:`Keypoints3D` (T, J, 3) and report how it went.

    Cameras are matched to the rig by name. See the module docstring for the steps.
    """
    config = config or TriangulationConfig()
    rig = match_rig(rig, keypoints.camera_names)
    C, T, J = keypoints.confidence.shape
    if C < config.min_cameras:
        raise ValueError(f"{C} camera(s) in the keypoints but min_cameras is {config.min_cameras}")
    xy = rig.undistort_points(keypoints.xy)  # (C, T, J, 2) normalized
    conf = keypoints.confidence
    extrinsics = np.stack([np.hstack([c.R, c.t[:, None]]) for c in rig.cameras])
    focal = np.array([np.sqrt(c.K[0, 0] * c.K[1, 1]) for c in rig.cameras])

    # estimate the image noise on a sample of frames with the generous threshold, then adapt the threshold
    sample = np.unique(np.linspace(0, T - 1, min(T, NOISE_SAMPLE_FRAMES)).round().astype(int))
    wide = config.max_reprojection_error_px or MAX_ERROR_FRACTION * max(float(np.hypot(*c.size)) for c in rig.cameras)
    _, _, res = _run_all(extrinsics, focal, xy[:, sample], conf[:, sample], config, wide)
    noise = _estimate_noise(res)
    threshold = wide
    if np.isfinite(noise):
        adaptive = config.noise_multiplier * noise
        threshold = float(np.clip(adaptive, config.min_reprojection_error_px, threshold))
    X, inl, res = _run_all(extrinsics, focal, xy, conf, config, threshold)
    swapped = np.zeros((C, T, J), bool)
    view_swapped = np.zeros((C, T), bool)
    if config.fix_swaps:
        fmt = keypoints.format
        perm, pairs = fmt.flip_permutation, fmt.left_right_pairs
        halves = body_halves(fmt.joints, pairs)
        ideal = np.stack([cam.undistort_pixels(keypoints.xy[c]) for c, cam in enumerate(rig.cameras)])
        half_swapped = find_view_swaps(ideal, lambda a, b: fundamental_matrix(rig.cameras[a], rig.cameras[b]), perm,
                                       halves, 3 * threshold)
        view_swapped = half_swapped.any(-1)
        if view_swapped.any():
            log.info("fixed %d mirrored view(s) of a frame (left and right labelled the other way round)",
                     int(view_swapped.sum()))
            xy = np.where(half_swapped[..., None], xy[:, :, perm], xy)
            conf = np.where(half_swapped, conf[:, :, perm], conf)
            swapped |= half_swapped
            X, inl, res = _run_all(extrinsics, focal, xy, conf, config, threshold)
        xy, conf, pair_swapped = _fix_swaps(extrinsics, focal, xy, conf, X, pairs, threshold)
        redo = pair_swapped.any(0)  # (T, J): points whose observations changed
        if redo.any():
            log.info("fixed %d left/right swapped observations", int(pair_swapped.sum() // 2))
            t_idx, j_idx = np.nonzero(redo)
            Xr, ir, rr = triangulate_normalized(
                extrinsics, focal, xy[:, t_idx, j_idx], conf[:, t_idx, j_idx], config, threshold
            )
            X[t_idx, j_idx], inl[:, t_idx, j_idx], res[:, t_idx, j_idx] = Xr, ir, rr
        swapped ^= pair_swapped
        _separate_collapsed(extrinsics, focal, xy, conf, X, inl, res, pairs, threshold, config)
        if config.orient_halves and len(halves) == 2:
            seen = np.isfinite(xy).all(-1) & (conf >= config.min_confidence) & (conf > 0)
            turned = orient_halves(X, fmt.joints, pairs, swapped, seen, _frame_rate(keypoints.frame_times))
            if turned.any():
                flip = np.zeros((T, J), bool)
                for h, group in enumerate(halves):
                    flip[np.ix_(turned[:, h], group)] = True
                log.info("turned %d half-bodies of a frame that most views had labelled mirrored",
                         int(turned.sum()))
                # every view read the other way round: the points trade places with their mirrors
                xy = np.where(flip[None, ..., None], xy[:, :, perm], xy)
                conf = np.where(flip[None], conf[:, :, perm], conf)
                X = np.where(flip[..., None], X[:, perm], X)
                inl, res = np.where(flip[None], inl[:, :, perm], inl), np.where(flip[None], res[:, :, perm], res)
                swapped ^= flip[None]
                view_swapped = swapped.any(-1)
    retimed = np.zeros((T, J), bool)
    if config.temporal:
        seen = np.isfinite(xy).all(-1) & (conf >= config.min_confidence) & (conf > 0)
        weak = np.isfinite(xy).all(-1) & (conf >= config.candidate_min_confidence) & (conf > 0) & ~seen
        choice = choose_over_time(X, xy, seen, extrinsics, focal, threshold, keypoints.format.joints,
                                  keypoints.format.flip_permutation, weak if weak.any() else None,
                                  config.weak_view_weight)
        retimed = choice.changed
        if retimed.any():
            X = choice.xyz
            _update_inliers(extrinsics, focal, xy, seen, X, inl, res, retimed, threshold)
            log.info("re-chose %d limb point(s) over time", int(retimed.sum()))
    X, outliers = reject_bone_outliers(X, keypoints.format.rigid_segments, keypoints.format.joints,
                                       config.bone_outlier_tolerance)
    inl &= ~outliers.removed[None]
    if outliers.removed.any():
        log.info("removed %d joint(s) of a frame whose segment lengths were far from the take's",
                 int(outliers.removed.sum()))

    # report errors in real pixels (with distortion) against the original observations
    observed = np.where(swapped[..., None], np.nan, keypoints.xy)
    mirrored = _swap_back(keypoints.xy, keypoints.format.flip_permutation)
    observed_swapped = np.where(swapped[..., None], mirrored, np.nan)
    observed = np.where(np.isfinite(observed), observed, observed_swapped)
    pixel_res = np.linalg.norm(rig.project(X) - observed, axis=-1)  # (C, T, J)
    pixel_res = np.where(inl, pixel_res, np.nan)
    counts = inl.sum(0)
    error = np.where(counts > 0, np.where(inl, pixel_res, 0.0).sum(0) / np.maximum(counts, 1), np.nan)
    error = np.where(np.isfinite(X).all(-1), error, np.nan)

    filled, interpolated, gaps = fill_gaps(X, config.max_gap_frames)
    names = keypoints.format.joints
    long_gaps = tuple((names[j], s, n) for j, s, n in gaps)
    if long_gaps:
        log.info("%d gap(s) longer than %d frames left missing", len(long_gaps), config.max_gap_frames)
    result = Keypoints3D(
        filled, error, inl.transpose(1, 2, 0), keypoints.camera_names, keypoints.skeleton,
        keypoints.frame_times, interpolated,
    )
    return result, TriangulationDiagnostics(pixel_res, swapped, threshold, noise, long_gaps, view_swapped, outliers,
                                            retimed)


def _frame_rate(times: np.ndarray) -> float:
    """Frames per second from the frame times; 30 where they are frame indices (times left at their default)."""
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    fps = 1.0 / step if step > 0 else 0.0
    return fps if 5.0 <= fps <= 10000.0 else 30.0


def _swap_back(xy: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Observations with each joint taken from its mirror (what a swapped view's slot now holds)."""
    return xy[:, :, perm]


def triangulate(
    rig: CameraRig, keypoints: Keypoints2D, config: TriangulationConfig | None = None
) -> Keypoints3D:
    """Triangulate 2D keypoints (C, T, J, 2) into :class:`Keypoints3D` (T, J, 3); cameras matched by name."""
    return triangulate_with_diagnostics(rig, keypoints, config)[0]
