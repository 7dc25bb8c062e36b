"""Synthetic keypoint scenes with known truth: a walking BlazePose-33 skeleton, a ring of cameras, noisy
projections and labelled outliers. Used by tests and benchmarks of triangulation and filtering (the
virtual studio renders images; this only projects points, so it is fast and exact)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mocap_studio.calibration.camera import Camera, CameraRig, look_at
from mocap_studio.common.rotations import rotvec_to_rotmat
from mocap_studio.reconstruction.keypoints import Keypoints2D
from mocap_studio.reconstruction.skeletons import BLAZEPOSE_33

__all__ = ["SyntheticScene", "walking_skeleton", "ring_rig", "make_scene"]

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
    true detections of the performer (before noise)."""

    rig: CameraRig
    truth: np.ndarray
    keypoints: Keypoints2D
    inliers: np.ndarray


def make_scene(
    num_frames: int = 60,
    num_cameras: int = 8,
    noise_px: float = 2.0,
    outlier_fraction: float = 0.1,
    frame_rate: float = 30.0,
    seed: int = 0,
) -> SyntheticScene:
    """Project a walking skeleton into a camera ring with Gaussian pixel noise and outliers.

    Outliers are split evenly between a bystander's joint (the wrong person), the mirror joint (a
    left/right swap) and a uniformly random pixel. Confidences of inliers are U(0.5, 1) and of outliers
    U(0.45, 0.95), so weighting by confidence alone cannot separate them.
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
    return SyntheticScene(rig, truth, kp, ~outlier)
