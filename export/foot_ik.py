"""Feet in retargeting: when a source foot is planted, and the legs' two-bone IK that plants the target's.

Contacts come from a body fit where there is one (body.npz stores them; the fit decides them from its sole
points, with hysteresis), else :func:`contact_frames` finds them on the source's feet (near its floor and
slow), for sources without a fit (BVH files, keypoints).

Legs (``RetargetConfig.leg_ik``): each ankle aims at the source's ankle, scaled to the target. Where the
source foot is planted the target is raised or lowered so the target foot's lowest joint stands at its rest
height above the floor (the rig's sole clearance), faded in and out over ``ik_blend_s``; no foot ever goes
below that height. The pelvis drops where a leg could not otherwise reach (smoothly, never by less than
needed), then an analytic two-bone IK turns hip and knee with the knee bending the way it bends now (so it
keeps pointing where the source's does; the thigh's axis decides where the leg is straight) and the foot
keeps its world orientation. Without leg IK (``pin_feet``) only the root height is corrected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from mocap_studio.common.rotations import rotation_between
from mocap_studio.export.motion import Motion
from mocap_studio.export.rig import FEET, REQUIRED, Rig, _floor_height, foot_points, sole_clearance_m

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetargetConfig:
    """How to retarget (the ``[export]`` stage passes this through)."""

    contact_height_m: float = 0.03
    """A source foot point this close to the source's floor may be in contact."""
    contact_speed_m_s: float = 0.35
    """...and moving slower than this."""
    pin_feet: bool = True
    """Correct the target's root height so planted feet touch the floor (used when ``leg_ik`` is off)."""
    leg_ik: bool = True
    """Two-bone IK on each leg towards the source's feet scaled to the target; planted feet on the floor."""
    ik_blend_s: float = 0.1
    """The planting correction fades in and out over this many seconds around each contact."""
    aim_bones: bool = True
    """Each mapped bone is swung to point where the source's bone points (joint to mapped child), not only
    turned as the source joint turns: they differ where the source bone spans joints the target lacks (Anny's
    spine02 between the rig's Spine1 and Spine2); off, those joints' rotations are dropped."""
    reach: float = 0.999
    """A leg is stretched to at most this fraction of its length (a straight knee has no bend direction)."""


def contact_frames(motion: Motion, rig: Rig, config: RetargetConfig = RetargetConfig()) -> dict[str, np.ndarray]:
    """Per side, (T,) booleans: the foot's lowest point is near the floor and slow. The floor is the 2nd
    percentile of the lowest foot point over the clip (captures are not always aligned to Z = 0)."""
    feet = foot_points(motion, rig)
    floor = _floor_height(motion, rig)
    out = {}
    for side, pts in feet.items():
        low = pts[..., 2].min(axis=1) - floor
        speed = np.linalg.norm(np.gradient(pts, axis=0), axis=-1).min(axis=1) * motion.frame_rate
        out[side] = (low < config.contact_height_m) & (speed < config.contact_speed_m_s)
    return out


def _pin_feet(motion: Motion, target: Rig, contacts: dict[str, np.ndarray]) -> Motion:
    """``motion`` (on ``target``) with its root lowered or raised so that at frames where a source foot is
    planted (``contacts`` per side, (T,) bool) the target's lowest foot point is on the floor; in between
    the correction is interpolated."""
    feet = foot_points(motion, target)
    n = motion.num_frames
    # at frames with a planted source foot, the target's lowest foot point goes to the floor (nothing below)
    planted = np.any([contacts[side] for side in FEET], axis=0)
    lowest = np.min([feet[side][..., 2].min(axis=1) for side in FEET], axis=0)
    lift = np.where(planted, lowest, np.nan)
    known = np.flatnonzero(np.isfinite(lift))
    if known.size == 0:
        log.info("no foot contacts found in the source; the root height is only scaled")
        return motion
    lift = np.interp(np.arange(n), known, lift[known])
    root = motion.root_translation_m.copy()
    root[:, 2] -= lift
    return motion.with_rotations(motion.local_rotmat, root)


