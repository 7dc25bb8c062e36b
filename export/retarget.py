"""Retargeting a motion onto another skeleton: the rigs people use, defined as data, or a user's skeleton.

A :class:`Rig` is a skeleton (joint names, parents, rest joint positions in metres, Z up, facing -Y) plus a
map from the canonical humanoid joint names (the SMPL-24 names: ``pelvis``, ``left_hip``, ``left_knee``,
...) to its bones. Presets live in ``configs/retarget/<name>.toml`` (Mixamo, UE5 mannequin, Unity humanoid,
CMU BVH, SMPL-24); a user skeleton comes from a BVH file with :func:`rig_from_bvh`.

Method (per frame, all vectorized over time):

1. For each mapped bone, an offset rotation turns the target's rest bone direction (joint -> its mapped
   child) onto the source's rest direction. This absorbs rest-pose differences (T-pose vs A-pose) and
   per-bone orientation differences. Feet are the exception (:data:`REST_RELATIVE`): they turn from their
   rest as the source's feet turn from theirs.
2. Target world rotation = source world rotation @ offset; unmapped target joints keep their rest pose
   relative to their parent; local rotations follow from the parents' world rotations.
3. The root moves with the source pelvis, scaled by the ratio of the rigs' leg lengths, over the source's
   floor (the 2nd percentile of its lowest foot joint) put at Z = 0, heights shifted by the difference of
   the rigs' ankle heights above the sole (so that the legs bend as much as the source's).
4. Legs (``RetargetConfig.leg_ik``): each ankle aims at the source's ankle, scaled the same way. Where the
   source foot is planted (near its floor and slow) the target is raised or lowered so the target foot's
   lowest joint stands at its rest height above the floor (the rig's sole clearance), faded in and out
   over ``ik_blend_s``; no foot ever goes below that height. The pelvis drops where a leg could not
   otherwise reach (smoothly, never by less than needed), then an analytic two-bone IK turns hip and knee
   with the knee bending the way it bends now (so it keeps pointing where the source's does; the thigh's
   axis decides where the leg is straight) and the foot keeps its world orientation. Both feet plant in
   double support whatever the rigs' proportions.
5. A rig whose root is a ground bone above the pelvis (the UE5 mannequin's ``root``) gets the pelvis's
   horizontal path on it, and the pelvis's height change from rest: the root stays under the pelvis, on
   the floor up to the pelvis's bob (a Motion animates only the root's translation, so the pelvis cannot
   carry the bob itself; on the CMU walk the root is 0 to 9 cm below the floor).

The result is a :class:`~export.motion.Motion` on the target skeleton with the target's own bone lengths.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from mocap_studio.common.config import ConfigError, load_toml
from mocap_studio.common.rotations import rotvec_to_rotmat
from mocap_studio.export.motion import Motion

log = logging.getLogger(__name__)

RIG_DIR = Path(str(resources.files("mocap_studio.configs") / "retarget"))
PRESETS = ("mixamo", "ue5_mannequin", "unity_humanoid", "cmu_bvh", "smpl24")
REQUIRED = (
    "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "spine1",
    "neck", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist",
)
"""Canonical joints every source and target rig must map."""
DIRECTION_CHILD = {
    "spine1": "spine2", "spine2": "spine3", "spine3": "neck", "neck": "head",
    **{f"{s}_{a}": f"{s}_{b}" for s in ("left", "right") for a, b in (
        ("hip", "knee"), ("knee", "ankle"), ("ankle", "foot"), ("collar", "shoulder"), ("shoulder", "elbow"),
        ("elbow", "wrist"), ("wrist", "hand"))},
}
"""The canonical child whose direction a joint's rotation aims (the bone the joint moves)."""
FALLBACK_CHILD = {"spine1": ("spine3", "neck", "head"), "spine2": ("neck",), "spine3": ("head",)}
FEET = {"left": ("left_ankle", "left_foot"), "right": ("right_ankle", "right_foot")}
REST_RELATIVE = frozenset(("left_ankle", "right_ankle", "left_foot", "right_foot"))
"""Joints turned as the source's turn from its rest, not aimed along the source's bone: every rig stands
with its feet flat at rest, and aiming the foot bone (ankle -> toe) would tilt a foot whose ankle sits
higher above the toe than the source's (UE5: 6 cm, CMU: 1.4 cm) toe-up by 25 degrees."""


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
            raise ValueError(f"rig {self.name} ({self.source}): [bones] names joints it does not have: {unknown}")
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


