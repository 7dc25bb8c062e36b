"""The avatar: the fitted body's mesh skinned to a retarget rig, and the rest-pose mesh for try-on tools.

A retarget rig (:class:`~export.rig.Rig`: Mixamo, the UE5 mannequin, ...) is a naming, a hierarchy and a
rest pose (T-pose, identity rest rotations); its preset bone lengths belong to some other character. To carry
the performer's body, :func:`body_avatar` keeps the rig's names, hierarchy and rest bone directions and moves
its joints into the body:

1. The body is posed into the rig's rest pose: each mapped body bone turned onto the rig's rest direction of
   the same bone (the retargeting of the rig's rest pose onto the body skeleton, no leg IK), the body mesh
   deformed with the body model's own skinning weights (linear blend skinning).
2. Each rig joint mapped to a body joint (the rig's and the body's [bones] tables, canonical SMPL-24 names)
   takes that body joint's position; an unmapped rig joint between two mapped ones (UE5 ``spine_04``) keeps
   its place on the segment's similarity; an unmapped end (``HeadTop_End``, ``Toe_End``) goes where its
   parent's part of the mesh ends in the preset's direction (the crown, the toe tips). The rig stands with the
   mesh's sole at Z = 0.
3. Skin weights: each body joint's weight goes to the rig bone its canonical name maps to; a body joint with
   no rig bone (toes, fingers, twist and extra spine bones, the face) passes its weight to its nearest
   mapped ancestor. At most 4 influences per vertex (glTF's and most engines' limit), renormalised.

Played with the body's motion retargeted onto this rig, the mesh follows the body model: the difference is
what the rig cannot express (the merged joints' own rotations: toes, fingers, twist and spine bones between
mapped ones) and what retargeting changes on purpose (leg IK, the floor at Z = 0).

:func:`rest_mesh_apose` gives the body at rest in an A-pose (upper arms 45 degrees below horizontal), its
holes closed (:func:`~export.mesh.close_holes`), for try-on tools.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
from mocap_studio.common.rotations import rotation_between
from mocap_studio.export.foot_ik import RetargetConfig
from mocap_studio.export.mesh import SkinnedMesh, close_holes, skin
from mocap_studio.export.motion import Motion
from mocap_studio.export.retarget import retarget
from mocap_studio.export.rig import Rig, _leg_length

log = logging.getLogger(__name__)

MAX_INFLUENCES = 4
"""Joint influences per vertex in the avatar's files (glTF's JOINTS_0/WEIGHTS_0; Unity's default)."""

APOSE_ARM_DEG = 45.0
"""The A-pose's upper-arm angle below horizontal."""


@dataclass(frozen=True, eq=False)
class Avatar:
    """A rig fitted to a body and the body's mesh bound to it."""

    rig: Rig
    """The target rig with its joints moved into the body (names, hierarchy, rest directions kept)."""
    mesh: SkinnedMesh
    """The body mesh in the rig's rest pose, skinned to the rig's joints (at most :data:`MAX_INFLUENCES`)."""
    body_to_rig: np.ndarray
    """(J_body,) the rig joint that takes each body joint's skin weight."""


def _rest_motion(rig: Rig) -> Motion:
    """One frame of the rig in its rest pose (identity local rotations)."""
    rest = rig.rest_positions_m
    offsets = rest.copy()
    offsets[1:] = rest[1:] - rest[rig.parents[1:]]
    n = len(rig.joints)
    return Motion(rig.joints, rig.parents, offsets, np.broadcast_to(np.eye(3), (1, n, 3, 3)).copy(),
                  rest[:1].copy(), 30.0, name=rig.name)


def _mapped_pairs(body_rig: Rig, target: Rig) -> dict[int, int]:
    """Rig joint index -> body joint index for every canonical bone both rigs map."""
    body_index = {n: i for i, n in enumerate(body_rig.joints)}
    tgt_index = {n: i for i, n in enumerate(target.joints)}
    return {tgt_index[t]: body_index[body_rig.bones[c]] for c, t in target.bones.items() if c in body_rig.bones}


