"""Fitted body motions for export: AMASS-style npz files, and a :class:`Motion` + skinned mesh from a body
model's kinematic tree.

AMASS npz (the layout of the AMASS archive's SMPL-family files, read by its tools and by most SMPL code):
``poses`` (T, 3 * J) axis-angle per joint, the root first; ``trans`` (T, 3) metres; ``betas`` (S,);
``gender`` ('neutral', 'male', 'female'); ``mocap_framerate`` (frames per second). We add the SMPL-X style
split ``root_orient`` (T, 3) and ``pose_body`` (T, 63, the 21 body joints after the root), and
``surface_model_type`` (the body model's name). The world is Z up and the root rotation carries the model
into it, as in AMASS.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from mocap_studio.common.fileio import load_npz, save_npz_atomic
from mocap_studio.common.rotations import rotvec_to_rotmat
from mocap_studio.export.mesh import SkinnedMesh
from mocap_studio.export.motion import Motion
from mocap_studio.export.rig import Rig, rig_from_motion

log = logging.getLogger(__name__)

GENDERS = ("neutral", "male", "female")
BODY_JOINTS = 21
"""Body joints after the root in SMPL, SMPL-H and SMPL-X (``pose_body`` holds these)."""


class AmassError(ValueError):
    """An AMASS-style file that cannot be read; the message names the file and what is missing."""


@dataclass(frozen=True, eq=False)
class AmassMotion:
    """What an AMASS-style npz holds: pose_rotvec (T, J, 3), trans (T, 3) metres, betas (S,); and where the
    motion comes from a fit (body.npz), its foot contacts (T, 2) bool, left and right (None: not known), and the
    ground's height."""

    pose_rotvec: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    gender: str
    frame_rate: float
    model: str = "smpl"
    contact: np.ndarray | None = None
    ground_z: float | None = None
    """The height (metres) of the ground the performer stands on, as a fit found it (None: not known)."""


class BodyModelLike(Protocol):
    """What export needs from a body model (``reconstruction.body.model.BodyModel``)."""

    joint_names: tuple[str, ...]
    parents: np.ndarray
    faces: np.ndarray
    model_to_world_rest: np.ndarray

    def kinematic_tree(self, shape: np.ndarray):  # noqa: ANN201 - returns a KinematicTree
        """The skeleton (joint names, parents, rest positions (J, 3)) for ``shape`` (S,)."""

    def skinning_weights(self) -> np.ndarray:
        """(V, J) linear blend skinning weights."""

    def evaluate(self, shape: np.ndarray, pose_rotvec: np.ndarray, trans: np.ndarray):  # noqa: ANN201
        """The posed body (``.vertices`` (T, V, 3), ``.joints``) for shape (S,), pose_rotvec (T, J, 3), trans (T, 3)."""


