"""A bystander: a second body walking across the take, as people do through real recordings.

The bystander is another seeded Anny shape in other clothes (:data:`BYSTANDER_PALETTE`), walking with planted
feet (:func:`walk_motion`) along a straight line that passes between one camera (``camera``) and the performer,
so that camera sees the bystander cross in front of the performer (partly or wholly hiding them for a while)
and the cameras opposite see the bystander pass behind. The line keeps clear of the platform, and the
bystander is only in the scene (``present``) while within ``reach_m`` of the centre, never walking into a
camera: in a long take they step in and out of the scene at the ends of that stretch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
from mocap_studio.export.motion import Motion
from mocap_studio.export.rig import load_rig
from mocap_studio.studio.performer import MASTER_RATE_HZ, Performance, _arms_down, life, perform
from mocap_studio.studio.rigs import StudioRig

log = logging.getLogger(__name__)

BYSTANDER_PALETTE = {"skin": (0.55, 0.38, 0.28), "hair": (0.80, 0.68, 0.40), "shirt": (0.78, 0.16, 0.12),
                     "trousers": (0.22, 0.30, 0.50), "shoes": (0.10, 0.10, 0.10)}
"""Region colours of the bystander: a red shirt and jeans, darker skin, fair hair (the performer wears blue)."""
CLEARANCE_M = 0.45
"""The bystander's line passes at least this far outside the platform's corners (half a body and a margin)."""


def walk_motion(duration_s: float, heading_rad: float, seed: int = 0, rate_hz: float = MASTER_RATE_HZ) -> Motion:
    """A walk on the SMPL-24 rig facing ``heading_rad`` (from +X, counter-clockwise seen from above),
    ``duration_s`` long: legs swing, knees bend in the swing, arms swing against the legs, and the root moves so
    that the foot on the ground stays put (no sliding). Starts with the root over the origin, feet on Z = 0."""
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    rig = load_rig("smpl24")
    idx = {n: i for i, n in enumerate(rig.joints)}
    rng = np.random.default_rng([seed, 71])
    n = int(round(duration_s * rate_hz)) + 1
    t = np.arange(n) / rate_hz
    w = 2 * np.pi * rng.uniform(0.85, 1.0) * t + rng.uniform(0, 2 * np.pi)
    amp = rng.uniform(0.32, 0.40)
    rot = np.zeros((n, len(rig.joints), 3))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        forward = sign * np.sin(w)  # +1: this thigh is forward
        swing = np.clip(sign * np.cos(w), 0.0, None)  # this leg is moving forward (off the ground)
        rot[:, idx[f"{side}_hip"], 0] -= amp * forward
        rot[:, idx[f"{side}_knee"], 0] += 0.12 + 0.95 * swing ** 2
        rot[:, idx[f"{side}_ankle"], 0] -= 0.1 + 0.3 * swing ** 2
        rot[:, idx[f"{side}_shoulder"], 0] += 0.35 * forward  # the arm swings back as the same leg goes forward
    _arms_down(rot, idx, 1.3)
    rot += life(rng, rot.shape, rate_hz)
    rot[:, idx["pelvis"]] = 0.0
    rot[:, idx["pelvis"], 2] = heading_rad + np.pi / 2  # the rig faces -Y at rest
    rest = rig.rest_positions_m
    still = Motion.from_rest_positions(rig.joints, rig.parents, rest, rot, np.broadcast_to(rest[0], (n, 3)).copy(),
                                       rate_hz, name="walk")
    pos = still.world_positions_m()
    feet = {s: pos[:, [idx[f"{s}_ankle"], idx[f"{s}_foot"]]] for s in ("left", "right")}
    low = {s: f[..., 2].min(1) for s, f in feet.items()}
    left_down = low["left"] <= low["right"]
    step = np.where(left_down[1:, None], np.diff(feet["left"][:, 1, :2], axis=0), np.diff(feet["right"][:, 1, :2], axis=0))
    root = still.root_translation_m.copy()
    root[1:, :2] -= np.cumsum(step, axis=0)  # the planted foot stays where it is
    root[:, 2] -= np.minimum(low["left"], low["right"]) - rest[idx["left_foot"], 2]
    return Motion(still.joint_names, still.parents, still.rest_offsets_m, still.local_rotmat, root, rate_hz, name="walk")


@dataclass(frozen=True)
class Bystander:
    """The bystander's walk and where it goes.

    performance: the body's pose over the common clock; path_xy (T, 2): the pelvis over the floor at the
    performance's times; camera: the camera whose view of the performer the line crosses; crossing_m (2,):
    where the pelvis crosses it (between that camera and the performer) at common time crossing_s; direction
    (2,): unit walking direction; reach_m: present while within this distance of the crossing point along the
    line; palette: region colours."""

    performance: Performance
    path_xy: np.ndarray
    camera: str
    crossing_m: np.ndarray
    direction: np.ndarray
    reach_m: float
    crossing_s: float
    palette: dict

    def along_m(self, times_s: np.ndarray) -> np.ndarray:
        """(N,) signed distance of the pelvis along the line from the crossing point at common times (N,)."""
        t = np.asarray(times_s, float)
        xy = np.stack([np.interp(t, self.performance.times_s, self.path_xy[:, k]) for k in range(2)], -1)
        return (xy - self.crossing_m) @ self.direction

    def present(self, times_s: np.ndarray) -> np.ndarray:
        """(N,) bool: the bystander is in the scene at common times ``times_s`` (N,)."""
        return np.abs(self.along_m(times_s)) <= self.reach_m

    def speed_m_s(self) -> float:
        """Mean walking speed of the pelvis over the performance."""
        times = self.performance.times_s
        return float(np.linalg.norm(self.path_xy[-1] - self.path_xy[0]) / max(times[-1] - times[0], 1e-9))

    def to_json(self, times_s: np.ndarray) -> dict:
        """What the truth says of the bystander, given the reference camera's frame times ``times_s``."""
        present = self.present(times_s)
        shown = np.asarray(times_s)[present]
        return {"camera_crossed": self.camera, "crossing_xy_m": self.crossing_m.tolist(),
                "direction_xy": self.direction.tolist(), "crossing_common_s": self.crossing_s,
                "reach_m": self.reach_m, "speed_m_s": round(self.speed_m_s(), 3), "palette": self.palette,
                "shape": self.performance.shape.tolist(),
                "present_common_s": [float(shown[0]), float(shown[-1])] if len(shown) else None,
                "reference_frames_present": int(present.sum())}