def body_to_rig_joints(body_rig: Rig, target: Rig) -> np.ndarray:
    """(J_body,) for each body joint, the rig joint that takes its skin weight: the rig bone its canonical name
    maps to, else its nearest mapped ancestor's (the body's root is always mapped: the pelvis)."""
    rig_of_body = {b: t for t, b in _mapped_pairs(body_rig, target).items()}
    out = np.full(len(body_rig.joints), -1, np.int64)
    for j in range(len(body_rig.joints)):  # parents come first
        if j in rig_of_body:
            out[j] = rig_of_body[j]
        elif body_rig.parents[j] >= 0:
            out[j] = out[body_rig.parents[j]]
    if np.any(out < 0):
        raise ValueError(f"body rig {body_rig.name!r}: its root is not mapped to the pelvis of rig {target.name!r}")
    return out


def _first_mapped_descendant(parents: np.ndarray, mapped: set[int], j: int) -> int | None:
    """The shallowest mapped joint below ``j`` (BFS order), or None."""
    frontier = [j]
    while frontier:
        kids = [int(k) for f in frontier for k in np.flatnonzero(parents == f)]
        hits = [k for k in kids if k in mapped]
        if hits:
            return hits[0]
        frontier = kids
    return None


def _nearest_mapped_ancestor(parents: np.ndarray, mapped: set[int], j: int) -> int | None:
    p = int(parents[j])
    while p >= 0 and p not in mapped:
        p = int(parents[p])
    return p if p >= 0 else None


