"""The virtual performer: the open body model (Anny) driven by built-in exercises or a BVH file.

Exercises are generated procedurally as local joint rotations on the SMPL-24 skeleton (the canonical
humanoid of ``configs/retarget/smpl24.toml``: T-pose, Z up, facing -Y, the character's left towards +X),
with the root placed so the feet stay on the floor. Exercises and BVH clips alike are retargeted onto the
body model's own skeleton with :func:`export.retarget.retarget`, one path for both. The result is sampled at
any common time (rotations interpolated by slerp), so each camera sees the body at its own time stamps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mocap_studio.export.amass import motion_from_body, rig_from_body, skinned_mesh_from_body
from mocap_studio.export.foot_ik import contact_frames
from mocap_studio.export.motion import Motion
from mocap_studio.export.retarget import retarget
from mocap_studio.export.rig import Rig, load_rig, rig_from_bvh, rig_from_motion
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation, Slerp

log = logging.getLogger(__name__)

MASTER_RATE_HZ = 120.0
"""Exercises are generated at this rate before retargeting; cameras sample between frames by slerp."""


class PerformerError(ValueError):
    """A motion that cannot be performed: the message says which input and what to do."""


# ------------------------------------------------------------------------------------------------
# procedural exercises on SMPL-24 (local rotvecs in world-aligned rest frames)
# ------------------------------------------------------------------------------------------------
def _arms_down(rot: np.ndarray, idx: dict[str, int], angle: float | np.ndarray = 1.3) -> None:
    """Turn T-pose arms down by ``angle`` radians (about the forward axis)."""
    rot[:, idx["left_shoulder"], 1] += angle
    rot[:, idx["right_shoulder"], 1] -= angle
    rot[:, idx["left_elbow"], 2] += 0.25
    rot[:, idx["right_elbow"], 2] -= 0.25


def _squat(t: np.ndarray, rot: np.ndarray, idx: dict[str, int]) -> None:
    s = 0.5 - 0.5 * np.cos(2 * np.pi * t / 2.4)  # 0 standing .. 1 deep, 2.4 s per squat
    for side in ("left", "right"):
        rot[:, idx[f"{side}_hip"], 0] -= 1.3 * s  # thigh forward
        rot[:, idx[f"{side}_knee"], 0] += 1.9 * s  # shank back
        rot[:, idx[f"{side}_ankle"], 0] -= 0.6 * s  # foot flat
    rot[:, idx["spine1"], 0] += 0.35 * s  # lean forward (about X: + tips an upward segment towards -Y, the front)
    # arms reach forward for balance
    _arms_down(rot, idx, 1.3 * (1 - s))
    rot[:, idx["left_shoulder"], 2] -= 1.2 * s
    rot[:, idx["right_shoulder"], 2] += 1.2 * s


def _jumping_jack(t: np.ndarray, rot: np.ndarray, idx: dict[str, int]) -> None:
    s = 0.5 - 0.5 * np.cos(2 * np.pi * t / 1.2)  # 0 closed .. 1 open
    rot[:, idx["left_hip"], 1] -= 0.3 * s
    rot[:, idx["right_hip"], 1] += 0.3 * s
    rot[:, idx["left_ankle"], 1] += 0.3 * s
    rot[:, idx["right_ankle"], 1] -= 0.3 * s
    _arms_down(rot, idx, 1.35 - 2.6 * s)  # down at the sides .. up overhead


def _lunge(t: np.ndarray, rot: np.ndarray, idx: dict[str, int]) -> None:
    phase = 2 * np.pi * t / 2.0
    s = np.abs(np.sin(phase / 2))  # one lunge per 2 s, alternating legs
    front_left = (np.sin(phase / 2) >= 0).astype(float)
    for side, front in (("left", front_left), ("right", 1 - front_left)):
        back = 1 - front
        rot[:, idx[f"{side}_hip"], 0] += s * (-1.1 * front + 0.45 * back)
        rot[:, idx[f"{side}_knee"], 0] += s * (1.4 * front + 1.5 * back)
        rot[:, idx[f"{side}_ankle"], 0] += s * (-0.3 * front - 0.4 * back)
    _arms_down(rot, idx, 1.35)


def _arm_circles(t: np.ndarray, rot: np.ndarray, idx: dict[str, int]) -> None:
    w = 2 * np.pi * t / 1.0  # one circle per second, arms held out sideways
    rot[:, idx["left_shoulder"], 0] += 0.45 * np.cos(w)
    rot[:, idx["left_shoulder"], 2] += 0.45 * np.sin(w)
    rot[:, idx["right_shoulder"], 0] += 0.45 * np.cos(w)
    rot[:, idx["right_shoulder"], 2] -= 0.45 * np.sin(w)
    rot[:, idx["left_shoulder"], 1] += 0.15
    rot[:, idx["right_shoulder"], 1] -= 0.15


def _walk_on_the_spot(t: np.ndarray, rot: np.ndarray, idx: dict[str, int]) -> None:
    phase = 2 * np.pi * t / 1.1
    for side, sign in (("left", 1.0), ("right", -1.0)):
        lift = np.clip(sign * np.sin(phase), 0.0, None)
        rot[:, idx[f"{side}_hip"], 0] -= 1.0 * lift  # knee up
        rot[:, idx[f"{side}_knee"], 0] += 1.5 * lift
        rot[:, idx[f"{side}_ankle"], 0] += 0.3 * lift
        rot[:, idx[f"{side}_shoulder"], 0] += 0.5 * sign * np.sin(phase)  # arms swing against the legs
    _arms_down(rot, idx, 1.3)
    rot[:, idx["left_elbow"], 2] += 0.5
    rot[:, idx["right_elbow"], 2] -= 0.5


LIFE_RAD = 0.01
"""Standard deviation of the slow random sway added to every joint's rotation (radians per axis)."""
LIFE_S = 0.15
"""The sway's time scale: white noise smoothed by a Gaussian of this many seconds (little power above 2 Hz)."""