def _subtree(parents: np.ndarray, joint: int) -> np.ndarray:
    """(J,) bool: ``joint`` and all its descendants (parents come before children)."""
    mask = np.zeros(len(parents), bool)
    mask[joint] = True
    for j in range(joint + 1, len(parents)):
        mask[j] = mask[parents[j]]
    return mask


def _fade(values: np.ndarray, active: np.ndarray, ramp: int) -> np.ndarray:
    """(T,) ``values`` where ``active``; elsewhere the nearest active value faded linearly to 0 over ``ramp``
    frames; 0 far from any active frame."""
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return np.zeros_like(values)
    frames = np.arange(len(values))
    filled = np.interp(frames, idx, values[idx])
    dist = np.min(np.abs(frames[:, None] - idx[None, :]), axis=1) if len(idx) < 4096 else _distance(active)
    return filled * np.clip(1.0 - dist / max(ramp, 1), 0.0, 1.0)


def _distance(active: np.ndarray) -> np.ndarray:
    """(T,) frames to the nearest True in ``active`` (two linear sweeps)."""
    n = len(active)
    dist = np.full(n, float(n))
    last = -np.inf
    for t in range(n):
        last = t if active[t] else last
        dist[t] = t - last
    last = np.inf
    for t in range(n - 1, -1, -1):
        last = t if active[t] else last
        dist[t] = min(dist[t], last - t)
    return dist


def _cover(values: np.ndarray, half: int) -> np.ndarray:
    """A smooth curve >= ``values`` (T,): a moving maximum, then a moving mean, both ``2 * half + 1`` wide
    (every frame's mean window holds maxima of windows that contain that frame)."""
    if half <= 0:
        return values
    pad = np.pad(values, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1)
    peak = windows.max(axis=1)
    pad = np.pad(peak, half, mode="edge")
    return np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1).mean(axis=1)


