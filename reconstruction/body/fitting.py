"""Fit a body model to a take: one shape for the whole take, a pose and a translation per frame.

Input: :class:`~reconstruction.keypoints.Keypoints3D` (metres, Z-up world, floor at Z = 0), optionally
2D keypoints and the camera rig for reprojection terms. Output: :class:`BodyMotion`.

How (all on the CPU, in torch, float64):
0. Prepare the keypoints: a detector's left/right swaps of a foot, knee, hand or elbow that triangulation
   passed on are undone (Viterbi over the take: a swap makes both sides jump to each other's place and
   back); isolated outliers are dropped; the 2D keypoints' noise is set from how far the 3D keypoints'
   projections lie from them (a real take's are noisier than the setting: weighting them as if they were
   not makes the 2D and 3D terms fight, and the fit jump between them), and each camera's view of each
   keypoint is weighted by its own noise (its path's distance from itself low-passed).
1. Initialise analytically: the root orientation and translation from the hips and shoulders, then each
   hip, knee, shoulder and elbow from the direction of its bone (a swing that turns the model's bone onto
   the observed one). Pose every frame with the average shape (robust Gauss-Newton, batched over frames),
   then fit the shape jointly with the poses of a subset of frames spread over the take (the shape
   eliminated by a Schur complement), robustly, with a shape prior that keeps weakly observed shape
   parameters near the mean. A detector's surface landmarks (eyes, ears, fingers, heels, toes: "markers")
   are not where the model's definitions put them on every body, so the global shape search scores shapes
   on the joints alone, and the shape is then refined on every keypoint with one offset per marker for the
   take (rigid with its bone, as marker placement is solved in optical mocap), whose prior is set from the
   offsets' own spread. Only the shape is kept.
2. Pose every frame anew with the shape, from the analytic start, with the anatomical joint limits (a knee
   is a hinge that never bends backwards, a foot flexes and rolls within its range and hardly turns about
   the shin, a thigh twists little; a wrist, the neck and the head turn within a cone) and a strong
   temporal term (each frame's rotations pulled towards the midpoint of its neighbours', geodesically,
   solved red-black so neighbours cannot swap; stronger for the parts whose turn keypoints barely tell:
   hands, forearms, feet, head), so that no frame settles a poorly seen part in its other orientation (a
   flip no later pass could undo). The shape is fitted without them: a limit that holds a pose a little
   off would be paid for by the shape.
3. Pose every frame against the raw keypoints, drop keypoints farther than ``outlier_sigmas`` from the
   fit, weight each keypoint by its misfit (a steadily misplaced one, a hand's, pulls as little as it
   tells), low-pass the remaining keypoints and the 2D ones over time (zero-phase Butterworth), and pose
   every frame against them; a frame with a joint far from its neighbours' midpoint (a foot flipped about
   the shin in one frame) is solved again from the midpoint and kept if better.
4. The ground: where the fit's still feet rest (a raised platform's top), the calibrated floor (Z = 0)
   when within ``floor_tolerance_m`` of it. Foot contact: a sole point (heel and two front points of each
   foot) that is low and still is in contact (with hysteresis); each contact is anchored where the fit
   puts it on average, on the ground (plus the point's rest clearance) when within ``floor_tolerance_m``
   of it, and a last pose pass pulls the soles to their anchors (weights ramped in and out, so no jerk at
   touch-down or lift-off) and keeps every sole off the ground.

The fit's figures (:mod:`fit_quality`) say how far the feet, hands and head turn in a frame (flips) and how
smooth the fitted keypoints are against those it read.

Every per-frame pass is a Levenberg-Marquardt with analytic Jacobians (the derivative of a posed point with
respect to a joint's rotation is a cross product with the point's offset from the joint), batched over
frames in windows of ``window`` frames, so memory stays bounded on long takes.

Only the model's ``free_joints`` are posed; the other joints stay at rest relative to their parents, so
the fitting skeleton is the tree of free joints with the skinning weights of fixed joints merged into
their nearest free ancestor (exact for linear blend skinning). The rest state is affine in the model's
blend coefficients, so it is folded through the keypoint regressor once per model and skeleton
(:class:`_Basis`); a new shape then costs one small contraction.

This module is the driver (:func:`fit_sequence`); the parts live beside it: ``fit_config`` (settings, result,
error), ``fit_skeleton`` (the reduced skeleton, its rest state, posing with derivatives), ``fit_solver`` (the
per-frame least squares), ``fit_shape`` (shape search and shape solve), ``fit_signals`` (input checks,
left/right swaps, outliers, low-pass), ``fit_contacts`` (ground and foot contact), ``fit_start`` (the
analytic start) and ``fit_quality`` (flips and smoothness).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from mocap_studio.reconstruction.body.fit_config import BodyMotion, FitConfig, FitError
from mocap_studio.reconstruction.body.fit_contacts import (
    Ground,
    contact_anchors,
    detect_contacts,
    estimate_ground,
    foot_sliding_mm_s,
)
from mocap_studio.reconstruction.body.fit_quality import (
    FLIP_DEG,
    WATCHED,
    derivative_norm_mean,
    flip_figures,
    rotation_steps_deg,
    smoothness_figures,
)
from mocap_studio.reconstruction.body.fit_shape import _shape_search, _solve_shape
from mocap_studio.reconstruction.body.fit_signals import (
    _check_input,
    _drop_temporal_outliers,
    _frame_rate,
    _side_swaps,
    lowpass,
    lowpass_views,
)
from mocap_studio.reconstruction.body.fit_silhouette import ProgressCallback, SilhouetteInput, fit_shape_silhouettes
from mocap_studio.reconstruction.body.fit_skeleton import (
    DT,
    SOLE_POINTS,
    _Basis,
    _coefficients,
    _fit_setup,
    _forward,
    _Reduced,
    _Rest,
    _rest,
)
from mocap_studio.reconstruction.body.fit_solver import _points, _project, _Targets, _windowed, _without_markers
from mocap_studio.reconstruction.body.fit_start import _unwrap_rotvec, initialise
from mocap_studio.reconstruction.body.model import SkinnedBodyModel
from mocap_studio.reconstruction.body.torch_rotations import rotmat_to_rotvec as torch_rotmat_to_rotvec
from mocap_studio.reconstruction.keypoints import Keypoints3D

if TYPE_CHECKING:
    from mocap_studio.calibration.camera import CameraRig
    from mocap_studio.reconstruction.keypoints import Keypoints2D

__all__ = [
    "BodyMotion", "FitConfig", "FitError", "contact_anchors", "detect_contacts", "fit_sequence", "foot_sliding_mm_s",
    "initialise", "lowpass",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# the driver


RAYLEIGH_MEDIAN = math.sqrt(2 * math.log(2))
"""Median of the norm of a 2D vector of unit Gaussian noise per axis."""

MAXWELL_MEDIAN = 1.5382
"""Median of the norm of a 3D vector of unit Gaussian noise per axis."""


def _projection_terms(
    rig: CameraRig, kp2d: Keypoints2D, keypoints: Keypoints3D
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Ideal pinhole matrices (C, 3, 4), undistorted pixels (C, T, K, 2) (0 where missing) and
    confidences (C, T, K) (0 where missing) of the 2D keypoints' cameras found in the rig, by name; and the
    2D noise the 3D keypoints imply (pixels per axis: the median distance of each triangulated keypoint's
    projection from the 2D keypoints triangulation used for it (``keypoints.cameras_used``, by camera
    name), over the Rayleigh median), NaN when there is none.

    Every view is fitted, the ones triangulation left out of a point too (the robust kernel weighs them):
    leaving them out would change the set of views a keypoint is fitted to from frame to frame, a jerk."""
    T, K = keypoints.num_frames, keypoints.num_joints
    if kp2d.num_frames != T or kp2d.num_joints != K:
        raise FitError(f"2D keypoints have {kp2d.num_frames} frames x {kp2d.num_joints} joints; expected {T} x {K}")
    used_by = {name: i for i, name in enumerate(keypoints.camera_names)}
    xyz = np.asarray(keypoints.xyz, dtype=float)
    seen = np.isfinite(xyz).all(-1) & ~np.asarray(keypoints.interpolated)
    mats, uvs, confs, gaps = [], [], [], []
    for ci, name in enumerate(kp2d.camera_names):
        if name not in rig:
            continue
        cam = rig[name]
        uv = cam.undistort_pixels(np.nan_to_num(kp2d.xy[ci], nan=0.0))
        ok = np.isfinite(kp2d.xy[ci]).all(-1) & np.isfinite(uv).all(-1)
        mat = cam.K @ np.hstack([cam.R, cam.t[:, None]])
        both = ok & seen & (np.asarray(keypoints.cameras_used)[..., used_by[name]] if name in used_by else True)
        if both.any():
            cam_pts = xyz[both] @ mat[:, :3].T + mat[:, 3]
            front = cam_pts[:, 2] > 1e-6
            gaps.append(np.linalg.norm(cam_pts[front, :2] / cam_pts[front, 2:] - uv[both][front], axis=-1))
        mats.append(mat)
        uvs.append(np.where(ok[..., None], uv, 0.0))
        confs.append(np.where(ok, np.nan_to_num(kp2d.confidence[ci], nan=0.0), 0.0))
    if not mats:
        raise FitError(f"none of the 2D keypoints' cameras {list(kp2d.camera_names)} is in the rig")
    gap = np.concatenate(gaps) if gaps else np.zeros(0)
    implied = float(np.median(gap) / RAYLEIGH_MEDIAN) if gap.size else math.nan
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=DT)  # noqa: E731
    return t(mats), t(uvs), t(confs), implied