def life(rng: np.random.Generator, shape: tuple[int, ...], rate_hz: float) -> np.ndarray:
    """A little life for a motion: a slow random sway (T, ...) of every joint's rotation vector, ``LIFE_RAD``
    standard deviation, smooth over ``LIFE_S`` (white noise from ``rng`` low-passed along time, so a body never
    vibrates from one frame to the next: per-sample noise of 0.01 rad on every joint once shook the hips by
    2-3 cm per frame at 30 fps, 28 m/s^2 median acceleration, which no body does and which the trajectory filter
    and the fit's smoothing were then scored against)."""
    sigma = LIFE_S * rate_hz
    white = rng.normal(0.0, 1.0, shape)
    # a Gaussian of sigma samples shrinks white noise's deviation by sqrt(2 sqrt(pi) sigma)
    return LIFE_RAD * np.sqrt(2 * np.sqrt(np.pi) * sigma) * gaussian_filter1d(white, sigma, axis=0, mode="nearest")


SCAN_TURN_S = 8.0
"""The scan's turn: one full turn about the vertical in this many seconds."""


def _scan(t: np.ndarray, rot: np.ndarray, idx: dict[str, int]) -> None:
    """A measuring scan: an A-pose (arms 40 degrees from the body, feet a little apart) held while the
    performer turns about the vertical, one turn per SCAN_TURN_S."""
    rot[:, idx["pelvis"], 2] += 2 * np.pi * t / SCAN_TURN_S
    _arms_down(rot, idx, 0.75)
    rot[:, idx["left_elbow"], 2] -= 0.2  # straighter elbows than the other exercises' rest
    rot[:, idx["right_elbow"], 2] += 0.2
    rot[:, idx["left_hip"], 1] -= 0.1
    rot[:, idx["right_hip"], 1] += 0.1
    rot[:, idx["left_ankle"], 1] += 0.1
    rot[:, idx["right_ankle"], 1] -= 0.1


EXERCISES: dict[str, Callable[[np.ndarray, np.ndarray, dict[str, int]], None]] = {
    "squat": _squat,
    "jumping_jack": _jumping_jack,
    "lunge": _lunge,
    "arm_circles": _arm_circles,
    "walk_on_the_spot": _walk_on_the_spot,
    "scan": _scan,
}
"""Built-in exercises: name -> f(times (T,), rotvec (T, 24, 3) to add to, joint index)."""