def rig_from_bvh(path: str | os.PathLike, bones: dict[str, str] | str | None = None, unit_m: float = 0.01) -> Rig:
    """A user skeleton from a BVH file. ``bones`` maps canonical names to its joints, or names a preset
    whose [bones] table fits (e.g. 'mixamo', 'cmu_bvh'); None uses a preset whose whole skeleton the file
    has, else maps the skeleton automatically (:func:`auto_bones`). ValueError names the file and the
    required bones that could not be found."""
    from mocap_studio.export.bvh import read_bvh

    motion = read_bvh(path, unit_m=unit_m)
    if isinstance(bones, str):
        bones = load_rig(bones).bones
    if bones is None:
        bones = _preset_bones(motion.joint_names)
        if bones is None:
            bones = auto_bones(motion)
            missing = [c for c in REQUIRED if c not in bones]
            if missing:
                raise ValueError(
                    f"{path}: no humanoid bone found for {missing} (looked for names such as Hips/Pelvis, "
                    f"Spine/Chest, Neck, Head, Left/Right + UpLeg/Thigh/Hip, Leg/Knee, Foot/Ankle, Arm/Shoulder, "
                    f"ForeArm/Elbow, Hand/Wrist, and the chains between them); the file's joints are "
                    f"{list(motion.joint_names)}; pass a bone map (canonical name -> joint) instead"
                )
            log.info("%s: bones mapped automatically: %s", Path(path).name, bones)
    bones = {k: v for k, v in bones.items() if v in motion.joint_names}
    return rig_from_motion(motion, bones, name=Path(path).stem)


def _preset_bones(joint_names: tuple[str, ...]) -> dict[str, str] | None:
    """The [bones] table of a preset whose every joint the skeleton has (the very rig), or None."""
    names = set(joint_names)
    for preset in PRESETS:
        rig = load_rig(preset)
        if set(rig.joints) <= names and all(c in rig.bones for c in REQUIRED):
            return dict(rig.bones)
    return None


_SIDE_PATTERNS = (
    (re.compile(r"^(?:(?i:left)|L(?=[A-Z0-9_.\s-])|l[_.\s-])"), "left"),
    (re.compile(r"^(?:(?i:right)|R(?=[A-Z0-9_.\s-])|r[_.\s-])"), "right"),
    (re.compile(r"(?:(?i:left)|[_.\s-][lL])$"), "left"),
    (re.compile(r"(?:(?i:right)|[_.\s-][rR])$"), "right"),
)
"""Where a joint name says its side: 'Left...', 'LHipJoint', 'l_hip', '...Left', 'thigh_l', 'Foot.L'."""
_ALIASES: dict[str, tuple[str, ...]] = {
    "wrist": ("hand", "wrist"),
    "ankle": ("foot", "ankle"),
    "head": ("head",),
    "pelvis": ("hips", "hip", "pelvis"),
}
"""Name aliases (lower case, side and namespace removed) of the joints found by name; the others follow
from these by the skeleton's topology."""
_SKIP = ("twist", "roll")
"""Helper bones (twist/roll) between limb joints: skipped when walking up a limb."""