def _pelvis_path(body, perf: Performance, step: int = 4) -> np.ndarray:  # noqa: ANN001
    """(T, 2) the pelvis over the floor at every frame of ``perf`` (evaluated every ``step`` frames, the rest
    interpolated)."""
    keep = np.unique(np.r_[np.arange(0, len(perf.times_s), step), len(perf.times_s) - 1])
    joints = body.evaluate(perf.shape, perf.pose_rotvec[keep], perf.trans[keep]).joints
    pelvis = joints[:, body.semantic_joints["pelvis"], :2]
    return np.stack([np.interp(perf.times_s, perf.times_s[keep], pelvis[:, k]) for k in range(2)], -1)


def plan_bystander(body, rig: StudioRig, start_s: float, duration_s: float, take_s: tuple[float, float],  # noqa: ANN001
                   seed: int, clear_of_m: float = 0.0) -> Bystander:
    """A seeded bystander over the common times ``[start_s, start_s + duration_s]``, crossing in front of a
    seeded camera at a seeded moment of ``take_s`` (first, last common time of the take).

    clear_of_m: the platform's farthest corner from the centre (the line keeps CLEARANCE_M beyond it)."""
    rng = np.random.default_rng([seed, 67])
    cam = rig.cameras[int(rng.integers(len(rig.cameras)))]
    towards = cam.camera.center[:2] / max(np.linalg.norm(cam.camera.center[:2]), 1e-9)
    direction = np.array([-towards[1], towards[0]]) * rng.choice([-1.0, 1.0])
    distance = max(rng.uniform(1.1, 1.4), clear_of_m + CLEARANCE_M)
    nearest_camera = min(np.linalg.norm(sc.camera.center[:2]) for sc in rig.cameras)
    reach = math.sqrt(max((nearest_camera - 0.7) ** 2 - distance ** 2, 0.0))
    if reach == 0.0:
        log.warning("the bystander's line (%.2f m out) passes too near the cameras: the bystander is never shown",
                    distance)
    crossing_s = take_s[0] + rng.uniform(0.35, 0.65) * (take_s[1] - take_s[0])
    shape = body.random_shape(np.random.default_rng([seed, 61]))
    motion = walk_motion(duration_s, math.atan2(direction[1], direction[0]), seed=seed)
    perf = perform(body, shape, motion, load_rig("smpl24"), start_s=start_s)
    crossing = distance * towards
    path = _pelvis_path(body, perf)
    shift = crossing - np.array([np.interp(crossing_s, perf.times_s, path[:, k]) for k in range(2)])
    trans = perf.trans.copy()
    trans[:, :2] += shift  # the pelvis passes over the crossing point at crossing_s
    return Bystander(replace(perf, trans=trans), path + shift, cam.name, crossing, direction, reach, float(crossing_s),
                     dict(BYSTANDER_PALETTE))


__all__ = ["BYSTANDER_PALETTE", "Bystander", "plan_bystander", "walk_motion"]
