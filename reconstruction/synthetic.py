"""Synthetic keypoint scenes with known truth: a walking BlazePose-33 skeleton, a ring of cameras, noisy
projections and labelled outliers, and optionally whole-body left/right swaps in some views for runs of frames
(as MediaPipe makes on real footage: ~30 of 100 frames in one phone's view). Used by tests and benchmarks of
triangulation and filtering (the virtual studio renders images; this only projects points, so it is fast and
exact)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from mocap_studio.calibration.camera import Camera, CameraRig, look_at
from mocap_studio.common.rotations import rotvec_to_rotmat
from mocap_studio.reconstruction.keypoints import Keypoints2D
from mocap_studio.reconstruction.skeletons import BLAZEPOSE_33

__all__ = ["SyntheticScene", "walking_skeleton", "ring_rig", "make_scene", "lr_swap_runs", "apply_lr_swaps"]

# Rest positions in metres, Z up, the body facing +X with its left side towards +Y.
_REST = {
    "nose": (0.10, 0.0, 1.62), "left_eye_inner": (0.09, 0.015, 1.66), "left_eye": (0.09, 0.03, 1.665),
    "left_eye_outer": (0.085, 0.045, 1.66), "left_ear": (0.0, 0.075, 1.63),
    "mouth_left": (0.095, 0.025, 1.58),
    "left_shoulder": (0.0, 0.19, 1.45), "left_elbow": (0.0, 0.21, 1.17), "left_wrist": (0.02, 0.22, 0.92),
    "left_pinky": (0.03, 0.24, 0.84), "left_index": (0.05, 0.22, 0.84), "left_thumb": (0.06, 0.20, 0.87),
    "left_hip": (0.0, 0.09, 0.95), "left_knee": (0.02, 0.10, 0.52), "left_ankle": (0.0, 0.10, 0.09),
    "left_heel": (-0.05, 0.10, 0.03), "left_foot_index": (0.15, 0.11, 0.02),
}
_LEG = ("knee", "ankle", "heel", "foot_index")
_SHIN = ("ankle", "heel", "foot_index")
_ARM = ("elbow", "wrist", "pinky", "index", "thumb")
_FOREARM = ("wrist", "pinky", "index", "thumb")


def _rest_pose() -> np.ndarray:
    """(33, 3) rest positions in BlazePose order; right joints mirror the left ones."""
    out = np.zeros((33, 3))
    for i, name in enumerate(BLAZEPOSE_33.joints):
        mirrored = name.replace("right", "left")
        p = np.array(_REST[mirrored], float)
        if mirrored != name:
            p[1] = -p[1]
        out[i] = p
    return out


def _rotate_about(points: np.ndarray, pivot: np.ndarray, angle: np.ndarray, axis=(0.0, 1.0, 0.0)):
    """Rotate points (T, K, 3) about ``pivot`` (T, 3) by ``angle`` (T,) radians around ``axis``."""
    R = rotvec_to_rotmat(np.asarray(axis)[None] * angle[:, None])  # (T, 3, 3)
    return np.einsum("tij,tkj->tki", R, points - pivot[:, None]) + pivot[:, None]


def walking_skeleton(
    num_frames: int, frame_rate: float = 30.0, radius_m: float = 1.2, seed: int = 0, phase: float = 0.0
) -> np.ndarray:
    """A BlazePose-33 skeleton walking round a circle. Returns xyz (T, 33, 3) metres."""
    rng = np.random.default_rng(seed)
    idx = {n: i for i, n in enumerate(BLAZEPOSE_33.joints)}
    t = np.arange(num_frames) / frame_rate
    cadence = 0.9 + 0.2 * rng.random()  # strides per second
    w = 2 * np.pi * cadence * t + phase
    pose = np.broadcast_to(_rest_pose(), (num_frames, 33, 3)).copy()
    for side, sign in (("left", 1.0), ("right", -1.0)):
        hip = pose[:, idx[f"{side}_hip"]].copy()
        leg = [idx[f"{side}_{p}"] for p in _LEG]
        pose[:, leg] = _rotate_about(pose[:, leg], hip, -0.45 * sign * np.sin(w))
        knee = pose[:, idx[f"{side}_knee"]].copy()
        shin = [idx[f"{side}_{p}"] for p in _SHIN]
        pose[:, shin] = _rotate_about(pose[:, shin], knee, 0.7 * np.clip(sign * np.sin(w + 1.2), 0, None))
        shoulder = pose[:, idx[f"{side}_shoulder"]].copy()
        arm = [idx[f"{side}_{p}"] for p in _ARM]
        pose[:, arm] = _rotate_about(pose[:, arm], shoulder, 0.35 * sign * np.sin(w))
        elbow = pose[:, idx[f"{side}_elbow"]].copy()
        fore = [idx[f"{side}_{p}"] for p in _FOREARM]
        pose[:, fore] = _rotate_about(pose[:, fore], elbow, -0.3 - 0.2 * np.clip(sign * np.sin(w), 0, None))
    pose[..., 2] += 0.02 * np.cos(2 * w)[:, None]  # the body rises and falls twice per stride
    # walk round the circle: heading follows the tangent
    angle = 0.5 * t / max(radius_m, 1e-6) + rng.uniform(0, 2 * np.pi)
    heading = rotvec_to_rotmat(np.stack([np.zeros_like(angle), np.zeros_like(angle), angle + np.pi / 2], -1))
    centre = np.stack([radius_m * np.cos(angle), radius_m * np.sin(angle), np.zeros_like(angle)], -1)
    return np.einsum("tij,tkj->tki", heading, pose) + centre[:, None]


def ring_rig(
    num_cameras: int = 8, radius_m: float = 4.5, size=(1280, 720), focal_px: float = 1000.0, seed: int = 0
) -> CameraRig:
    """Cameras on a ring looking at the centre from 1.2-2.6 m high, some with lens distortion."""
    rng = np.random.default_rng(seed)
    cams = []
    for c in range(num_cameras):
        a = 2 * np.pi * c / num_cameras + rng.uniform(-0.1, 0.1)
        eye = np.array([radius_m * np.cos(a), radius_m * np.sin(a), rng.uniform(1.2, 2.6)])
        R, t = look_at(eye, np.array([0.0, 0.0, 0.9]))
        K = np.array([[focal_px, 0, size[0] / 2], [0, focal_px, size[1] / 2], [0, 0, 1]])
        dist = np.array([-0.12, 0.05, 0.0, 0.0, 0.0]) if c % 2 else np.zeros(5)
        cams.append(Camera(f"cam_{c + 1}", tuple(size), K, dist, R, t))
    return CameraRig.from_cameras(cams)


@dataclass(frozen=True, eq=False)
class SyntheticScene:
    """truth (T, J, 3); keypoints: noisy projections with outliers; inliers (C, T, J): which observations are
    true detections of the performer's labelled joint (before noise; a joint read from its mirror in a swapped
    view is not); swapped (C, T): views whose left and right labels were swapped for the whole body (None when
    made without make_scene)."""

    rig: CameraRig
    truth: np.ndarray
    keypoints: Keypoints2D
    inliers: np.ndarray
    swapped: np.ndarray | None = None


def lr_swap_runs(num_cameras: int, num_frames: int, fraction: float, cameras: int = 1,
                 run_frames: tuple[int, int] = (5, 15), seed: int = 0) -> np.ndarray:
    """(C, T) bool: in ``cameras`` views drawn by the seed, runs of ``run_frames`` (least, most) frames where
    the detector swaps left and right, until at least ``fraction`` of that view's frames are swapped (runs may
    touch or overlap; each swapped view gets at most one run's length more than asked)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within 0-1, got {fraction}")
    if not 0 <= cameras <= num_cameras:
        raise ValueError(f"cameras must be within 0-{num_cameras}, got {cameras}")
    lo, hi = (int(v) for v in run_frames)
    if not 1 <= lo <= hi:
        raise ValueError(f"run_frames must be (least, most) with 1 <= least <= most, got {run_frames}")
    rng = np.random.default_rng([seed, 13])
    out = np.zeros((num_cameras, num_frames), bool)
    target = int(round(fraction * num_frames))
    for c in rng.choice(num_cameras, size=cameras, replace=False):
        while out[c].sum() < target:
            length = min(int(rng.integers(lo, hi + 1)), num_frames)
            start = int(rng.integers(0, num_frames - length + 1))
            out[c, start:start + length] = True
    return out


