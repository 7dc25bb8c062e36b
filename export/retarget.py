"""Retargeting a motion onto another skeleton: the rigs people use, defined as data, or a user's skeleton.

A :class:`Rig` is a skeleton (joint names, parents, rest joint positions in metres, Z up, facing -Y) plus a
map from the canonical humanoid joint names (the SMPL-24 names: ``pelvis``, ``left_hip``, ``left_knee``,
...) to its bones. Presets live in ``configs/retarget/<name>.toml`` (Mixamo, UE5 mannequin, Unity humanoid,
CMU BVH, SMPL-24); a user skeleton comes from a BVH file with :func:`rig_from_bvh`.

Method (per frame, all vectorized over time):

1. For each mapped bone, an offset rotation turns the target's rest bone direction (joint -> its mapped
   child) onto the source's rest direction. This absorbs rest-pose differences (T-pose vs A-pose) and
   per-bone orientation differences.
2. Target world rotation = source world rotation @ offset; unmapped target joints keep their rest pose
   relative to their parent; local rotations follow from the parents' world rotations.
3. The root moves with the source pelvis, scaled by the ratio of the rigs' hip heights.
4. Feet: at frames where a source foot is planted (near the floor and slow) the root height is corrected so
   the target's lowest foot point is on the floor (Z = 0); the correction is interpolated between contacts.
   (No leg IK yet: in double support with proportions unlike the source's, the higher foot can stay a
   little above the floor.)

The result is a :class:`~export.motion.Motion` on the target skeleton with the target's own bone lengths.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration.rotations import rotvec_to_rotmat
from capture.config import ConfigError, load_toml

from .motion import Motion

log = logging.getLogger(__name__)

RIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "retarget"
PRESETS = ("mixamo", "ue5_mannequin", "unity_humanoid", "cmu_bvh", "smpl24")
REQUIRED = (
    "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "spine1",
    "neck", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist",
)  # fmt: skip
"""Canonical joints every source and target rig must map."""
DIRECTION_CHILD = {
    "spine1": "spine2", "spine2": "spine3", "spine3": "neck", "neck": "head",
    **{f"{s}_{a}": f"{s}_{b}" for s in ("left", "right") for a, b in (
        ("hip", "knee"), ("knee", "ankle"), ("ankle", "foot"), ("collar", "shoulder"), ("shoulder", "elbow"),
        ("elbow", "wrist"), ("wrist", "hand"))},
}  # fmt: skip
"""The canonical child whose direction a joint's rotation aims (the bone the joint moves)."""
FALLBACK_CHILD = {"spine1": ("spine3", "neck"), "spine2": ("neck",), "spine3": ("head",)}
FEET = {"left": ("left_ankle", "left_foot"), "right": ("right_ankle", "right_foot")}


@dataclass(frozen=True, eq=False)
class Rig:
    """A target (or source) skeleton and its canonical bone map."""

    name: str
    joints: tuple[str, ...]
    parents: np.ndarray
    """(J,) parent index per joint, -1 for the root (joint 0); parents come before children."""
    rest_positions_m: np.ndarray
    """(J, 3) rest joint positions, metres, Z up, facing -Y."""
    bones: dict[str, str]
    """Canonical joint name -> this rig's joint name."""
    unit_m: float = 0.01
    up_axis: str = "Y"
    rest_pose: str = "T"
    description: str = ""
    source: str = ""
    _unused: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.joints)
        parents = np.asarray(self.parents, np.int64)
        rest = np.asarray(self.rest_positions_m, float)
        if parents.shape != (n,):
            raise ValueError(f"rig {self.name}: parents must have shape ({n},), got {parents.shape}")
        if rest.shape != (n, 3):
            raise ValueError(f"rig {self.name}: rest_positions_m must have shape ({n}, 3), got {rest.shape}")
        unknown = sorted(v for v in self.bones.values() if v not in self.joints)
        if unknown:
            raise ValueError(
                f"rig {self.name} ({self.source}): [bones] names joints it does not have: {unknown}"
            )
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "rest_positions_m", rest)

    def check_required(self, role: str) -> None:
        missing = [c for c in REQUIRED if c not in self.bones]
        if missing:
            raise ValueError(
                f"{role} rig {self.name!r} ({self.source or 'given in code'}) lacks required bone(s) "
                f"{missing}; "
                f"add them to its [bones] table (canonical name = rig bone name)"
            )

    def rest_motion(self, n_frames: int = 1, frame_rate: float = 30.0) -> Motion:
        """The rig standing in its rest pose for ``n_frames`` frames."""
        zeros = np.zeros((n_frames, len(self.joints), 3))
        root = np.broadcast_to(self.rest_positions_m[0], (n_frames, 3)).copy()
        return Motion.from_rest_positions(
            self.joints, self.parents, self.rest_positions_m, zeros, root, frame_rate, name=self.name
        )