def _check_exercises(names: Sequence[str]) -> None:
    if not names:
        raise PerformerError(f"no exercise given; choose from {sorted(EXERCISES)}")
    unknown = [n for n in names if n not in EXERCISES]
    if unknown:
        raise PerformerError(f"unknown exercise(s) {unknown}; choose from {sorted(EXERCISES)}, or give a BVH file")


def exercise_motion(names: Sequence[str], duration_s: float, seed: int = 0, rate_hz: float = MASTER_RATE_HZ) -> Motion:
    """The exercises ``names`` one after another, sharing ``duration_s`` equally, on the SMPL-24 rig.

    Returns a Motion (T = duration_s * rate_hz + 1 frames) with the feet on the floor (Z = 0), the
    performer near the origin facing -Y. Deterministic per ``seed`` (small personal variations).
    """
    _check_exercises(names)
    if duration_s <= 0:
        raise PerformerError(f"duration must be positive, got {duration_s} s")
    rig = load_rig("smpl24")
    idx = {n: i for i, n in enumerate(rig.joints)}
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate_hz)) + 1
    t = np.arange(n) / rate_hz
    rot = np.zeros((n, len(rig.joints), 3))
    segment = duration_s / len(names)
    blend_s = min(0.4, segment / 4)
    for k, name in enumerate(names):
        part = np.zeros_like(rot)
        EXERCISES[name]((t - k * segment) * rng.uniform(0.92, 1.08), part, idx)
        # weight: 1 inside the exercise's segment, cross-fading over blend_s at the joins
        lo, hi = k * segment, (k + 1) * segment
        w = np.clip(np.minimum(t - lo, hi - t) / blend_s + 0.5, 0.0, 1.0)
        if k == 0:
            w[t < lo + blend_s] = 1.0
        if k == len(names) - 1:
            w[t > hi - blend_s] = 1.0
        rot += part * w[:, None, None]
    rot += life(rng, rot.shape, rate_hz)
    rest = rig.rest_positions_m
    motion = Motion.from_rest_positions(rig.joints, rig.parents, rest, rot, np.broadcast_to(rest[0], (n, 3)).copy(),
                                        rate_hz, name="+".join(names))
    # the root carries the body so the lowest foot touches the floor and the feet stay centred
    pos = motion.world_positions_m()
    feet = pos[:, [idx["left_ankle"], idx["right_ankle"], idx["left_foot"], idx["right_foot"]]]
    root = motion.root_translation_m.copy()
    root[:, :2] -= feet[:, :, :2].mean(1) - feet[0, :, :2].mean(0)
    root[:, 2] -= feet[:, :, 2].min(1) - (rest[idx["left_foot"], 2] - 0.0)
    return Motion(motion.joint_names, motion.parents, motion.rest_offsets_m, motion.local_rotmat, root, rate_hz,
                  name=motion.name)


# ------------------------------------------------------------------------------------------------
# retargeting onto the body model and sampling at any time
# ------------------------------------------------------------------------------------------------
BVH_UNITS_M = {"millimetres": 0.001, "centimetres": 0.01, "inches": 0.0254, "CMU units": 0.0254 / 0.45,
               "metres": 1.0}
"""Units a BVH file may be written in (the format cannot say); the one giving a plausible leg is used."""
LEG_LENGTH_M = 0.85
"""A typical adult's thigh + shin length, the yardstick for guessing a BVH file's unit."""


def _up_basis(motion: Motion, rig: Rig) -> np.ndarray:
    """(3, 3) rotation turning the clip's up direction (ankles -> head over the clip, snapped to the
    nearest axis; BVH files are Y up by convention, some are Z up) onto +Z."""
    pos = motion.world_positions_m()
    head = pos[:, motion.joint_index(rig.bones["head"])]
    ankles = pos[:, [motion.joint_index(rig.bones[f"{s}_ankle"]) for s in ("left", "right")]].mean(1)
    up = (head - ankles).mean(0)
    axis = np.zeros(3)
    k = int(np.argmax(np.abs(up)))
    axis[k] = np.sign(up[k]) or 1.0
    if axis[2] > 0:
        return np.eye(3)
    rot, _ = Rotation.align_vectors([[0.0, 0.0, 1.0]], [axis])
    return rot.as_matrix()