def apply_lr_swaps(keypoints: Keypoints2D, swapped: np.ndarray, inliers: np.ndarray | None = None):  # noqa: ANN201
    """Keypoints with every joint's left/right label swapped (the mirror joint's position and confidence) in the
    views ``swapped`` (C, T) bool marks. Returns (Keypoints2D, inliers (C, T, J) or None): ``inliers`` updated
    so that a joint read from its mirror no longer counts (joints without a mirror, the nose, keep theirs)."""
    fmt = keypoints.format
    C, T, J = keypoints.confidence.shape
    swapped = np.asarray(swapped, bool)
    if swapped.shape != (C, T):
        raise ValueError(f"swapped must have shape ({C}, {T}), got {swapped.shape}")
    flip = np.asarray(fmt.flip_permutation)
    xy, conf = np.array(keypoints.xy), np.array(keypoints.confidence)
    xy[swapped] = xy[swapped][:, flip]
    conf[swapped] = conf[swapped][:, flip]
    out = replace(keypoints, xy=xy, confidence=conf)
    if inliers is None:
        return out, None
    inliers = np.array(inliers, bool)
    inliers[swapped] = inliers[swapped][:, flip] & (flip == np.arange(J))[None]
    return out, inliers


def make_scene(
    num_frames: int = 60,
    num_cameras: int = 8,
    noise_px: float = 2.0,
    outlier_fraction: float = 0.1,
    frame_rate: float = 30.0,
    seed: int = 0,
    swap_fraction: float = 0.0,
    swap_cameras: int = 1,
    swap_run_frames: tuple[int, int] = (5, 15),
) -> SyntheticScene:
    """Project a walking skeleton into a camera ring with Gaussian pixel noise and outliers.

    Outliers are split evenly between a bystander's joint (the wrong person), the mirror joint (a
    left/right swap of one joint) and a uniformly random pixel. Confidences of inliers are U(0.5, 1) and of
    outliers U(0.45, 0.95), so weighting by confidence alone cannot separate them.

    Whole-body left/right swaps: with ``swap_fraction`` above 0, ``swap_cameras`` views (drawn by the seed) have
    every label swapped with its mirror's for runs of ``swap_run_frames`` frames covering at least that
    fraction of their frames (:func:`lr_swap_runs`; e.g. 0.3 for MediaPipe's ~30 of 100 frames in one phone's
    view); ``SyntheticScene.swapped`` says which. The scene is otherwise the same as without swaps.
    """
    rng = np.random.default_rng(seed)
    rig = ring_rig(num_cameras, seed=seed)
    truth = walking_skeleton(num_frames, frame_rate, seed=seed)
    bystander = walking_skeleton(num_frames, frame_rate, radius_m=2.2, seed=seed + 1, phase=1.0)
    uv = rig.project(truth)  # (C, T, J, 2)
    uv_other = rig.project(bystander)
    uv_swapped = uv[:, :, BLAZEPOSE_33.flip_permutation]
    C, T, J, _ = uv.shape
    xy = uv + rng.normal(0.0, noise_px, uv.shape)
    conf = rng.uniform(0.5, 1.0, (C, T, J))
    outlier = rng.random((C, T, J)) < outlier_fraction
    kind = rng.integers(0, 3, (C, T, J))
    has_mirror = BLAZEPOSE_33.flip_permutation != np.arange(J)
    kind = np.where((kind == 1) & ~has_mirror[None, None], 2, kind)
    w, h = rig.cameras[0].size
    random_px = rng.uniform([0, 0], [w, h], uv.shape)
    noise = rng.normal(0.0, noise_px, uv.shape)
    replacement = np.where((kind == 1)[..., None], uv_swapped + noise, random_px)
    replacement = np.where((kind == 0)[..., None], uv_other + noise, replacement)
    xy = np.where(outlier[..., None], replacement, xy)
    conf = np.where(outlier, rng.uniform(0.45, 0.95, (C, T, J)), conf)
    kp = Keypoints2D(xy, conf, rig.names, BLAZEPOSE_33.name, np.arange(T) / frame_rate)
    swapped, inliers = np.zeros((C, T), bool), ~outlier
    if swap_fraction > 0:
        swapped = lr_swap_runs(C, T, swap_fraction, swap_cameras, swap_run_frames, seed=seed)
        kp, inliers = apply_lr_swaps(kp, swapped, inliers)
    return SyntheticScene(rig, truth, kp, inliers, swapped)