def _check_pose(pose_rotvec: np.ndarray, trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pose = np.asarray(pose_rotvec, dtype=float)
    if pose.ndim != 3 or pose.shape[-1] != 3:
        raise ValueError(f"pose_rotvec must have shape (T, J, 3), got {pose.shape}")
    tr = np.asarray(trans, dtype=float)
    if tr.shape != (pose.shape[0], 3):
        raise ValueError(f"trans must have shape ({pose.shape[0]}, 3), got {tr.shape}")
    if not (np.isfinite(pose).all() and np.isfinite(tr).all()):
        bad = np.flatnonzero(~(np.isfinite(pose).all((1, 2)) & np.isfinite(tr).all(1)))
        raise ValueError(f"pose/trans hold NaN or infinite values at frames {bad[:10].tolist()}")
    return pose, tr


def write_amass(
    path: str | os.PathLike,
    pose_rotvec: np.ndarray,
    trans: np.ndarray,
    betas: np.ndarray,
    frame_rate: float,
    gender: str = "neutral",
    model: str = "smpl",
) -> Path:
    """Write an AMASS-style npz: pose_rotvec (T, J, 3) local axis-angle (root first), trans (T, 3) metres,
    betas (S,). The file appears complete or not at all."""
    pose, tr = _check_pose(pose_rotvec, trans)
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
    if not (np.isfinite(frame_rate) and frame_rate > 0):
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    n_frames, n_joints = pose.shape[:2]
    extra = {}
    if n_joints > BODY_JOINTS:
        extra["pose_body"] = pose[:, 1 : 1 + BODY_JOINTS].reshape(n_frames, 3 * BODY_JOINTS)
    return save_npz_atomic(
        path,
        poses=pose.reshape(n_frames, 3 * n_joints),
        trans=tr,
        betas=np.asarray(betas, dtype=float).reshape(-1),
        gender=np.array(gender),
        mocap_framerate=np.array(float(frame_rate)),
        root_orient=pose[:, 0],
        surface_model_type=np.array(model),
        **extra,
    )


def read_amass(path: str | os.PathLike, num_joints: int | None = None) -> AmassMotion:
    """Read an AMASS-style npz (ours or the AMASS archive's). ``num_joints`` keeps the first joints of
    ``poses`` (e.g. 24 of SMPL-H's 52 for an SMPL body); default: all."""
    path = Path(path)
    data = load_npz(path, ("poses", "trans", "betas", "mocap_framerate"), AmassError,
                    "; is it an AMASS-style file?")
    poses = data["poses"].astype(float)
    if poses.ndim != 2 or poses.shape[1] % 3:
        raise AmassError(f"{path}: poses must have shape (T, 3 * J), got {poses.shape}")
    pose = poses.reshape(len(poses), -1, 3)
    if num_joints is not None:
        pose = pose[:, :num_joints]
    gender = str(data.get("gender", np.array("neutral")))
    return AmassMotion(
        pose_rotvec=pose,
        trans=data["trans"].astype(float),
        betas=data["betas"].astype(float).reshape(-1),
        gender=gender,
        frame_rate=float(data["mocap_framerate"]),
        model=str(data.get("surface_model_type", np.array("smpl"))),
    )


def motion_from_body(
    model: BodyModelLike,
    shape: np.ndarray,
    pose_rotvec: np.ndarray,
    trans: np.ndarray,
    frame_rate: float,
    name: str = "",
) -> Motion:
    """A :class:`Motion` on the body model's own skeleton that moves every joint exactly as the model does.

    shape (S,); pose_rotvec (T, J, 3) local rotations in the model's axes (the root's carries the model into
    the world); trans (T, 3) metres. The motion's rest pose stands upright in the world (Z up, facing -Y):
    rest positions and local rotations are turned by the model's ``model_to_world_rest``, so exporters see
    a T-pose (or the model's rest pose) standing on its feet.
    """
    pose, tr = _check_pose(pose_rotvec, trans)
    tree = model.kinematic_tree(np.asarray(shape, dtype=float))
    n_joints = len(tree.joint_names)
    if pose.shape[1] != n_joints:
        raise ValueError(f"pose_rotvec has {pose.shape[1]} joints, the model {n_joints}")
    basis = np.asarray(model.model_to_world_rest, dtype=float)
    local = rotvec_to_rotmat(pose)
    # world'_j = world_j @ basis.T for every joint: the root absorbs basis.T, the others are conjugated
    local_world = basis @ local @ basis.T
    local_world[:, 0] = local[:, 0] @ basis.T
    rest = np.asarray(tree.rest_positions, dtype=float)
    offsets = rest.copy()
    offsets[1:] = rest[1:] - rest[np.asarray(tree.parents)[1:]]
    return Motion(
        tuple(tree.joint_names),
        np.asarray(tree.parents),
        offsets @ basis.T,
        local_world,
        rest[0] + tr,  # the root joint's world position: FK leaves it at its rest position, plus trans
        frame_rate,
        name=name,
    )


def skinned_mesh_from_body(model: BodyModelLike, shape: np.ndarray, max_influences: int = 4) -> SkinnedMesh:
    """The body model's mesh for ``shape`` (S,), bound to :func:`motion_from_body`'s skeleton: rest vertices
    in the same upright world frame, and the model's skinning weights (at most ``max_influences`` per
    vertex, renormalised; glTF and most engines take 4)."""
    shape = np.asarray(shape, dtype=float)
    n_joints = len(model.joint_names)
    rest_model = model.evaluate(shape, np.zeros((1, n_joints, 3)), np.zeros((1, 3))).vertices[0]
    basis = np.asarray(model.model_to_world_rest, dtype=float)
    weights = np.asarray(model.skinning_weights(), dtype=float)
    k = min(max_influences, n_joints)
    order = np.argsort(-weights, axis=1)[:, :k]
    w = np.take_along_axis(weights, order, 1)
    w = np.clip(w, 0.0, None)
    return SkinnedMesh(rest_model @ basis.T, np.asarray(model.faces), order, w / w.sum(1, keepdims=True))


def rig_from_body(model: BodyModelLike, motion: Motion, mesh: SkinnedMesh) -> Rig:
    """The body's skeleton (``motion``, from :func:`motion_from_body`) as a retarget source or target: its
    canonical bone map (the model's ``semantic_joints``, else its joint names), its rest standing with the rest
    ``mesh``'s lowest point at Z = 0. Retargeting reads a rig's foot joint heights at rest as their heights
    above the floor; a body model's rest pose is centred on its pelvis (Anny's soles at -0.8 m), which put the
    floor 0.8 m low wherever a fit's ``ground_z`` was given."""
    semantic = getattr(model, "semantic_joints", None) or {n: i for i, n in enumerate(model.joint_names)}
    bones = {canon: model.joint_names[j] for canon, j in semantic.items()}
    rig = rig_from_motion(motion, bones, name=getattr(model, "name", "") or "body")
    return replace(rig, rest_positions_m=rig.rest_positions_m - np.array([0.0, 0.0, mesh.vertices_m[:, 2].min()]))