def _leg_length(motion: Motion, rig: Rig) -> float:
    rest = motion.rest_positions_m()
    total = 0.0
    for side in ("left", "right"):
        hip, knee, ankle = (rest[motion.joint_index(rig.bones[f"{side}_{c}"])] for c in ("hip", "knee", "ankle"))
        total += float(np.linalg.norm(knee - hip) + np.linalg.norm(ankle - knee))
    return total / 2


def load_bvh_motion(path: str | Path) -> tuple[Motion, Rig]:
    """A BVH clip and its rig, in metres with Z up. The bone map is a retarget preset's where the file has
    that preset's whole skeleton, else found from the joint names and the skeleton's topology; the unit
    (the format cannot say) is the one of :data:`BVH_UNITS_M` giving the most plausible leg length, and a
    Z-up file is turned Y-up first. PerformerError when unreadable or when a required limb is missing."""
    from mocap_studio.export.bvh import read_bvh

    path = Path(path)
    if not path.is_file():
        raise PerformerError(f"{path}: no such BVH file")
    try:
        motion = read_bvh(path, unit_m=1.0)
        rig = rig_from_bvh(path, unit_m=1.0)
        rig.check_required("source")
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise PerformerError(f"{path}: cannot use this BVH file ({e}); give a readable humanoid BVH") from e
    leg = _leg_length(motion, rig)
    if not leg > 0:
        raise PerformerError(f"{path}: the legs of this BVH skeleton have no length; give a humanoid BVH")
    unit_name, unit = min(BVH_UNITS_M.items(), key=lambda kv: abs(np.log(leg * kv[1] / LEG_LENGTH_M)))
    basis = _up_basis(motion, rig)
    motion = motion.transformed(basis, unit)
    if not np.allclose(basis, np.eye(3)):
        log.info("%s: the skeleton stands along another axis than Z (after BVH's Y-up); turned upright", path.name)
    log.info("%s: read in %s (leg %.2f m)", path.name, unit_name, leg * unit)
    return motion, rig_from_motion(motion, rig.bones, name=path.stem)


def place_on_floor(motion: Motion) -> Motion:
    """``motion`` with its root moved so the lowest joint over the clip is on the floor and the root's
    horizontal path is centred over the origin (a walk stays in the cameras' volume as long as it can)."""
    pos = motion.world_positions_m()
    root = motion.root_translation_m.copy()
    root[:, :2] -= (root[:, :2].min(0) + root[:, :2].max(0)) / 2
    root[:, 2] -= np.nanmin(pos[..., 2])
    return Motion(motion.joint_names, motion.parents, motion.rest_offsets_m, motion.local_rotmat, root,
                  motion.frame_rate, name=motion.name)