def _filtered_views(
    proj: torch.Tensor | None, uv: torch.Tensor | None, conf: torch.Tensor | None, pts: np.ndarray, fps: float,
    cfg: FitConfig,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The 2D keypoints the low-passed passes fit: those farther than ``outlier_sigmas`` from the fit's
    projection (pts (T, K, 3)) dropped, then low-passed like the 3D keypoints (raw 2D keypoints in a pass
    whose 3D targets are smooth would put their noise back into every frame). (None, None) without views."""
    if proj is None or uv is None or conf is None:
        return None, None
    pix = _project(proj, torch.as_tensor(pts, dtype=DT))[0].numpy()
    resid = np.linalg.norm(pix - uv.numpy(), axis=-1)  # (C, T, K)
    far = resid > cfg.outlier_sigmas * cfg.reprojection_sigma_px
    conf_kept = np.where(far, 0.0, conf.numpy())
    uv_s, conf_s = lowpass_views(uv.numpy(), conf_kept, fps, cfg.cutoff_hz)
    return torch.as_tensor(uv_s, dtype=DT), torch.as_tensor(conf_s, dtype=DT)


def _noise_weights(paths: np.ndarray, seen: np.ndarray, fps: float, cutoff_hz: float, sigma: float) -> np.ndarray:
    """(N,) a weight per keypoint (or per camera's view of one): (sigma / its own noise)^2 where its own
    noise exceeds ``sigma``, else 1. paths (T, N, D) (D = 3: metres, 2: pixels), seen (T, N).

    A keypoint's own noise is told by its path alone (never by the fit, whose misfit while the shape is
    wrong is no noise): the median distance of the path from itself low-passed at ``cutoff_hz`` over the
    frames that see it, scaled to a sigma per axis for white noise (the median of a D-dimensional unit
    Gaussian's norm, and the share of its power above the cut-off). A keypoint a detector places loosely (a
    hand's: its index, pinky and thumb landmarks nearly coincide in real detections) then pulls as little
    as it tells, and the limits and the temporal term hold what it cannot (the hand's turn), instead of its
    noise turning the hand from frame to frame."""
    T, N, D = paths.shape
    if T < 16 or cutoff_hz <= 0 or cutoff_hz >= fps / 2:
        return np.ones(N)
    padded = np.concatenate([paths, np.zeros((T, N, 3 - D))], -1)  # lowpass takes (T, N, 3)
    smooth = lowpass(np.where(seen[..., None], padded, np.nan), fps, cutoff_hz)[..., :D]
    dist = np.linalg.norm(paths - smooth, axis=-1)
    med = np.array([np.median(dist[seen[:, n], n]) if seen[:, n].sum() >= 16 else 0.0 for n in range(N)])
    unit = {2: RAYLEIGH_MEDIAN, 3: MAXWELL_MEDIAN}[D] * math.sqrt(1.0 - 2.0 * cutoff_hz / fps)
    own = np.maximum(med / unit, sigma)
    return (sigma / own) ** 2


def _misfit_weights(resid: np.ndarray, seen: np.ndarray, sigma: float) -> np.ndarray:
    """(K,) a weight per keypoint: (sigma / its misfit)^2 where its misfit exceeds ``sigma``, else 1; its
    misfit is the median of its residuals resid (T, K) (metres, from a fit) over the frames that see it
    (seen (T, K)), scaled to a sigma per axis. A triangulated keypoint may be steady and still misplaced (a
    hand's index, pinky and thumb landmarks nearly coincide in real detections, so the hand's turn they
    tell is wrong but smooth, which :func:`_noise_weights` cannot see): it then pulls as little as it
    tells, and the limits and the temporal term hold the hand's turn. Not used for the shape, whose misfit
    before it is fitted is the shape's, not the keypoint's."""
    med = np.array([np.median(resid[seen[:, k], k]) if seen[:, k].any() else 0.0 for k in range(resid.shape[1])])
    return (sigma / np.maximum(med / MAXWELL_MEDIAN, sigma)) ** 2


def _log_pass(label: str, model: SkinnedBodyModel, red: _Reduced, rest: _Rest, rot: torch.Tensor, trans: torch.Tensor,
              take: _Take) -> None:
    """Debug log of a pass: flips of the feet, hands and head, acceleration of the fitted keypoints, residual."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    posed = _forward(model, red, rest, rot, trans)
    watched = [red.sem[n] for n in WATCHED if n in red.sem]
    steps = rotation_steps_deg(posed.rg[:, watched].numpy()) if len(rot) > 1 else np.zeros((0, len(watched)))
    K = take.target.shape[1]
    pts = posed.pts[:, :K].numpy()
    obs = np.where(take.weight[..., None] > 0, take.target, np.nan)
    resid = np.linalg.norm(pts - take.target, axis=-1)[take.weight > 0]
    logger.debug(
        "%s: steps > %.0f deg: %d %s (max %.0f), accel fit %.1f kp %.1f m/s2, residual median %.1f mm",
        label, FLIP_DEG, int((steps > FLIP_DEG).sum()), (steps > FLIP_DEG).sum(0).tolist(), float(steps.max(initial=0)),
        derivative_norm_mean(np.where(np.isfinite(obs), pts, np.nan), take.fps, 2), derivative_norm_mean(obs, take.fps, 2),
        1000 * float(np.median(resid)) if resid.size else math.nan,
    )


def fit_sequence(
    model: SkinnedBodyModel,
    keypoints: Keypoints3D,
    config: FitConfig | None = None,
    frame_rate: float | None = None,
    rig: CameraRig | None = None,
    keypoints2d: Keypoints2D | None = None,
    silhouettes: SilhouetteInput | None = None,
    progress: ProgressCallback | None = None,
) -> BodyMotion:
    """Fit ``model`` to a take's 3D keypoints (and optionally 2D keypoints seen by ``rig``, and the person's
    masks, ``silhouettes``, whose ``frame_index`` has the keypoints' frames). ``progress``: a stage's progress
    callback, given how far the shape fit on the silhouettes is (its minutes).

    keypoints: (T, K, 3) in a detector skeleton the model supports (NaN: missing); frame_rate defaults to
    the keypoints' frame times; keypoints2d: (C, T, K, 2) of the same skeleton, cameras matched to ``rig``
    by name. Returns a :class:`BodyMotion` with shape (S,), pose_rotvec (T, J, 3), trans (T, 3).
    Raises :class:`FitError` for unusable input (no valid frame, unsupported skeleton).
    """
    cfg = config or FitConfig()
    if not isinstance(keypoints, Keypoints3D):
        raise TypeError(f"keypoints must be a Keypoints3D, got {type(keypoints).__name__}")
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        with torch.no_grad():
            return _fit(model, keypoints, cfg, frame_rate, rig, keypoints2d, silhouettes, progress)
    finally:
        torch.set_num_threads(threads)


@dataclass
class _Take:
    """What every pass of one fit reads: targets (T, K, 3) (0 where missing) and weights (T, K) (0:
    missing or dropped), the 2D terms (None without views), the frame rate, the keypoint names, the frames
    whose left/right keypoints were swapped back, the settings (the 2D noise set from the take) and each
    keypoint's weight for its misfit (K,) (:func:`_misfit_weights`, 1 until a fit tells it)."""

    target: np.ndarray
    weight: np.ndarray
    proj: torch.Tensor | None
    uv: torch.Tensor | None
    conf: torch.Tensor | None
    fps: float
    names: tuple[str, ...]
    swapped: int
    cfg: FitConfig
    noise: np.ndarray


def _prepare(
    model: SkinnedBodyModel, keypoints: Keypoints3D, cfg: FitConfig, frame_rate: float | None,
    rig: CameraRig | None, keypoints2d: Keypoints2D | None,
) -> _Take:
    """Checked targets and weights, the 2D terms with their noise, left/right swaps undone (3D and 2D
    alike), isolated outliers dropped."""
    T, K = keypoints.num_frames, keypoints.num_joints
    fps = float(frame_rate) if frame_rate else _frame_rate(keypoints.frame_times)
    target, weight = _check_input(model, keypoints, cfg)
    proj = uv = conf = None
    if rig is not None and keypoints2d is not None:
        proj, uv, conf, implied_px = _projection_terms(rig, keypoints2d, keypoints)
        if implied_px > cfg.reprojection_sigma_px:
            # 2D keypoints that disagree with the 3D ones more than the setting says (a real take's 3D
            # keypoints were filtered, its detections are noisier): weighted as noisy as they are, or the
            # two terms fight and the fit jumps between them from frame to frame
            logger.info("2D keypoints %.1f px from the 3D keypoints' projections: reprojection sigma %.1f -> %.1f px",
                        implied_px * RAYLEIGH_MEDIAN, cfg.reprojection_sigma_px, implied_px)
            cfg = dataclasses.replace(cfg, reprojection_sigma_px=implied_px)
    order = _side_swaps(target, weight, keypoints.format)
    frames = np.arange(T)[:, None]
    swapped = int((order != np.arange(K)).any(1).sum())
    if swapped:
        logger.info("left/right keypoints of a body part swapped back in %d frames", swapped)
        target, weight = target[frames, order], weight[frames, order]
        if uv is not None and conf is not None:
            uv, conf = uv[:, frames, order], conf[:, frames, order]
    weight = _drop_temporal_outliers(target, weight, fps, cfg)
    # each camera's view of each keypoint weighted by its own noise (the 3D keypoints by their misfit, later)
    if uv is not None and conf is not None:
        C = uv.shape[0]
        paths = uv.numpy().transpose(1, 0, 2, 3).reshape(T, C * K, 2)
        seen = conf.numpy().transpose(1, 0, 2).reshape(T, C * K) > 0
        conf = conf * _t(_noise_weights(paths, seen, fps, cfg.cutoff_hz, cfg.reprojection_sigma_px).reshape(C, 1, K))
    return _Take(target, weight, proj, uv, conf, fps, keypoints.format.joints, swapped, cfg, np.ones(K))


def _t(a: object) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=DT)


def _fit_shape(
    model: SkinnedBodyModel, red: _Reduced, basis: _Basis, rot: torch.Tensor, trans: torch.Tensor, free: _Targets,
    take: _Take,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Step 2: the shape (and marker offsets) on frames spread over the take, their poses refined with it,
    from the poses ``rot`` (T, Jf, 3, 3) and ``trans`` (T, 3). Returns the unconstrained shape, the offsets
    (None without markers) and the number of frames picked. The poses are not kept: solved apart from
    their neighbours, a poorly seen part (a hand) may settle in the other of its two orientations."""
    cfg = take.cfg
    observed = np.flatnonzero(take.weight.sum(1) > 0)
    pick = np.unique(observed[np.linspace(0, len(observed) - 1, min(cfg.shape_frames, len(observed))).round().astype(int)])
    pick_t = torch.as_tensor(pick)
    markers = cfg.marker_offset_sigma_m > 0 and len(red.marker_k) > 0
    # neither limits nor the temporal term: the shape is told by the keypoints alone (a limit that holds a
    # pose a little off would otherwise be paid for by the shape)
    shape_tg = dataclasses.replace(free.rows(pick_t), temporal=0.0, limits=0.0)  # type: ignore[arg-type]
    search_tg = _without_markers(shape_tg, red) if markers else shape_tg
    sfree, rot_p, trans_p = _shape_search(model, red, basis, rot[pick_t], trans[pick_t], search_tg, cfg)
    offsets = torch.zeros(len(red.marker_k), 3, dtype=DT) if markers else None
    sigma = cfg.marker_offset_sigma_m
    # with markers, each further round sets their prior from the offsets' spread (empirical Bayes) and refines
    # shape and offsets with it: markers that sit where the model puts them keep telling the shape (the
    # head's size, the feet's length), while biased ones stay free
    for round_ in range(1 + (cfg.marker_rounds if markers else 0)):
        if round_ > 0 and offsets is not None:
            sigma = float(np.clip(offsets.pow(2).mean().sqrt(), 0.002, sigma))
        sfree, offsets, rot_p, trans_p = _solve_shape(
            model, red, basis, sfree, rot_p, trans_p, shape_tg, cfg, offsets, sigma
        )  # type: ignore[arg-type]
    if offsets is not None:
        logger.info("marker offsets: prior %.1f mm, largest %.1f mm", 1000 * sigma, 1000 * float(offsets.norm(dim=1).max()))
    return sfree, offsets, len(pick)


def _smoothed(take: _Take, pts: np.ndarray) -> tuple[_Targets, int]:
    """Step 3's targets: keypoints farther than ``outlier_sigmas`` from the fit's (pts (T, K, 3)) dropped,
    the rest low-passed, with the limits and the temporal term; and how many were dropped."""
    cfg = take.cfg
    resid = np.linalg.norm(pts - take.target, axis=-1)
    far = resid > cfg.outlier_sigmas * cfg.keypoint_sigma_m
    take.weight = np.where(far, 0.0, take.weight)
    smooth = lowpass(np.where(take.weight[..., None] > 0, take.target, np.nan), take.fps, cfg.cutoff_hz)
    # the weights are low-passed too: a keypoint dropped or down-weighted in one frame would otherwise
    # change that frame's fit alone (a jerk); the floor keeps gaps (filled by interpolation) pulling, so
    # that a limb left unobserved at the end of a take cannot stay flipped
    smooth_w = lowpass(np.repeat(take.weight[..., None], 3, -1), take.fps, cfg.cutoff_hz)[..., 0]
    smooth_w = np.clip(smooth_w, 0.25, 1.0) * (take.weight.sum(0) > 0)
    take.noise = _misfit_weights(resid, take.weight > 0, cfg.keypoint_sigma_m)
    smooth_w = smooth_w * take.noise[None]
    uv_s, conf_s = _filtered_views(take.proj, take.uv, take.conf, pts, take.fps, cfg)
    tg = _Targets(
        _t(smooth), _t(smooth_w), proj=take.proj, uv=uv_s, conf=conf_s, limits=cfg.joint_limit_weight,
        temporal=cfg.temporal_weight,
    )
    return tg, int(far.sum())


def _hold_feet(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, rot: torch.Tensor, trans: torch.Tensor, tg: _Targets,
    take: _Take, clearance: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, float, Ground]:
    """Step 4: the ground from the still feet, then contacts held still on it. Returns rot, trans, the
    posed points (T, K', 3), contacts (T, P), the ground's height and the estimate it came from."""
    cfg, K = take.cfg, take.target.shape[1]
    pts = _points(model, red, rest, rot, trans, cfg.window)
    ground = estimate_ground(pts[:, K:], clearance, take.fps, cfg)
    # the calibrated floor (Z = 0) is measured more closely than the fit's soles tell it: kept where the
    # take's still feet stand on it (a foot's fitted sole sits a few millimetres off its true height)
    ground_z = 0.0 if abs(ground.z) < cfg.floor_tolerance_m else ground.z
    logger.info("ground at Z = %.3f m (the still feet's: %.3f m, %s, %d foot-frames, spread %.1f mm)", ground_z,
                ground.z, ground.source, ground.frames, 1000 * ground.spread_m)
    contact = np.zeros((len(rot), len(red.sole_ids)), dtype=bool)
    # a scan's performer turns on the spot: the feet pivot slowly enough to pass for still, and anchoring them at
    # their average place pinned the legs while the body turned (ankles 14 cm off)
    if not cfg.contact or cfg.scan:
        return rot, trans, pts, contact, ground_z, ground
    contact = detect_contacts(pts[:, K:], clearance, take.fps, cfg, ground_z)
    anchors, aw = contact_anchors(pts[:, K:], clearance, contact, take.fps, cfg, ground_z)
    # no sole below the ground either (a foot not in contact that the keypoints' noise would push through it)
    held = dataclasses.replace(tg, anchor=_t(anchors), anchor_weight=_t(aw), floor=_t(ground_z + clearance))
    rot, trans = _windowed(model, red, rest, rot, trans, held, cfg, 2 * cfg.frame_iterations, cfg.robust_scale, "contact")
    pts = _points(model, red, rest, rot, trans, cfg.window)
    _log_pass("contact", model, red, rest, rot, trans, take)
    return rot, trans, pts, contact, ground_z, ground


def _quality(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, rot: torch.Tensor, trans: torch.Tensor, pts: np.ndarray,
    take: _Take, keypoints: np.ndarray,
) -> dict:
    """Figures of the fitted motion: the largest orientation steps of the feet, hands and head and the flips
    among them (:mod:`fit_quality`), and its smoothness against the keypoints it read (T, K, 3) (NaN:
    missing; left/right swaps undone)."""
    watched = [n for n in WATCHED if n in red.sem]
    rg = torch.cat([_forward(model, red, rest, rot[a : a + take.cfg.window], trans[a : a + take.cfg.window]).rg
                    for a in range(0, len(rot), take.cfg.window)])
    out = flip_figures(rg[:, [red.sem[n] for n in watched]].numpy(), tuple(watched), take.fps)
    out.update(smoothness_figures(pts, keypoints, take.fps))
    return out


def _coherent(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, read: np.ndarray, names: tuple[str, ...], tg: _Targets,
    take: _Take, label: str,
) -> tuple[torch.Tensor, torch.Tensor, _Targets]:
    """Every frame posed from the analytic start (:func:`_start`) against targets ``tg`` with the take's joint
    limits and its strong start temporal term (``joint_limit_weight``, ``start_temporal_weight``), logged as
    ``label``. Returns the poses, translations and the targets with those terms set."""
    cfg = take.cfg
    tg = dataclasses.replace(tg, limits=cfg.joint_limit_weight, temporal=cfg.start_temporal_weight)
    rot, trans = _start(model, red, rest, read, names, cfg)
    rot, trans = _windowed(model, red, rest, rot, trans, tg, cfg, 2 * cfg.frame_iterations, 8.0)
    _log_pass(label, model, red, rest, rot, trans, take)
    return rot, trans, tg


def _start(
    model: SkinnedBodyModel, red: _Reduced, rest: _Rest, read: np.ndarray, names: tuple[str, ...], cfg: FitConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The analytic start of every frame (read (T, K, 3), NaN: missing), window by window."""
    parts = [initialise(model, red, rest, read[a : a + cfg.window], names) for a in range(0, len(read), cfg.window)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _fit(
    model: SkinnedBodyModel, keypoints: Keypoints3D, cfg: FitConfig, frame_rate: float | None,
    rig: CameraRig | None, keypoints2d: Keypoints2D | None, silhouettes: SilhouetteInput | None = None,
    progress: ProgressCallback | None = None,
) -> BodyMotion:
    start = time.monotonic()
    T, K = keypoints.num_frames, keypoints.num_joints
    take = _prepare(model, keypoints, cfg, frame_rate, rig, keypoints2d)
    cfg, names = take.cfg, take.names
    read = np.where(take.weight[..., None] > 0, take.target, np.nan)  # as read, swaps undone, before outliers go
    red, basis = _fit_setup(model, keypoints.skeleton)
    free = _Targets(_t(take.target), _t(take.weight), proj=take.proj, uv=take.uv, conf=take.conf)

    # 1. the average body posed in every frame, then the shape with the poses of frames spread over the take
    sfree = _t(model.free_from_shape(model.default_shape()))
    rest = _rest(basis, _coefficients(model, sfree))
    rot, trans = _start(model, red, rest, read, names, cfg)
    rot, trans = _windowed(model, red, rest, rot, trans, free, cfg, 2 * cfg.frame_iterations, 8.0)
    _log_pass("average body", model, red, rest, rot, trans, take)
    sfree, offsets, picked = _fit_shape(model, red, basis, rot, trans, free, take)
    sil_figures: dict = {}
    take_offsets = None
    if silhouettes is not None and cfg.fits_silhouettes:
        if silhouettes.frame_index.shape[1] != T:
            raise FitError(f"silhouettes: frame_index has {silhouettes.frame_index.shape[1]} frames, the keypoints {T}")
        # the silhouettes' frames start from poses as coherent as the take's will be (step 2), with the keypoints'
        # shape: the average body's poses above (no limits, no temporal term) twist the neck and forearms about their
        # bones, and the refinement grew the body from there (fit_silhouette's module docstring)
        rot, trans, _ = _coherent(model, red, _rest(basis, _coefficients(model, sfree), red, offsets), read, names,
                                  free, take, "keypoints' shape, coherent")
        sfree, sil_figures, take_offsets = fit_shape_silhouettes(model, red, basis, sfree, offsets, rot, trans, free,
                                                                 take.weight.sum(1) > 0, silhouettes, cfg,
                                                                 keypoints.skeleton, progress)
    shape = model.shape_from_free(sfree.to(model.dtype)).double().numpy()
    if take_offsets is None:
        rest = _rest(basis, _coefficients(model, sfree), red, offsets)
    else:  # the silhouettes' keypoint offsets in place of the markers'
        rest = _rest(basis, _coefficients(model, sfree))
        rest = dataclasses.replace(rest, P=rest.P + take_offsets.to(rest.P.dtype))
    logger.info("shape fitted on %d frames: %s", picked, np.round(shape, 3).tolist())

    # 2. every frame posed anew with the shape, from the analytic start, with the joint limits and a strong
    # temporal term: solved frame by frame without them, a poorly seen part (a foot, a hand) settles in
    # either of two orientations from frame to frame, and no later pass could bring the flipped frames home
    rot, trans, free = _coherent(model, red, rest, read, names, free, take, "coherent")

    # 3. outliers out, keypoints low-passed (and weighted by their misfit), every frame posed against them
    rot, trans = _windowed(model, red, rest, rot, trans, free, cfg, cfg.frame_iterations, 2 * cfg.robust_scale)
    _log_pass("raw keypoints", model, red, rest, rot, trans, take)
    filtered, dropped = _smoothed(take, _points(model, red, rest, rot, trans, cfg.window)[:, :K])
    rot, trans = _windowed(model, red, rest, rot, trans, filtered, cfg, 2 * cfg.frame_iterations, cfg.robust_scale, "fit")
    _log_pass("filtered", model, red, rest, rot, trans, take)

    # 4. the ground from the still feet; feet in contact held still on it
    clearance = model.rest_mesh(shape)[red.sole_ids, 2]
    rot, trans, pts, contact, ground_z, ground = _hold_feet(model, red, rest, rot, trans, filtered, take, clearance)

    pose_f = torch_rotmat_to_rotvec(rot).numpy()
    for j in range(pose_f.shape[1]):  # continuous over time: no jump of 2 pi between equivalent rotation vectors
        pose_f[:, j] = _unwrap_rotvec(pose_f[:, j])
    full = np.zeros((T, model.num_joints, 3))
    full[:, red.free.numpy()] = pose_f
    resid = np.linalg.norm(pts[:, :K] - take.target, axis=-1)[take.weight > 0]
    seconds = time.monotonic() - start
    figures = {
        "frames": T,
        "frames_observed": int((take.weight.sum(1) > 0).sum()),
        "keypoints_dropped_as_outliers": dropped,
        "frames_with_left_right_swapped_back": take.swapped,
        "reprojection_sigma_px": cfg.reprojection_sigma_px if take.proj is not None else None,
        "keypoint_residual_median_mm": float(np.median(resid) * 1000) if resid.size else math.nan,
        "keypoint_residual_p95_mm": float(np.percentile(resid, 95) * 1000) if resid.size else math.nan,
        **_quality(model, red, rest, rot, trans, pts[:, :K], take, read),
        "contact_fraction": contact.reshape(T, 2, SOLE_POINTS).any(-1).mean(0).tolist(),
        "foot_sliding_mm_s": foot_sliding_mm_s(pts[:, K:], contact, take.fps),
        "ground_z_m": ground_z,
        "ground": {"still_feet_z_m": ground.z, "source": ground.source, "foot_frames": ground.frames,
                   "spread_mm": 1000 * ground.spread_m},
        "marker_offsets_mm": _marker_offsets(model, red, offsets, names),
        "silhouettes": sil_figures,
        "seconds": seconds,
        "frames_per_second": T / max(seconds, 1e-9),
    }
    logger.info("fitted %d frames in %.1f s (%.0f frames/s)", T, seconds, figures["frames_per_second"])
    return BodyMotion(
        model.name, shape, full, trans.numpy(), take.fps, np.asarray(keypoints.frame_times, dtype=float),
        getattr(model, "gender", "neutral"), contact.reshape(T, 2, SOLE_POINTS).any(-1), figures, ground_z,
    )


def _marker_offsets(model: SkinnedBodyModel, red: _Reduced, offsets: torch.Tensor | None, names: tuple[str, ...]) -> dict:
    """Each marker's offset (mm) in the upright rest frame of the world (X the body's left, Y its back, Z up)."""
    if offsets is None:
        return {}
    return {
        names[k]: np.round(1000 * np.asarray(model.model_to_world_rest) @ offsets[i].numpy(), 1).tolist()
        for i, k in enumerate(red.marker_k.tolist())
    }
