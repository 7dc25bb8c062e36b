"""Fit a body model to a take: one shape for the whole take, a pose and a translation per frame.

Input: :class:`~reconstruction.keypoints.Keypoints3D` (metres, Z-up world, floor at Z = 0), optionally
2D keypoints and the camera rig for reprojection terms. Output: :class:`BodyMotion`.

How (all on the CPU, in torch, float64):
1. Initialise analytically: the root orientation and translation from the hips and shoulders, then each
   hip, knee, shoulder and elbow from the direction of its bone (a swing that turns the model's bone onto
   the observed one).
2. Pose every frame with the average shape (robust Gauss-Newton, batched over frames), then fit the shape
   jointly with the poses of a subset of frames spread over the take (the shape eliminated by a Schur
   complement), robustly, with a shape prior that keeps weakly observed shape parameters near the mean.
   A detector's surface landmarks (eyes, ears, fingers, heels, toes: "markers") are not where the model's
   definitions put them on every body, so the global shape search scores shapes on the joints alone, and
   the shape is then refined on every keypoint with one offset per marker for the take (rigid with its
   bone, as marker placement is solved in optical mocap), whose prior is set from the offsets' own spread.
3. With the shape fixed: pose every frame against the raw keypoints, drop keypoints farther than
   ``outlier_sigmas`` from the fit, low-pass the remaining keypoints over time (zero-phase Butterworth),
   and pose every frame against them with the anatomical joint limits (a knee is a hinge, a foot hardly
   turns about the shin: keypoints barely see a shin's twist, which otherwise wanders and drags the heel
   and ankle with it) and a temporal term (each frame's rotations pulled towards the midpoint of its
   neighbours', solved red-black so neighbours cannot swap); a frame with a joint far from that midpoint
   (a foot flipped about the shin in one frame) is solved again from the midpoint and kept if better.
   The first passes run without the limits: from the analytic start a twist may have to pass them.
4. Foot contact: a sole point (heel and two front points of each foot) that is low and still is in
   contact (with hysteresis); each contact is anchored where the fit puts it on average, on the floor
   (Z = 0 plus the point's rest clearance) when it is within ``floor_tolerance_m`` of it, and a last pose
   pass pulls the soles to their anchors (weights ramped in and out, so no jerk at touch-down or
   lift-off).

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
outliers, low-pass), ``fit_contacts`` (foot contact) and ``fit_start`` (the analytic start).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from mocap_studio.reconstruction.body.fit_config import BodyMotion, FitConfig, FitError
from mocap_studio.reconstruction.body.fit_contacts import contact_anchors, detect_contacts, foot_sliding_mm_s
from mocap_studio.reconstruction.body.fit_shape import _shape_search, _solve_shape
from mocap_studio.reconstruction.body.fit_signals import _check_input, _drop_temporal_outliers, _frame_rate, lowpass
from mocap_studio.reconstruction.body.fit_skeleton import DT, SOLE_POINTS, _coefficients, _fit_setup, _rest
from mocap_studio.reconstruction.body.fit_solver import _points, _Targets, _windowed, _without_markers
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


def _projection_terms(rig: CameraRig, kp2d: Keypoints2D, T: int, K: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ideal pinhole matrices (C, 3, 4), undistorted pixels (C, T, K, 2) (0 where missing) and
    confidences (C, T, K) (0 where missing) of the 2D keypoints' cameras found in the rig, by name."""
    if kp2d.num_frames != T or kp2d.num_joints != K:
        raise FitError(f"2D keypoints have {kp2d.num_frames} frames x {kp2d.num_joints} joints; expected {T} x {K}")
    mats, uvs, confs = [], [], []
    for ci, name in enumerate(kp2d.camera_names):
        if name not in rig:
            continue
        cam = rig[name]
        uv = cam.undistort_pixels(np.nan_to_num(kp2d.xy[ci], nan=0.0))
        ok = np.isfinite(kp2d.xy[ci]).all(-1) & np.isfinite(uv).all(-1)
        mats.append(cam.K @ np.hstack([cam.R, cam.t[:, None]]))
        uvs.append(np.where(ok[..., None], uv, 0.0))
        confs.append(np.where(ok, np.nan_to_num(kp2d.confidence[ci], nan=0.0), 0.0))
    if not mats:
        raise FitError(f"none of the 2D keypoints' cameras {list(kp2d.camera_names)} is in the rig")
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=DT)  # noqa: E731
    return t(mats), t(uvs), t(confs)