def load_rig(name_or_path: str | os.PathLike) -> Rig:
    """A preset by name (see :data:`PRESETS`) or a rig TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RIG_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise FileNotFoundError(f"no retarget rig named {name_or_path!r}; presets are {list(PRESETS)}")
    raw = load_toml(path)
    allowed = {
        "name",
        "description",
        "rest_pose",
        "unit_m",
        "up_axis",
        "joints",
        "parents",
        "rest_positions_m",
        "bones",
    }
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys are {sorted(allowed)}")
    try:
        return Rig(
            name=raw.get("name", path.stem),
            joints=tuple(raw["joints"]),
            parents=np.array(raw["parents"]),
            rest_positions_m=np.array(raw["rest_positions_m"], float),
            bones=dict(raw.get("bones", {})),
            unit_m=float(raw.get("unit_m", 0.01)),
            up_axis=str(raw.get("up_axis", "Y")),
            rest_pose=str(raw.get("rest_pose", "T")),
            description=str(raw.get("description", "")),
            source=str(path),
        )
    except KeyError as e:
        raise ConfigError(f"{path}: missing key {e.args[0]!r}") from None


def rig_from_motion(motion: Motion, bones: dict[str, str], name: str = "") -> Rig:
    """A rig from a motion's skeleton (e.g. a BVH read with :func:`export.bvh.read_bvh`) and a bone map.

    The rest pose is the motion's rest pose (all local rotations identity).
    """
    return Rig(
        name=name or motion.name or "user",
        joints=motion.joint_names,
        parents=motion.parents,
        rest_positions_m=motion.rest_positions_m(),
        bones=dict(bones),
        source=name or motion.name,
    )


def rig_from_bvh(
    path: str | os.PathLike, bones: dict[str, str] | str | None = None, unit_m: float = 0.01
) -> Rig:
    """A user skeleton from a BVH file. ``bones`` maps canonical names to its joints, or names a preset
    whose [bones] table fits (e.g. 'mixamo', 'cmu_bvh'); None tries every preset and keeps the best match."""
    from .bvh import read_bvh

    motion = read_bvh(path, unit_m=unit_m)
    if isinstance(bones, str):
        bones = load_rig(bones).bones
    if bones is None:
        best: dict[str, str] = {}
        for preset in PRESETS:
            cand = {k: v for k, v in load_rig(preset).bones.items() if v in motion.joint_names}
            if len(cand) > len(best):
                best = cand
        bones = best
    bones = {k: v for k, v in bones.items() if v in motion.joint_names}
    return rig_from_motion(motion, bones, name=Path(path).stem)


def _min_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation (3, 3) turning direction ``a`` onto ``b``."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        perp = np.cross(a, [1.0, 0, 0]) if abs(a[0]) < 0.9 else np.cross(a, [0, 1.0, 0])
        return rotvec_to_rotmat(np.pi * perp / np.linalg.norm(perp))
    return rotvec_to_rotmat(axis / s * np.arctan2(s, c))


def _direction(
    rig_rest: np.ndarray, bones: dict[str, str], index: dict[str, int], canon: str
) -> np.ndarray | None:
    for child in (DIRECTION_CHILD.get(canon),) + FALLBACK_CHILD.get(canon, ()):
        if child and child in bones:
            d = rig_rest[index[bones[child]]] - rig_rest[index[bones[canon]]]
            if np.linalg.norm(d) > 1e-6:
                return d
    return None


@dataclass(frozen=True)
class RetargetConfig:
    """How to retarget (the ``[export]`` stage passes this through)."""

    contact_height_m: float = 0.03
    """A source foot point this close to the source's floor may be in contact."""
    contact_speed_m_s: float = 0.35
    """...and moving slower than this."""
    pin_feet: bool = True
    """Correct the target's root height so planted feet touch the floor."""