@dataclass(frozen=True)
class Performance:
    """Body pose over time, on the body model's skeleton.

    shape: (S,); pose_rotvec: (T, J, 3) local rotations; trans: (T, 3) metres; times_s: (T,) common time
    of each frame, increasing; the body is evaluated as ``body.evaluate(shape, pose, trans)``.
    """

    model: str
    shape: np.ndarray
    pose_rotvec: np.ndarray
    trans: np.ndarray
    times_s: np.ndarray
    source: str

    def __post_init__(self) -> None:
        T = len(self.times_s)
        if self.pose_rotvec.ndim != 3 or self.pose_rotvec.shape[0] != T or self.pose_rotvec.shape[2] != 3:
            raise ValueError(f"pose_rotvec must have shape ({T}, J, 3), got {self.pose_rotvec.shape}")
        if self.trans.shape != (T, 3):
            raise ValueError(f"trans must have shape ({T}, 3), got {self.trans.shape}")

    def sample(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pose (N, J, 3) rotvec and trans (N, 3) at common times ``times_s`` (N,): slerp between frames,
        held at the ends."""
        times_s = np.clip(np.asarray(times_s, float), self.times_s[0], self.times_s[-1])
        T, J, _ = self.pose_rotvec.shape
        rots = Rotation.from_rotvec(self.pose_rotvec.transpose(1, 0, 2).reshape(-1, 3))
        pose = np.empty((len(times_s), J, 3))
        for j in range(J):
            pose[:, j] = Slerp(self.times_s, rots[j * T:(j + 1) * T])(times_s).as_rotvec()
        trans = np.stack([np.interp(times_s, self.times_s, self.trans[:, k]) for k in range(3)], -1)
        return pose, trans


def perform(body, shape: np.ndarray, source: Motion, source_rig: Rig, start_s: float = 0.0) -> Performance:  # noqa: ANN001
    """Retarget ``source`` onto the body's skeleton; frame k is at common time ``start_s + k / rate``."""
    J = body.num_joints
    rest = motion_from_body(body, shape, np.zeros((1, J, 3)), np.zeros((1, 3)), 1.0)
    target = rig_from_body(body, rest, skinned_mesh_from_body(body, shape))  # soles on the floor at rest
    moved = retarget(source, source_rig, target)
    moved.check_finite("retargeted performance")
    if moved.joint_names != tuple(body.joint_names):
        raise PerformerError("retargeting did not keep the body's joint order")
    pose = Rotation.from_matrix(moved.local_rotmat.reshape(-1, 3, 3)).as_rotvec().reshape(moved.num_frames, -1, 3)
    rest_root = body.kinematic_tree(shape).rest_positions[0]
    trans = moved.root_translation_m - rest_root
    contacts = contact_frames(source, source_rig)
    trans[:, 2] += _floor_lift(sole_heights(body, shape, pose, trans), contacts["left"] | contacts["right"])
    times = start_s + np.arange(moved.num_frames) / moved.frame_rate
    return Performance(body.name, np.asarray(shape, float), pose, trans, times, source.name)


SOLE_BAND_M = 0.12
"""Vertices this close above the rest mesh's lowest point count as the feet's (soles, heels, toes)."""


def sole_vertex_ids(body, shape: np.ndarray) -> np.ndarray:  # noqa: ANN001 - a BodyModel
    """(N,) the body's foot vertices: within :data:`SOLE_BAND_M` of the lowest point of the rest mesh."""
    rest = body.evaluate(shape, np.zeros((1, body.num_joints, 3)), np.zeros((1, 3))).vertices[0]
    return np.flatnonzero(rest[:, 2] < rest[:, 2].min() + SOLE_BAND_M)


def sole_heights(body, shape: np.ndarray, pose_rotvec: np.ndarray, trans: np.ndarray,  # noqa: ANN001
                 batch: int = 256) -> np.ndarray:
    """(T,) height above Z = 0 of the lowest foot vertex of the posed mesh, per frame.

    shape (S,), pose_rotvec (T, J, 3), trans (T, 3) as for ``body.evaluate``."""
    import torch

    pose_rotvec = np.asarray(pose_rotvec, float)
    trans = np.asarray(trans, float)
    if pose_rotvec.ndim != 3 or trans.shape != (len(pose_rotvec), 3):
        raise ValueError(f"pose_rotvec (T, J, 3) and trans (T, 3) expected, got {pose_rotvec.shape}, {trans.shape}")
    ids = torch.as_tensor(sole_vertex_ids(body, shape))
    out = np.empty(len(pose_rotvec))
    with torch.no_grad():
        s = torch.as_tensor(np.asarray(shape, float), dtype=body.dtype)
        for a in range(0, len(pose_rotvec), batch):
            verts, _ = body.forward_torch(s, torch.as_tensor(pose_rotvec[a:a + batch], dtype=body.dtype),
                                          torch.as_tensor(trans[a:a + batch], dtype=body.dtype), vertex_ids=ids)
            out[a:a + batch] = verts[..., 2].amin(dim=1).double().numpy()
    return out


def _floor_lift(heights: np.ndarray, contact: np.ndarray) -> np.ndarray:
    """(T,) vertical shift putting the lowest sole vertex on the floor at every contact frame, interpolated
    between contacts, and never leaving a sole below the floor. heights, contact: (T,)."""
    if heights.shape != contact.shape:
        raise ValueError(f"heights {heights.shape} and contact {contact.shape} must match")
    frames = np.arange(len(heights))
    known = np.flatnonzero(contact)
    if known.size == 0:
        log.info("no foot contact found in the source; the performer only stays above the floor")
        lift = np.zeros_like(heights)
    else:
        lift = np.interp(frames, known, -heights[known])
    return np.maximum(lift, -heights)
