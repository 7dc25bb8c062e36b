"""A synthetic humanoid motion with known truth, for tests, benchmarks and demos of the writers.

The skeleton is SMPL-24 (names and tree from :mod:`reconstruction.skeletons`) with adult proportions in a
T-pose, Z up, facing -Y, feet on the floor. The motion is a walk along -Y with swinging arms and legs, a
turning spine and nodding head, with the lowest foot point on the floor (Z = 0) on every frame.
"""

from __future__ import annotations

import numpy as np
from mocap_studio.common.rotations import euler_to_rotmat
from mocap_studio.export.motion import Motion
from mocap_studio.reconstruction.skeletons import SMPL_24

# rest joint positions, metres, Z up, facing -Y (the character's left is +X)
_REST = {
    "pelvis": (0.0, 0.0, 0.93), "left_hip": (0.09, 0.0, 0.86), "right_hip": (-0.09, 0.0, 0.86),
    "spine1": (0.0, 0.01, 1.04), "left_knee": (0.10, 0.0, 0.48), "right_knee": (-0.10, 0.0, 0.48),
    "spine2": (0.0, 0.01, 1.17), "left_ankle": (0.11, 0.02, 0.08), "right_ankle": (-0.11, 0.02, 0.08),
    "spine3": (0.0, 0.0, 1.23), "left_foot": (0.12, -0.10, 0.02), "right_foot": (-0.12, -0.10, 0.02),
    "neck": (0.0, 0.01, 1.45), "left_collar": (0.07, 0.0, 1.37), "right_collar": (-0.07, 0.0, 1.37),
    "head": (0.0, -0.02, 1.55), "left_shoulder": (0.18, 0.01, 1.40), "right_shoulder": (-0.18, 0.01, 1.40),
    "left_elbow": (0.45, 0.02, 1.40), "right_elbow": (-0.45, 0.02, 1.40), "left_wrist": (0.70, 0.01, 1.40),
    "right_wrist": (-0.70, 0.01, 1.40), "left_hand": (0.79, 0.0, 1.40), "right_hand": (-0.79, 0.0, 1.40),
}
FOOT_END_SITE_M = np.array([0.0, -0.06, -0.015])
"""The toe tip relative to the ``*_foot`` joint (an end site)."""


def humanoid_rest_positions() -> np.ndarray:
    """(24, 3) rest joint positions of the synthetic SMPL-24 skeleton, metres, Z up."""
    return np.array([_REST[n] for n in SMPL_24.joints])


def synthetic_walk(
    n_frames: int = 120, frame_rate: float = 60.0, seed: int = 0, speed_m_s: float = 1.2
) -> Motion:
    """A walking SMPL-24 motion (T frames = ``n_frames``), feet on the floor. Deterministic per ``seed``."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    rng = np.random.default_rng(seed)
    names = SMPL_24.joints
    parents = np.array(SMPL_24.parents)
    rest = humanoid_rest_positions()
    t = np.arange(n_frames) / frame_rate
    phase = 2 * np.pi * 0.9 * t  # steps per second / 2
    euler = np.zeros((n_frames, len(names), 3))  # X (pitch), Y (roll), Z (yaw), radians, intrinsic XYZ

    def set_(joint: str, axis: int, values: np.ndarray) -> None:
        euler[:, names.index(joint), axis] += values

    for side, sign in (("left", 1.0), ("right", -1.0)):
        ph = phase + (0.0 if side == "left" else np.pi)
        set_(f"{side}_hip", 0, 0.45 * np.sin(ph))  # leg swing
        set_(f"{side}_knee", 0, -0.6 * np.clip(np.sin(ph + 1.2), 0, None) - 0.05)  # knee bends backwards
        set_(f"{side}_ankle", 0, 0.25 * np.sin(ph - 0.6))
        set_(f"{side}_shoulder", 1, sign * (1.2 + 0.05 * np.sin(ph)))  # arms down from T-pose
        set_(f"{side}_shoulder", 0, -0.4 * np.sin(ph))  # arm swing, opposite the leg
        set_(f"{side}_elbow", 2, sign * (0.3 + 0.2 * np.sin(ph + 0.5)))
        set_(f"{side}_collar", 1, sign * 0.05 * np.sin(2 * ph))
        set_(f"{side}_wrist", 0, 0.2 * np.sin(ph + 0.3))
    set_("spine1", 2, 0.12 * np.sin(phase))
    set_("spine2", 1, 0.05 * np.sin(phase + 0.4))
    set_("spine3", 0, 0.05 + 0.03 * np.sin(2 * phase))
    set_("neck", 2, 0.15 * np.sin(0.5 * phase))
    set_("head", 0, 0.1 * np.sin(0.7 * phase + 1.0))
    set_("pelvis", 2, 0.08 * np.sin(phase) + 0.3 * np.sin(0.1 * phase))  # hips sway and a slow turn
    euler += rng.normal(0.0, 0.01, euler.shape)  # a little of everything
    local = euler_to_rotmat(euler, "XYZ")
    heading = np.cumsum(np.ones(n_frames)) / frame_rate * speed_m_s
    trans = np.stack([0.05 * np.sin(phase), -heading, np.full(n_frames, rest[0, 2])], axis=1)
    ends = np.full((len(names), 3), np.nan)
    for side in ("left", "right"):
        ends[names.index(f"{side}_foot")] = FOOT_END_SITE_M
    ends[names.index("head")] = (0.0, 0.0, 0.2)
    ends[names.index("left_hand")] = (0.08, 0.0, 0.0)
    ends[names.index("right_hand")] = (-0.08, 0.0, 0.0)
    motion = Motion.from_rest_positions(
        names, parents, rest, np.zeros((n_frames, len(names), 3)), trans, frame_rate, name="synthetic_walk"
    )
    motion = Motion(
        motion.joint_names,
        motion.parents,
        motion.rest_offsets_m,
        local,
        trans,
        frame_rate,
        end_sites_m=ends,
        name="synthetic_walk",
    )
    # put the lowest toe or ankle point on the floor on every frame
    lowest = foot_points_m(motion)[..., 2].min(axis=1)
    trans = trans - np.stack([np.zeros(n_frames), np.zeros(n_frames), lowest], axis=1)
    return motion.with_rotations(local, trans)


def foot_points_m(motion: Motion, foot_names: tuple[str, ...] = ("left_foot", "right_foot")) -> np.ndarray:
    """(T, 2 * len(foot_names), 3) world positions of each foot joint and its end site (toe tip)."""
    rot, pos = motion.world_transforms()
    out = []
    for name in foot_names:
        j = motion.joint_index(name)
        out.append(pos[:, j])
        end = motion.end_sites_m[j] if motion.end_sites_m is not None else np.full(3, np.nan)
        if np.all(np.isfinite(end)):
            out.append(pos[:, j] + rot[:, j] @ end)
    return np.stack(out, axis=1)
