"""Rigs for retargeting: the skeletons people use, defined as data, or a user's skeleton, and what retargeting
measures on them.

A :class:`Rig` is a skeleton (joint names, parents, rest joint positions in metres, Z up, facing -Y) plus a
map from the canonical humanoid joint names (the SMPL-24 names: ``pelvis``, ``left_hip``, ``left_knee``,
...) to its bones. Presets live in ``configs/retarget/<name>.toml`` (Mixamo, UE5 mannequin, Unity humanoid,
CMU BVH, SMPL-24); a user skeleton comes from a BVH file with :func:`rig_from_bvh`, its bones mapped by a
preset's table or automatically (:func:`auto_bones`).
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
        """Raise ValueError, naming the rig and what to add, when a bone of :data:`REQUIRED` is not mapped;
        ``role`` ("source" or "target") says which side of a retarget the rig is on."""
        missing = [c for c in REQUIRED if c not in self.bones]
        if missing:
            raise ValueError(
                f"{role} rig {self.name!r} ({self.source or 'given in code'}) lacks required bone(s) "
                f"{missing}; "
                f"add them to its [bones] table (canonical name = rig bone name)"
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


class _Skeleton:
    """A skeleton's joints as :func:`auto_bones` walks them: names split into (side, base), children,
    parents."""

    def __init__(self, motion: Motion) -> None:
        self.names = motion.joint_names
        self.parents = np.asarray(motion.parents)
        self.split = [_split_name(n) for n in self.names]
        self.children: list[list[int]] = [[] for _ in self.names]
        for j, p in enumerate(self.parents):
            if p >= 0:
                self.children[p].append(j)

    def find(self, side: str | None, aliases: tuple[str, ...]) -> int | None:
        """The first joint on ``side`` whose base name is one of ``aliases`` (alias order first, then the
        shallowest joint), or None."""
        for alias in aliases:
            hits = [j for j, (s, b) in enumerate(self.split) if s == side and b == alias]
            if hits:
                return hits[0]
        return None

    def up(self, j: int) -> int:
        """The parent of ``j`` with helper bones (twist/roll) skipped; -1 above the root."""
        p = int(self.parents[j])
        while p >= 0 and any(k in self.split[p][1] for k in _SKIP):
            p = int(self.parents[p])
        return p

    def chain(self, j: int) -> list[int]:
        """``j`` and its ancestors up to the root."""
        out = [j]
        while self.parents[out[-1]] >= 0:
            out.append(int(self.parents[out[-1]]))
        return out

    def on_side(self, side: str, *joints: int) -> bool:
        """True when every joint exists and its name says ``side``."""
        return all(j >= 0 and self.split[j][0] == side for j in joints)


def _map_limb(sk: _Skeleton, side: str, out: dict[str, int], end: str, tip: str, tip_word: str,
              joints: tuple[str, ...]) -> None:
    """Map one limb of ``side`` into ``out``: its end (``end``, found by name), the end's child ``tip``
    (preferably one whose name holds ``tip_word``), and up the limb the canonical ``joints`` (the first two
    together, the third, if any, when it is on the same side)."""
    j_end = sk.find(side, _ALIASES[end])
    if j_end is None:
        return
    out[f"{side}_{end}"] = j_end
    kids = sk.children[j_end]
    if kids:
        preferred = [k for k in kids if tip_word in sk.split[k][1]]
        out[f"{side}_{tip}"] = (preferred or kids)[0]
    lower = sk.up(j_end)
    upper = sk.up(lower) if lower >= 0 else -1
    if not sk.on_side(side, lower, upper):
        return
    out[f"{side}_{joints[0]}"], out[f"{side}_{joints[1]}"] = lower, upper
    if len(joints) > 2:
        top = sk.up(upper)
        if sk.on_side(side, top):
            out[f"{side}_{joints[2]}"] = top


def _map_trunk(sk: _Skeleton, out: dict[str, int]) -> None:
    """Map the pelvis (where the legs meet, else by name), the head (by name) and the spine between them
    into ``out`` (the limbs already mapped)."""
    if "left_hip" in out and "right_hip" in out:  # the pelvis: where the legs meet
        left = sk.chain(out["left_hip"])[1:]
        common = [j for j in sk.chain(out["right_hip"])[1:] if j in left]
        if common:
            out["pelvis"] = common[0]
    elif (pelvis := sk.find(None, _ALIASES["pelvis"])) is not None:
        out["pelvis"] = pelvis
    head = sk.find(None, _ALIASES["head"])
    if head is None or "pelvis" not in out or out["pelvis"] not in sk.chain(head):
        return
    out["head"] = head
    path = sk.chain(head)[1:]
    spine = path[: path.index(out["pelvis"])][::-1]  # pelvis (excluded) .. under the head
    if not spine:
        return
    necks = [j for j in spine if "neck" in sk.split[j][1]]
    neck = necks[0] if necks else spine[-1]
    out["neck"] = neck
    body = spine[: spine.index(neck)] or [neck]
    tops = [out.get(f"{side}_collar", out.get(f"{side}_shoulder")) for side in ("left", "right")]
    arms = [sk.up(t) for t in tops if t is not None]  # where each arm attaches
    chest = next((a for a in arms if a in body), body[-1])
    out["spine1"] = body[0]
    if chest != body[0]:
        out["spine3"] = chest
        mid = body[1 : body.index(chest)] if chest in body else []
        if mid:
            out["spine2"] = mid[len(mid) // 2]


def auto_bones(motion: Motion) -> dict[str, str]:
    """Map a skeleton's joints to the canonical humanoid joints by names (common aliases) and topology.

    Hands/wrists, feet/ankles and the head are found by name; elbow, shoulder and collar are the wrist's
    ancestors (twist bones skipped), knee and hip the ankle's; the pelvis is where the legs meet; the spine
    is the chain from the pelvis to the head (neck = the first 'neck' joint on it, else the joint under the
    head; spine3 = where the arms attach). Joints that cannot be found are left out (the caller checks
    :data:`REQUIRED`)."""
    sk = _Skeleton(motion)
    out: dict[str, int] = {}
    for side in ("left", "right"):
        _map_limb(sk, side, out, "wrist", "hand", "middle", ("elbow", "shoulder", "collar"))
        _map_limb(sk, side, out, "ankle", "foot", "toe", ("knee", "hip"))
    _map_trunk(sk, out)
    return {c: sk.names[j] for c, j in out.items()}


# rig measurements


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