def _split_name(name: str) -> tuple[str | None, str]:
    """(side or None, base name in lower case without separators) of a joint name such as
    'mixamorig:LeftUpLeg', 'LHipJoint', 'upperarm_l', 'Bip01 L Foot'."""
    base = re.split(r"[:|]", name)[-1]
    base = re.sub(r"^bip\d*[_\s]*", "", base, flags=re.IGNORECASE)
    for pattern, side in _SIDE_PATTERNS:
        m = pattern.search(base)
        if m:
            rest = base[: m.start()] + base[m.end():]
            return side, re.sub(r"[^a-z0-9]", "", rest.lower())
    return None, re.sub(r"[^a-z0-9]", "", base.lower())


def auto_bones(motion: Motion) -> dict[str, str]:
    """Map a skeleton's joints to the canonical humanoid joints by names (common aliases) and topology.

    Hands/wrists, feet/ankles and the head are found by name; elbow, shoulder and collar are the wrist's
    ancestors (twist bones skipped), knee and hip the ankle's; the pelvis is where the legs meet; the spine
    is the chain from the pelvis to the head (neck = the first 'neck' joint on it, else the joint under the
    head; spine3 = where the arms attach). Joints that cannot be found are left out (the caller checks
    :data:`REQUIRED`)."""
    names = motion.joint_names
    parents = np.asarray(motion.parents)
    split = [_split_name(n) for n in names]
    children: list[list[int]] = [[] for _ in names]
    for j, p in enumerate(parents):
        if p >= 0:
            children[p].append(j)

    def find(side: str | None, aliases: tuple[str, ...]) -> int | None:
        for alias in aliases:  # alias order first, then the shallowest joint
            hits = [j for j, (s, b) in enumerate(split) if s == side and b == alias]
            if hits:
                return hits[0]
        return None

    def up(j: int) -> int:
        p = int(parents[j])
        while p >= 0 and any(k in split[p][1] for k in _SKIP):
            p = int(parents[p])
        return p

    def chain(j: int) -> list[int]:
        out = [j]
        while parents[out[-1]] >= 0:
            out.append(int(parents[out[-1]]))
        return out

    out: dict[str, int] = {}
    for side in ("left", "right"):
        wrist = find(side, _ALIASES["wrist"])
        if wrist is not None:
            out[f"{side}_wrist"] = wrist
            kids = children[wrist]
            if kids:
                middle = [k for k in kids if "middle" in split[k][1]]
                out[f"{side}_hand"] = (middle or kids)[0]
            elbow = up(wrist)
            shoulder = up(elbow) if elbow >= 0 else -1
            if elbow >= 0 and shoulder >= 0 and split[elbow][0] == side and split[shoulder][0] == side:
                out[f"{side}_elbow"], out[f"{side}_shoulder"] = elbow, shoulder
                collar = up(shoulder)
                if collar >= 0 and split[collar][0] == side:
                    out[f"{side}_collar"] = collar
        ankle = find(side, _ALIASES["ankle"])
        if ankle is not None:
            out[f"{side}_ankle"] = ankle
            kids = children[ankle]
            if kids:
                toes = [k for k in kids if "toe" in split[k][1]]
                out[f"{side}_foot"] = (toes or kids)[0]
            knee = up(ankle)
            hip = up(knee) if knee >= 0 else -1
            if knee >= 0 and hip >= 0 and split[knee][0] == side and split[hip][0] == side:
                out[f"{side}_knee"], out[f"{side}_hip"] = knee, hip
    if "left_hip" in out and "right_hip" in out:  # the pelvis: where the legs meet
        left = chain(out["left_hip"])[1:]
        common = [j for j in chain(out["right_hip"])[1:] if j in left]
        if common:
            out["pelvis"] = common[0]
    elif (pelvis := find(None, _ALIASES["pelvis"])) is not None:
        out["pelvis"] = pelvis
    head = find(None, _ALIASES["head"])
    if head is not None and "pelvis" in out and out["pelvis"] in chain(head):
        out["head"] = head
        path = chain(head)[1:]
        spine = path[: path.index(out["pelvis"])][::-1]  # pelvis (excluded) .. under the head
        necks = [j for j in spine if "neck" in split[j][1]]
        if spine:
            neck = necks[0] if necks else spine[-1]
            out["neck"] = neck
            body = spine[: spine.index(neck)] or [neck]
            tops = [out.get(f"{side}_collar", out.get(f"{side}_shoulder")) for side in ("left", "right")]
            arms = [up(t) for t in tops if t is not None]  # where each arm attaches
            chest = next((a for a in arms if a in body), body[-1])
            out["spine1"] = body[0]
            if chest != body[0]:
                out["spine3"] = chest
                mid = body[1: body.index(chest)] if chest in body else []
                if mid:
                    out["spine2"] = mid[len(mid) // 2]
    return {c: names[j] for c, j in out.items()}


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


def _direction(rig_rest: np.ndarray, bones: dict[str, str], index: dict[str, int], canon: str) -> np.ndarray | None:
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
    """Correct the target's root height so planted feet touch the floor (used when ``leg_ik`` is off)."""
    leg_ik: bool = True
    """Two-bone IK on each leg towards the source's feet scaled to the target; planted feet on the floor."""
    ik_blend_s: float = 0.1
    """The planting correction fades in and out over this many seconds around each contact."""
    reach: float = 0.999
    """A leg is stretched to at most this fraction of its length (a straight knee has no bend direction)."""


def retarget(source: Motion, source_rig: Rig, target: Rig, config: RetargetConfig = RetargetConfig()) -> Motion:
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
        if d_tgt is not None and d_src is not None and canon not in REST_RELATIVE:
            offset = _min_rotation(d_tgt, d_src)
        world[:, j] = src_rot[:, src_index[source_rig.bones[canon]]] @ offset
    local = world.copy()
    for j in range(1, n_joints):
        local[:, j] = np.swapaxes(world[:, target.parents[j]], 1, 2) @ world[:, j]
    # root: follow the source pelvis, scaled by hip height, over the source's floor put at Z = 0
    s_pelvis, t_pelvis = src_index[source_rig.bones["pelvis"]], tgt_index[target.bones["pelvis"]]
    scale = _leg_length(tgt_rest, target, tgt_index) / _leg_length(src_rest, source_rig, src_index)
    # heights: the source's floor to Z = 0, and the ankles' heights above the soles (feet differ more than
    # legs between rigs) swapped, so that the legs bend as the source's do
    ankle_lift = _ankle_height(tgt_rest, target, tgt_index) - scale * _ankle_height(src_rest, source_rig, src_index)
    src_floor = np.array([0.0, 0.0, _floor_height(source, source_rig) - ankle_lift / scale])
    pelvis_pos = (src_pos[:, s_pelvis] - src_floor) * scale
    offsets = tgt_rest.copy()
    offsets[1:] = tgt_rest[1:] - tgt_rest[target.parents[1:]]
    motion = Motion(target.joints, target.parents, offsets, local, pelvis_pos, source.frame_rate, name=source.name)
    root_pos = pelvis_pos - (motion.world_positions_m()[:, t_pelvis] - motion.root_translation_m)
    motion = motion.with_rotations(local, root_pos)
    if config.leg_ik:
        targets = {side: (src_pos[:, src_index[source_rig.bones[f"{side}_ankle"]]] - src_floor) * scale for side in FEET}
        motion = _leg_ik(motion, target, targets, contact_frames(source, source_rig, config), config)
    elif config.pin_feet:
        motion = _pin_feet(source, source_rig, motion, target, config)
    return motion


def _ankle_height(rest: np.ndarray, rig: Rig, index: dict[str, int]) -> float:
    """Mean rest height of the ankles above the lowest mapped foot joint (the sole), metres."""
    ankles = [index[rig.bones[f"{side}_ankle"]] for side in FEET]
    return float(rest[ankles, 2].mean() - _sole_z(rest, rig, index))


def _sole_z(rest: np.ndarray, rig: Rig, index: dict[str, int]) -> float:
    feet = [index[rig.bones[c]] for side in FEET.values() for c in side if c in rig.bones]
    return float(rest[feet, 2].min())


def _leg_length(rest: np.ndarray, rig: Rig, index: dict[str, int]) -> float:
    """Mean over both legs of thigh + shin length, metres: the scale between rigs. (Hip height would
    mislead where a rest pose splays the legs, as the CMU skeleton's does by about 20 degrees.)"""
    total = 0.0
    for side in FEET:
        hip, knee, ankle = (rest[index[rig.bones[f"{side}_{c}"]]] for c in ("hip", "knee", "ankle"))
        total += np.linalg.norm(knee - hip) + np.linalg.norm(ankle - knee)
    return float(total / 2)


def foot_points(motion: Motion, rig: Rig) -> dict[str, np.ndarray]:
    """Per side, (T, P, 3) world positions of the mapped foot joints (ankle, toe)."""
    pos = motion.world_positions_m()
    out = {}
    for side, canon in FEET.items():
        idx = [motion.joint_index(rig.bones[c]) for c in canon if c in rig.bones]
        out[side] = pos[:, idx]
    return out


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


def _floor_height(motion: Motion, rig: Rig) -> float:
    """The 2nd percentile over the clip of the lowest foot joint's height (captures are not always aligned
    to Z = 0), metres."""
    feet = foot_points(motion, rig)
    return float(np.percentile(np.min([p[..., 2].min(axis=1) for p in feet.values()], axis=0), 2))


def sole_clearance_m(rig: Rig) -> float:
    """Height of the rig's lowest mapped foot joint in its rest pose (standing on Z = 0): where that joint
    sits when the foot is flat on the floor."""
    return _sole_z(rig.rest_positions_m, rig, {n: i for i, n in enumerate(rig.joints)})


def feet_above_floor_m(motion: Motion, rig: Rig) -> dict[str, np.ndarray]:
    """Per side, (T,) how far the foot's lowest mapped joint is above where it sits when the foot is flat on
    the floor (0 = planted, negative = through the floor)."""
    clearance = sole_clearance_m(rig)
    return {side: pts[..., 2].min(axis=1) - clearance for side, pts in foot_points(motion, rig).items()}


def _min_rotation_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T, 3, 3) smallest rotations turning directions ``a`` (T, 3) onto ``b`` (T, 3); identity where either
    is zero or they are opposite (a leg folded back on itself, which the reach limit prevents)."""
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    axis = np.cross(a, b)
    sin = np.linalg.norm(axis, axis=-1)
    angle = np.arctan2(sin, np.sum(a * b, axis=-1))
    rotvec = np.where((sin > 1e-12)[:, None], axis / np.maximum(sin, 1e-12)[:, None] * angle[:, None], 0.0)
    return rotvec_to_rotmat(rotvec)


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
        turn_hip = _min_rotation_batch(k - h, knee_goal - h)
        below_hip = _subtree(parents, hip)
        world_rot[:, below_hip] = turn_hip[:, None] @ world_rot[:, below_hip]
        moved_ankle = h + (turn_hip @ (a - h)[..., None])[..., 0]
        turn_knee = _min_rotation_batch(moved_ankle - knee_goal, ankle_goal - knee_goal)
        below_knee = _subtree(parents, knee)
        world_rot[:, below_knee] = turn_knee[:, None] @ world_rot[:, below_knee]
        world_rot[:, _subtree(parents, ankle)] = keep
    local = world_rot.copy()
    for j in range(1, motion.num_joints):
        local[:, j] = np.swapaxes(world_rot[:, parents[j]], 1, 2) @ world_rot[:, j]
    return motion.with_rotations(local, root)