def retarget(
    source: Motion, source_rig: Rig, target: Rig, config: RetargetConfig = RetargetConfig()
) -> Motion:
    """``source`` (a motion on ``source_rig``'s skeleton) played on ``target``'s skeleton. Returns a Motion
    with the target's joints, rest offsets (its own bone lengths) and the source's frame rate."""
    source.check_finite(f"retarget source {source.name or ''}".strip())
    source_rig.check_required("source")
    target.check_required("target")
    src_index = {n: i for i, n in enumerate(source.joint_names)}
    missing = sorted(v for v in source_rig.bones.values() if v not in src_index)
    if missing:
        raise ValueError(f"source motion lacks joints {missing} named by rig {source_rig.name!r}")
    tgt_index = {n: i for i, n in enumerate(target.joints)}
    src_rest = source.rest_positions_m()
    src_rot, src_pos = source.world_transforms()
    tgt_rest = target.rest_positions_m
    n_frames, n_joints = source.num_frames, len(target.joints)
    canon_of = {v: k for k, v in target.bones.items() if k in source_rig.bones}
    world = np.empty((n_frames, n_joints, 3, 3))
    for j in range(n_joints):
        canon = canon_of.get(target.joints[j])
        if canon is None:
            p = target.parents[j]
            world[:, j] = np.eye(3) if p < 0 else world[:, p]
            continue
        offset = np.eye(3)
        d_tgt = _direction(tgt_rest, target.bones, tgt_index, canon)
        d_src = _direction(src_rest, source_rig.bones, src_index, canon)
        if d_tgt is not None and d_src is not None:
            offset = _min_rotation(d_tgt, d_src)
        world[:, j] = src_rot[:, src_index[source_rig.bones[canon]]] @ offset
    local = world.copy()
    for j in range(1, n_joints):
        local[:, j] = np.swapaxes(world[:, target.parents[j]], 1, 2) @ world[:, j]
    # root: follow the source pelvis, scaled by hip height
    s_pelvis, t_pelvis = src_index[source_rig.bones["pelvis"]], tgt_index[target.bones["pelvis"]]
    scale = _hip_height(tgt_rest, target, tgt_index) / _hip_height(src_rest, source_rig, src_index)
    pelvis_pos = src_pos[:, s_pelvis] * scale
    offsets = tgt_rest.copy()
    offsets[1:] = tgt_rest[1:] - tgt_rest[target.parents[1:]]
    motion = Motion(
        target.joints, target.parents, offsets, local, pelvis_pos, source.frame_rate, name=source.name
    )
    root_pos = pelvis_pos - (motion.world_positions_m()[:, t_pelvis] - motion.root_translation_m)
    motion = motion.with_rotations(local, root_pos)
    if config.pin_feet:
        motion = _pin_feet(source, source_rig, motion, target, config)
    return motion


def _hip_height(rest: np.ndarray, rig: Rig, index: dict[str, int]) -> float:
    hips = rest[[index[rig.bones["left_hip"]], index[rig.bones["right_hip"]]]].mean(0)
    ankles = rest[[index[rig.bones["left_ankle"]], index[rig.bones["right_ankle"]]]].mean(0)
    return float(np.linalg.norm(hips - ankles))


def foot_points(motion: Motion, rig: Rig) -> dict[str, np.ndarray]:
    """Per side, (T, P, 3) world positions of the mapped foot joints (ankle, toe)."""
    pos = motion.world_positions_m()
    out = {}
    for side, canon in FEET.items():
        idx = [motion.joint_index(rig.bones[c]) for c in canon if c in rig.bones]
        out[side] = pos[:, idx]
    return out


def contact_frames(
    motion: Motion, rig: Rig, config: RetargetConfig = RetargetConfig()
) -> dict[str, np.ndarray]:
    """Per side, (T,) booleans: the foot's lowest point is near the floor and slow. The floor is the 2nd
    percentile of the lowest foot point over the clip (captures are not always aligned to Z = 0)."""
    feet = foot_points(motion, rig)
    floor = np.percentile(np.min([p[..., 2].min(axis=1) for p in feet.values()], axis=0), 2)
    out = {}
    for side, pts in feet.items():
        low = pts[..., 2].min(axis=1) - floor
        speed = np.linalg.norm(np.gradient(pts, axis=0), axis=-1).min(axis=1) * motion.frame_rate
        out[side] = (low < config.contact_height_m) & (speed < config.contact_speed_m_s)
    return out


def _pin_feet(source: Motion, source_rig: Rig, motion: Motion, target: Rig, config: RetargetConfig) -> Motion:
    contacts = contact_frames(source, source_rig, config)
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
