"""Retargeting a motion onto another skeleton (a :class:`~export.rig.Rig`: a preset, a rig TOML or a user's
BVH skeleton).

Method (per frame, all vectorized over time):

1. For each mapped bone, an offset rotation turns the target's rest bone direction (joint -> its mapped
   child) onto the source's rest direction. This absorbs rest-pose differences (T-pose vs A-pose) and
   per-bone orientation differences. Feet are the exception (:data:`REST_RELATIVE`): they turn from their
   rest as the source's feet turn from theirs.
2. Target world rotation = source world rotation @ offset; unmapped target joints keep their rest pose
   relative to their parent; local rotations follow from the parents' world rotations.
3. The root moves with the source pelvis, scaled by the ratio of the rigs' leg lengths, over the source's
   floor put at Z = 0, heights shifted by the difference of the rigs' ankle heights above the sole (so that
   the legs bend as much as the source's). The source's floor is where its lowest foot joint stands on the
   ground: from the ground a body fit found (``ground_z``, body.npz's: a raised platform's top, where the
   fit anchored its contacts), else the 2nd percentile of the lowest foot joint over the clip (a BVH file,
   keypoints; a clip whose feet dip below its ground at times puts the floor too low).
4. Legs (``RetargetConfig.leg_ik``, :mod:`export.foot_ik`): each ankle aims at the source's ankle, scaled
   the same way. Where the source foot is planted (the contacts of the body fit when given, else found on
   the source's feet: near its floor and slow) the target is raised or lowered so the target foot's
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

import numpy as np
from mocap_studio.common.rotations import rotation_between
from mocap_studio.export.foot_ik import RetargetConfig, _leg_ik, _pin_feet, contact_frames
from mocap_studio.export.motion import Motion
from mocap_studio.export.rig import (
    DIRECTION_CHILD,
    FALLBACK_CHILD,
    FEET,
    REST_RELATIVE,
    Rig,
    _ankle_height,
    _floor_height,
    _leg_length,
    sole_clearance_m,
)

__all__ = ["RetargetConfig", "retarget"]

log = logging.getLogger(__name__)


def retarget(
    source: Motion, source_rig: Rig, target: Rig, config: RetargetConfig | None = None, contacts: np.ndarray | None = None,
    ground_z: float | None = None,
) -> Motion:
    """``source`` (a motion on ``source_rig``'s skeleton) played on ``target``'s skeleton. Returns a Motion
    with the target's joints, rest offsets (its own bone lengths) and the source's frame rate.

    contacts: (T, 2) bool, the source's left and right foot planted per frame, as a body fit decides them
    (body.npz's ``contact``); None finds them on the source's feet (:func:`~export.foot_ik.contact_frames`),
    for sources without a fit (BVH files, keypoints). ground_z: the height (metres, the source's Z) of the
    ground the source stands on, as a body fit finds it (body.npz's ``ground_z``); None: from the clip
    (see the module docstring).
    """
    config = config or RetargetConfig()
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
        # the bone's direction: to the same canonical child on both rigs (CMU has no spine2: its Spine aims at
        # spine3 on the source too)
        child = _common_child(canon, target.bones, source_rig.bones, tgt_rest, tgt_index, src_rest, src_index)
        d_tgt = _direction(tgt_rest, target.bones, tgt_index, canon, child)
        d_src = _direction(src_rest, source_rig.bones, src_index, canon, child)
        if d_tgt is not None and d_src is not None and canon not in REST_RELATIVE:
            offset = rotation_between(d_tgt, d_src)
        world[:, j] = src_rot[:, src_index[source_rig.bones[canon]]] @ offset
        if config.aim_bones and d_tgt is not None and d_src is not None and canon not in REST_RELATIVE:
            # where the source bone spans joints the target lacks (Anny's spine02), its direction is not its
            # start joint's rotation of the rest direction: swing the bone onto where the source bone points
            aim = rotation_between(world[:, j] @ d_tgt, _direction(src_pos, source_rig.bones, src_index, canon, child))
            swung = np.abs(aim - np.eye(3)).max(axis=(1, 2)) > 1e-9  # elsewhere the bone already points there
            world[swung, j] = aim[swung] @ world[swung, j]
    local = world.copy()
    for j in range(1, n_joints):
        local[:, j] = np.swapaxes(world[:, target.parents[j]], 1, 2) @ world[:, j]
    # root: follow the source pelvis, scaled by hip height, over the source's floor put at Z = 0
    s_pelvis, t_pelvis = src_index[source_rig.bones["pelvis"]], tgt_index[target.bones["pelvis"]]
    scale = _leg_length(tgt_rest, target, tgt_index) / _leg_length(src_rest, source_rig, src_index)
    # heights: the source's floor to Z = 0, and the ankles' heights above the soles (feet differ more than
    # legs between rigs) swapped, so that the legs bend as the source's do
    ankle_lift = _ankle_height(tgt_rest, target, tgt_index) - scale * _ankle_height(src_rest, source_rig, src_index)
    src_floor = np.array([0.0, 0.0, _source_floor(source, source_rig, ground_z) - ankle_lift / scale])
    pelvis_pos = (src_pos[:, s_pelvis] - src_floor) * scale
    offsets = tgt_rest.copy()
    offsets[1:] = tgt_rest[1:] - tgt_rest[target.parents[1:]]
    motion = Motion(target.joints, target.parents, offsets, local, pelvis_pos, source.frame_rate, name=source.name)
    root_pos = pelvis_pos - (motion.world_positions_m()[:, t_pelvis] - motion.root_translation_m)
    motion = motion.with_rotations(local, root_pos)
    if not (config.leg_ik or config.pin_feet):
        return motion
    planted = contact_frames(source, source_rig, config) if contacts is None else _contacts_by_side(contacts, n_frames)
    if config.leg_ik:
        targets = {side: (src_pos[:, src_index[source_rig.bones[f"{side}_ankle"]]] - src_floor) * scale for side in FEET}
        return _leg_ik(motion, target, targets, planted, config)
    return _pin_feet(motion, target, planted)


def _source_floor(source: Motion, rig: Rig, ground_z: float | None) -> float:
    """Height (metres) of the source's lowest foot joint when its foot stands on the ground: ``ground_z``
    plus that joint's rest height above the rig's sole, else :func:`~export.rig._floor_height` over the
    clip."""
    if ground_z is not None and np.isfinite(ground_z):
        return float(ground_z) + sole_clearance_m(rig)
    return _floor_height(source, rig)


def _contacts_by_side(contacts: np.ndarray, n_frames: int) -> dict[str, np.ndarray]:
    """Per side, (T,) bool from contacts (T, 2) (left, then right: body.npz's order)."""
    c = np.asarray(contacts)
    if c.shape != (n_frames, 2):
        raise ValueError(f"contacts must have shape ({n_frames}, 2) (left and right foot per frame), got {c.shape}")
    return {side: c[:, i].astype(bool) for i, side in enumerate(("left", "right"))}


def _common_child(canon: str, bones_a: dict[str, str], bones_b: dict[str, str], rest_a: np.ndarray,
                  index_a: dict[str, int], rest_b: np.ndarray, index_b: dict[str, int]) -> str | None:
    """The first canonical child of ``canon`` (:data:`DIRECTION_CHILD`, then :data:`FALLBACK_CHILD`) that both
    rigs map at a distance from the joint, or None."""
    if canon not in bones_a or canon not in bones_b:
        return None
    for child in (DIRECTION_CHILD.get(canon),) + FALLBACK_CHILD.get(canon, ()):
        if child and child in bones_a and child in bones_b and all(
            np.linalg.norm(rest[index[bones[child]]] - rest[index[bones[canon]]]) > 1e-6
            for rest, bones, index in ((rest_a, bones_a, index_a), (rest_b, bones_b, index_b))
        ):
            return child
    return None


def _direction(rig_rest: np.ndarray, bones: dict[str, str], index: dict[str, int], canon: str,
               child: str | None) -> np.ndarray | None:
    """The direction (..., 3) from the joint ``canon`` to the joint ``child`` in ``rig_rest`` (..., J, 3); None
    for no child."""
    if child is None:
        return None
    return rig_rest[..., index[bones[child]], :] - rig_rest[..., index[bones[canon]], :]