def _leg_ik(
    motion: Motion,
    rig: Rig,
    ankle_targets: dict[str, np.ndarray],
    contacts: dict[str, np.ndarray],
    config: RetargetConfig,
) -> Motion:
    """Plant the feet: ``ankle_targets`` per side (T, 3) world, ``contacts`` per side (T,) bool."""
    n = motion.num_frames
    idx = {c: motion.joint_index(rig.bones[c]) for c in rig.bones if c in REQUIRED or c.endswith("_foot")}
    clearance = sole_clearance_m(rig)
    world_rot, world_pos = motion.world_transforms()
    ramp = int(round(config.ik_blend_s * motion.frame_rate))
    goals: dict[str, np.ndarray] = {}
    for side in FEET:
        ankle = idx[f"{side}_ankle"]
        # the foot keeps its world orientation: its joints' heights relative to the ankle are known
        pts = foot_points(motion, rig)[side]
        below_ankle = (pts[..., 2] - world_pos[:, ankle, None, 2]).min(axis=1)  # (T,) <= 0
        flat_z = clearance - below_ankle  # ankle height with the foot's lowest joint at its sole height
        goal = np.array(ankle_targets[side], dtype=float)
        goal[:, 2] += _cover(np.maximum(flat_z - goal[:, 2], 0.0), ramp)  # smoothly above the floor
        goal[:, 2] += _fade(flat_z - goal[:, 2], contacts[side], ramp)  # and on it at contacts
        goals[side] = goal
    # drop the pelvis where a leg cannot reach its goal
    drop = np.zeros(n)
    for side in FEET:
        hip, knee, ankle = (idx[f"{side}_{c}"] for c in ("hip", "knee", "ankle"))
        length = (
            np.linalg.norm(motion.rest_positions_m()[knee] - motion.rest_positions_m()[hip])
            + np.linalg.norm(motion.rest_positions_m()[ankle] - motion.rest_positions_m()[knee])
        ) * config.reach
        d = world_pos[:, hip] - goals[side]
        horiz = np.minimum(np.linalg.norm(d[:, :2], axis=1), length)
        drop = np.maximum(drop, d[:, 2] - np.sqrt(length**2 - horiz**2))
    drop = _cover(np.maximum(drop, 0.0), ramp)
    root = motion.root_translation_m.copy()
    root[:, 2] -= drop
    motion = motion.with_rotations(motion.local_rotmat, root)
    world_rot, world_pos = (np.array(a) for a in motion.world_transforms())
    parents = motion.parents
    forward = world_rot[:, idx["pelvis"]] @ np.array([0.0, -1.0, 0.0])  # rigs face -Y at rest
    for side in FEET:
        hip, knee, ankle = (idx[f"{side}_{c}"] for c in ("hip", "knee", "ankle"))
        h, k, a = world_pos[:, hip], world_pos[:, knee], world_pos[:, ankle]
        len_a = np.linalg.norm(k - h, axis=1)
        len_b = np.linalg.norm(a - k, axis=1)
        to_goal = goals[side] - h
        dist = np.linalg.norm(to_goal, axis=1)
        u = to_goal / np.maximum(dist, 1e-9)[:, None]
        c = np.clip(dist, np.abs(len_a - len_b) + 1e-6, (len_a + len_b) * config.reach)
        # the knee's bend direction: where the knee now sits off the hip-ankle line (so a knee keeps bending
        # the way the source's does), blended continuously into the thigh's forward or backward axis,
        # whichever this leg bends towards over the clip, where the leg is nearly straight and that offset
        # is noise (a straight leg has no bend direction)
        line = (a - h) / np.maximum(np.linalg.norm(a - h, axis=1, keepdims=True), 1e-9)
        bend = (k - h) - np.sum((k - h) * line, axis=1, keepdims=True) * line
        thigh_fwd = world_rot[:, hip] @ np.array([0.0, -1.0, 0.0])  # rigs face -Y at rest
        sign = 1.0 if np.sum(bend * thigh_fwd) >= 0 else -1.0
        pole = bend + 0.02 * len_a[:, None] * sign * thigh_fwd
        pole = pole - np.sum(pole * u, axis=1, keepdims=True) * u
        fallback = forward - np.sum(forward * u, axis=1, keepdims=True) * u
        weak = np.linalg.norm(pole, axis=1) < 1e-4 * len_a
        pole = np.where(weak[:, None], sign * fallback, pole)
        v = pole / np.maximum(np.linalg.norm(pole, axis=1, keepdims=True), 1e-12)
        cos_hip = np.clip((len_a**2 + c**2 - len_b**2) / (2 * len_a * c), -1.0, 1.0)
        knee_goal = h + len_a[:, None] * (cos_hip[:, None] * u + np.sqrt(1 - cos_hip**2)[:, None] * v)
        ankle_goal = h + c[:, None] * u
        keep = world_rot[:, _subtree(parents, ankle)].copy()
        turn_hip = rotation_between(k - h, knee_goal - h)
        below_hip = _subtree(parents, hip)
        world_rot[:, below_hip] = turn_hip[:, None] @ world_rot[:, below_hip]
        moved_ankle = h + (turn_hip @ (a - h)[..., None])[..., 0]
        turn_knee = rotation_between(moved_ankle - knee_goal, ankle_goal - knee_goal)
        below_knee = _subtree(parents, knee)
        world_rot[:, below_knee] = turn_knee[:, None] @ world_rot[:, below_knee]
        world_rot[:, _subtree(parents, ankle)] = keep
    local = world_rot.copy()
    for j in range(1, motion.num_joints):
        local[:, j] = np.swapaxes(world_rot[:, parents[j]], 1, 2) @ world_rot[:, j]
    return motion.with_rotations(local, root)