def fitted_rig_positions(target: Rig, placed: dict[int, np.ndarray], global_scale: float,
                         surface: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(J, 3) rest positions of ``target``'s joints with the mapped ones at ``placed`` (rig index -> position)
    and the others placed around them (see the module docstring, step 2). ``surface``: the mesh's vertices
    (V, 3) and the rig joint that carries most of each (V,); an end beyond the last mapped joint of its chain
    (Mixamo's HeadTop_End, Toe_End) then goes where that joint's part of the mesh ends in the end's preset
    direction (the crown, the tip of the toes)."""
    old = target.rest_positions_m
    parents = target.parents
    mapped = set(placed)
    new = np.zeros_like(old)
    for j, pos in placed.items():
        new[j] = pos
    for j in range(len(old)):
        if j in mapped:
            continue
        a = _nearest_mapped_ancestor(parents, mapped, j)
        d = _first_mapped_descendant(parents, mapped, j)
        if a is None:  # above the pelvis (UE5's ground bone): the pelvis's place, scaled (the caller sets the floor)
            anchor = _first_mapped_descendant(parents, mapped, j)
            assert anchor is not None, "the pelvis is mapped"
            new[j] = new[anchor] + global_scale * (old[j] - old[anchor])
        elif d is not None:  # between two mapped joints: the similarity taking a -> d onto its new place
            d_old, d_new = old[d] - old[a], new[d] - new[a]
            s = np.linalg.norm(d_new) / max(np.linalg.norm(d_old), 1e-9)
            new[j] = new[a] + s * rotation_between(d_old, d_new) @ (old[j] - old[a])
        else:  # an end: its offset scaled as the mapped parent's own bone was
            pa = _nearest_mapped_ancestor(parents, mapped, a)
            s = global_scale
            if pa is not None and np.linalg.norm(old[a] - old[pa]) > 1e-6:
                s = np.linalg.norm(new[a] - new[pa]) / np.linalg.norm(old[a] - old[pa])
            new[j] = new[a] + s * (old[j] - old[a])
            if surface is not None and _first_mapped_descendant(parents, mapped, a) is None:
                verts, owner = surface
                mine = verts[owner == a]
                u = (old[j] - old[a]) / max(np.linalg.norm(old[j] - old[a]), 1e-9)
                if len(mine) and np.linalg.norm(old[j] - old[a]) > 1e-6:
                    new[j] = new[a] + max(float(((mine - new[a]) @ u).max()), 0.0) * u
    return new


def body_avatar(body_motion: Motion, body_rig: Rig, body_mesh: SkinnedMesh, target: Rig) -> Avatar:
    """The body's mesh on ``target``'s rig fitted to the body.

    body_motion: the body on its own skeleton (:func:`export.amass.motion_from_body`; its rest pose is used,
    not its frames); body_rig: that skeleton with its canonical [bones] map; body_mesh: the body's rest mesh
    with the model's skinning weights (any number of influences) on ``body_motion``'s joints; target: the rig.
    """
    target.check_required("target")
    body_rig.check_required("source")
    body_mesh.check_skeleton(body_motion)
    if body_mesh.vertices_m.size == 0:
        raise ValueError("the body mesh has no vertices")
    flat = RetargetConfig(leg_ik=False, pin_feet=False)
    # the body in the rig's rest pose, on the body motion's own rest skeleton (the mesh's)
    posed = retarget(_rest_motion(target), target, replace(body_rig, rest_positions_m=body_motion.rest_positions_m()), flat)
    verts = skin(body_mesh, posed)[0]
    joints = posed.world_positions_m()[0]
    pairs = _mapped_pairs(body_rig, target)
    scale = _leg_length(joints, body_rig, {n: i for i, n in enumerate(body_rig.joints)}) / _leg_length(
        target.rest_positions_m, target, {n: i for i, n in enumerate(target.joints)})
    to_rig = body_to_rig_joints(body_rig, target)
    dense = np.zeros((body_mesh.num_vertices, len(target.joints)))
    np.add.at(dense, (np.arange(body_mesh.num_vertices)[:, None], to_rig[body_mesh.joint_indices]), body_mesh.joint_weights)
    rest = fitted_rig_positions(target, {t: joints[b] for t, b in pairs.items()}, scale, (verts, dense.argmax(1)))
    pelvis = rest[target.joints.index(target.bones["pelvis"])]
    shift = np.array([pelvis[0], pelvis[1], verts[:, 2].min()])
    rest = rest - shift
    mapped = set(pairs)
    for j in range(len(rest)):  # a ground bone above the pelvis (UE5's root) stays on the floor
        if j not in mapped and _nearest_mapped_ancestor(target.parents, mapped, j) is None and \
                abs(target.rest_positions_m[j, 2]) < 1e-6:
            rest[j, 2] = 0.0
    rig = replace(target, rest_positions_m=rest, description=f"{target.description} Fitted to the body.".strip())
    k = min(MAX_INFLUENCES, len(target.joints))
    order = np.argsort(-dense, axis=1)[:, :k]
    w = np.take_along_axis(dense, order, 1)
    mesh = SkinnedMesh(verts - shift, body_mesh.faces, order, w / w.sum(1, keepdims=True))
    return Avatar(rig, mesh, to_rig)


def avatar_vertex_error_m(avatar_motion: Motion, avatar: Avatar, body_vertices: np.ndarray,
                          frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How far the avatar's skinned vertices at ``frames`` are from the body model's own posed vertices
    ``body_vertices`` (len(frames), V, 3): the per-vertex distances (len(frames), V) metres after removing
    the one constant offset retargeting adds (the floor moved to Z = 0), and that offset (3,)."""
    posed = skin(avatar.mesh, avatar_motion, np.asarray(frames))
    offset = (body_vertices - posed).reshape(-1, 3).mean(0)
    return np.linalg.norm(posed + offset - body_vertices, axis=-1), offset


def rest_mesh_apose(body_motion: Motion, body_rig: Rig, body_mesh: SkinnedMesh,
                    arm_deg: float = APOSE_ARM_DEG) -> tuple[np.ndarray, np.ndarray]:
    """The body's rest mesh in an A-pose: vertices (V', 3) metres, Z up, facing -Y, soles at Z = 0, centred
    on the pelvis; faces (F', 3) with every hole closed (watertight). The model's rest pose with each upper
    arm turned in the body's frontal plane to ``arm_deg`` below horizontal (the rest of the body as at rest)."""
    index = {n: i for i, n in enumerate(body_rig.joints)}
    rest = body_motion.rest_positions_m()
    local = np.broadcast_to(np.eye(3), (1, body_motion.num_joints, 3, 3)).copy()
    for side, sign in (("left", 1.0), ("right", -1.0)):
        shoulder, elbow = index[body_rig.bones[f"{side}_shoulder"]], index[body_rig.bones[f"{side}_elbow"]]
        arm = rest[elbow] - rest[shoulder]
        down = np.radians(arm_deg)
        aim = np.array([sign * np.cos(down), arm[1] / max(np.linalg.norm(arm), 1e-9), -np.sin(down)])
        turn = rotation_between(arm, aim)
        # local rotation of the shoulder joint such that its world rotation is ``turn`` (ancestors at rest)
        local[0, shoulder] = turn
    posed = body_motion.with_rotations(local, rest[:1].copy())
    verts = skin(body_mesh, posed)[0]
    verts, faces = close_holes(verts, body_mesh.faces)
    pelvis = rest[index[body_rig.bones["pelvis"]]]
    return verts - np.array([pelvis[0], pelvis[1], verts[:, 2].min()]), faces