def fit_sequence(
    model: SkinnedBodyModel,
    keypoints: Keypoints3D,
    config: FitConfig | None = None,
    frame_rate: float | None = None,
    rig: CameraRig | None = None,
    keypoints2d: Keypoints2D | None = None,
) -> BodyMotion:
    """Fit ``model`` to a take's 3D keypoints (and optionally 2D keypoints seen by ``rig``).

    keypoints: (T, K, 3) in a detector skeleton the model supports (NaN: missing); frame_rate defaults to
    the keypoints' frame times; keypoints2d: (C, T, K, 2) of the same skeleton, cameras matched to ``rig``
    by name. Returns a :class:`BodyMotion` with shape (S,), pose_rotvec (T, J, 3), trans (T, 3).
    Raises :class:`FitError` for unusable input (no valid frame, unsupported skeleton).
    """
    cfg = config or FitConfig()
    if not isinstance(keypoints, Keypoints3D):
        raise TypeError(f"keypoints must be a Keypoints3D, got {type(keypoints).__name__}")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    with torch.no_grad():
        return _fit(model, keypoints, cfg, frame_rate, rig, keypoints2d)


def _fit(
    model: SkinnedBodyModel, keypoints: Keypoints3D, cfg: FitConfig, frame_rate: float | None,
    rig: CameraRig | None, keypoints2d: Keypoints2D | None,
) -> BodyMotion:
    start = time.monotonic()
    T = keypoints.num_frames
    fps = float(frame_rate) if frame_rate else _frame_rate(keypoints.frame_times)
    names = keypoints.format.joints
    K = len(names)
    target_np, weight_np = _check_input(model, keypoints, cfg)
    red, basis = _fit_setup(model, keypoints.skeleton)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=DT)  # noqa: E731
    proj = uv = conf = None
    if rig is not None and keypoints2d is not None:
        proj, uv, conf = _projection_terms(rig, keypoints2d, T, K)
    weight_np = _drop_temporal_outliers(target_np, weight_np, fps, cfg)
    # the passes before the low-passed ones run without the joint limits: from the analytic start a
    # bone's twist may have to pass through them (the limits then bring it home along the valley the
    # keypoints leave free)
    free = _Targets(t(target_np), t(weight_np), proj=proj, uv=uv, conf=conf)

    # 1. the average body posed in every frame
    sfree = t(model.free_from_shape(model.default_shape()))
    rest = _rest(basis, _coefficients(model, sfree))
    obs = np.where(weight_np[..., None] > 0, target_np, np.nan)
    parts = [initialise(model, red, rest, obs[a : a + cfg.window], names) for a in range(0, T, cfg.window)]
    rot, trans = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    rot, trans = _windowed(model, red, rest, rot, trans, free, cfg, 2 * cfg.frame_iterations, 8.0)

    # 2. the shape, with the poses of frames spread over the take
    observed = np.flatnonzero(weight_np.sum(1) > 0)
    pick = np.unique(observed[np.linspace(0, len(observed) - 1, min(cfg.shape_frames, len(observed))).round().astype(int)])
    pick_t = torch.as_tensor(pick)
    markers = cfg.marker_offset_sigma_m > 0 and len(red.marker_k) > 0
    search_tg = _without_markers(free.rows(pick_t), red) if markers else free.rows(pick_t)  # type: ignore[arg-type]
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
            model, red, basis, sfree, rot_p, trans_p, free.rows(pick_t), cfg, offsets, sigma
        )  # type: ignore[arg-type]
    if offsets is not None:
        logger.info("marker offsets: prior %.1f mm, largest %.1f mm", 1000 * sigma, 1000 * float(offsets.norm(dim=1).max()))
    rot[pick_t], trans[pick_t] = rot_p, trans_p
    shape = model.shape_from_free(sfree.to(model.dtype)).double().numpy()
    rest = _rest(basis, _coefficients(model, sfree), red, offsets)
    logger.info("shape fitted on %d frames: %s", len(pick), np.round(shape, 3).tolist())
    marker_offsets = (
        {}
        if offsets is None
        else {  # in the upright rest frame of the world (X the body's left, Y its back, Z up)
            names[k]: np.round(1000 * np.asarray(model.model_to_world_rest) @ offsets[i].numpy(), 1).tolist()
            for i, k in enumerate(red.marker_k.tolist())
        }
    )

    # 3. outliers out, keypoints low-passed, every frame posed against them
    rot, trans = _windowed(model, red, rest, rot, trans, free, cfg, cfg.frame_iterations, 2 * cfg.robust_scale)
    pts = _points(model, red, rest, rot, trans, cfg.window)
    far = np.linalg.norm(pts[:, :K] - target_np, axis=-1) > cfg.outlier_sigmas * cfg.keypoint_sigma_m
    weight_np = np.where(far, 0.0, weight_np)
    smooth = lowpass(np.where(weight_np[..., None] > 0, target_np, np.nan), fps, cfg.cutoff_hz)
    # the weights are low-passed too: a keypoint dropped or down-weighted in one frame would otherwise
    # change that frame's fit alone (a jerk); the floor keeps gaps (filled by interpolation) pulling, so
    # that a limb left unobserved at the end of a take cannot stay flipped
    smooth_w = lowpass(np.repeat(weight_np[..., None], 3, -1), fps, cfg.cutoff_hz)[..., 0]
    smooth_w = np.clip(smooth_w, 0.25, 1.0) * (weight_np.sum(0) > 0)
    filtered = _Targets(
        t(smooth), t(smooth_w), proj=proj, uv=uv, conf=conf, limits=cfg.joint_limit_weight, temporal=cfg.temporal_weight
    )
    rot, trans = _windowed(model, red, rest, rot, trans, filtered, cfg, 2 * cfg.frame_iterations, cfg.robust_scale, "fit")

    # 4. feet in contact held still, on the floor
    pts = _points(model, red, rest, rot, trans, cfg.window)
    clearance = model.rest_mesh(shape)[red.sole_ids, 2]
    contact = np.zeros((T, len(red.sole_ids)), dtype=bool)
    if cfg.contact:
        contact = detect_contacts(pts[:, K:], clearance, fps, cfg)
        if contact.any():
            anchors, aw = contact_anchors(pts[:, K:], clearance, contact, fps, cfg)
            held = dataclasses.replace(filtered, anchor=t(anchors), anchor_weight=t(aw))
            rot, trans = _windowed(model, red, rest, rot, trans, held, cfg, 2 * cfg.frame_iterations, cfg.robust_scale, "contact")
            pts = _points(model, red, rest, rot, trans, cfg.window)

    pose_f = torch_rotmat_to_rotvec(rot).numpy()
    pose_f[:, 0] = _unwrap_rotvec(pose_f[:, 0])
    full = np.zeros((T, model.num_joints, 3))
    full[:, red.free.numpy()] = pose_f
    valid = weight_np > 0
    resid = np.linalg.norm(pts[:, :K] - target_np, axis=-1)[valid]
    seconds = time.monotonic() - start
    figures = {
        "frames": T,
        "frames_observed": int(len(observed)),
        "keypoints_dropped_as_outliers": int(far.sum()),
        "keypoint_residual_median_mm": float(np.median(resid) * 1000) if resid.size else math.nan,
        "keypoint_residual_p95_mm": float(np.percentile(resid, 95) * 1000) if resid.size else math.nan,
        "contact_fraction": contact.reshape(T, 2, SOLE_POINTS).any(-1).mean(0).tolist(),
        "foot_sliding_mm_s": foot_sliding_mm_s(pts[:, K:], contact, fps),
        "marker_offsets_mm": marker_offsets,
        "seconds": seconds,
        "frames_per_second": T / max(seconds, 1e-9),
    }
    logger.info("fitted %d frames in %.1f s (%.0f frames/s)", T, seconds, figures["frames_per_second"])
    return BodyMotion(
        model.name, shape, full, trans.numpy(), fps, np.asarray(keypoints.frame_times, dtype=float),
        getattr(model, "gender", "neutral"), contact.reshape(T, 2, SOLE_POINTS).any(-1), figures,
    )
