"""The ``BodyModel`` protocol and the skinned-body base class both body models share.

A body model takes shape parameters (one vector per person), and per frame a pose (one local rotation per
joint, ``rotvec``) and a translation; it gives vertices, faces, joints, the kinematic tree (joint names,
parents, rest offsets), skinning weights, and keypoints in a requested detector skeleton. Everything
runs in torch so that fitting gets gradients; numpy wrappers serve exporters and measurements.

Frames: each model works in its own native axes (Anny: Z up, facing -Y; SMPL: Y up, facing +Z). The
world frame is Z up in metres; the root rotation of a pose carries the model into the world (as in
AMASS). ``model_to_world_rest`` is the rotation that stands the model's rest pose upright in the world,
facing -Y, and is what fitting starts from and measurements use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from mocap_studio.reconstruction.body.lbs import TreeLevels, forward_kinematics, pose_feature, skin, tree_levels
from mocap_studio.reconstruction.body.regressors import KeypointRegressor, LandmarkSet, format_regressor
from mocap_studio.reconstruction.body.torch_rotations import rotvec_to_rotmat
from mocap_studio.reconstruction.skeletons import SMPL_24

SEMANTIC_JOINTS: tuple[str, ...] = SMPL_24.joints
"""Joint vocabulary every model maps its own joints to (SMPL-24 names), used for initialisation,
landmark transfer and export."""


@dataclass(frozen=True)
class KinematicTree:
    """The skeleton a pose drives.

    joint_names: (J,); parents: (J,) int, -1 for the root; rest_positions: (J, 3) metres in the model's
    axes; rest_offsets: (J, 3) offset from the parent's rest position (the root's is its position).
    Every joint's rest frame is aligned with the model's axes (a pose's local rotations apply there).
    """

    joint_names: tuple[str, ...]
    parents: np.ndarray
    rest_positions: np.ndarray
    rest_offsets: np.ndarray


@dataclass(frozen=True)
class BodyOutput:
    """A posed body: vertices (T, V, 3) and joints (T, J, 3), metres, world frame."""

    vertices: np.ndarray
    joints: np.ndarray


@runtime_checkable
class BodyModel(Protocol):
    """What fitting, measurements and export need from a body model."""

    name: str
    joint_names: tuple[str, ...]
    parents: np.ndarray
    faces: np.ndarray
    shape_names: tuple[str, ...]
    model_to_world_rest: np.ndarray

    @property
    def num_vertices(self) -> int:
        """Number of mesh vertices V."""

    @property
    def num_joints(self) -> int:
        """Number of skeleton joints J."""

    def default_shape(self) -> np.ndarray:
        """(S,) the average body."""

    def forward_torch(
        self,
        shape: torch.Tensor,
        pose_rotvec: torch.Tensor,
        trans: torch.Tensor,
        vertex_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posed vertices (T, V', 3) and joints (T, J, 3) in the world frame from shape (S,), pose_rotvec (T, J, 3)
        and trans (T, 3)."""

    def evaluate(self, shape: np.ndarray, pose_rotvec: np.ndarray, trans: np.ndarray) -> BodyOutput:
        """Numpy forward pass: shape (S,), pose_rotvec (T, J, 3), trans (T, 3) -> vertices (T, V, 3), joints (T, J, 3)."""

    def rest_mesh(self, shape: np.ndarray) -> np.ndarray:
        """(V, 3) rest-pose vertices for shape (S,), upright in the world frame, feet at Z = 0."""

    def kinematic_tree(self, shape: np.ndarray) -> KinematicTree:
        """The rest skeleton for shape (S,), in the model's axes."""

    def skinning_weights(self) -> np.ndarray:
        """(V, J) skinning weights, rows sum to 1."""

    def keypoint_regressor(self, skeleton: str) -> KeypointRegressor:
        """Linear map from vertices to the keypoints of a detector skeleton."""

    def keypoints(self, shape: np.ndarray, pose_rotvec: np.ndarray, trans: np.ndarray, skeleton: str) -> np.ndarray:
        """(T, K, 3) keypoints of ``skeleton`` for shape (S,), pose_rotvec (T, J, 3), trans (T, 3)."""


class SkinnedBodyModel:
    """Shared machinery: FK, skinning, keypoints. Subclasses supply the rest state and its parameters.

    Subclasses set, in ``__init__``: ``name``, ``joint_names``, ``parents`` (J,), ``faces`` (F, 3),
    ``shape_names`` (S,), ``model_to_world_rest`` (3, 3), ``semantic_joints`` (SMPL-24 name -> joint
    index), ``free_joints`` (indices fitting optimises; the others stay at rest), ``landmarks``
    (:class:`LandmarkSet`) and ``_weights`` (V, J) torch float dense skinning weights; then call
    :meth:`_finish_init`.
    """

    name: str
    joint_names: tuple[str, ...]
    parents: np.ndarray
    faces: np.ndarray
    shape_names: tuple[str, ...]
    model_to_world_rest: np.ndarray
    semantic_joints: dict[str, int]
    free_joints: tuple[int, ...]
    landmarks: LandmarkSet
    dtype: torch.dtype = torch.float32
    _weights: torch.Tensor
    _levels: TreeLevels

    def _finish_init(self) -> None:
        self.parents = np.asarray(self.parents, dtype=np.int64)
        self._levels = tree_levels(self.parents)
        self._regressors: dict[str, KeypointRegressor] = {}

    # ---- sizes
    @property
    def num_vertices(self) -> int:
        """Number of mesh vertices V."""
        return int(self._weights.shape[0])

    @property
    def num_joints(self) -> int:
        """Number of skeleton joints J."""
        return len(self.joint_names)

    @property
    def num_shape(self) -> int:
        """Number of shape parameters S."""
        return len(self.shape_names)

    # ---- to be supplied by subclasses
    def default_shape(self) -> np.ndarray:
        """(S,) the average body."""
        raise NotImplementedError

    def random_shape(self, rng: np.random.Generator, spread: float = 1.0) -> np.ndarray:
        """(S,) a plausible random body, for synthetic tests."""
        raise NotImplementedError

    def spread_shapes(self, count: int, spread: float = 1.0, seed: int = 0) -> np.ndarray:
        """(count, S) bodies spread evenly over the range :meth:`random_shape` draws from at ``spread``: the first
        ``count`` points of a scrambled Sobol sequence (``seed``) mapped through :meth:`shape_from_unit`. Starts
        of a search: random draws leave gaps in six or more dimensions that a low-discrepancy set fills."""
        if count <= 0:
            return np.zeros((0, self.num_shape))
        from scipy.stats import qmc

        power = max(int(np.ceil(np.log2(count))), 0)  # a power of two keeps the set balanced (scipy warns otherwise)
        unit = qmc.Sobol(self.num_shape, scramble=True, seed=seed).random_base2(power)[:count]
        return np.stack([self.shape_from_unit(u, spread) for u in unit])

    def shape_from_unit(self, unit: np.ndarray, spread: float = 1.0) -> np.ndarray:
        """(S,) the body at ``unit`` (S,) in the unit cube, the cube spanning :meth:`random_shape`'s range at
        ``spread``."""
        raise NotImplementedError

    def shape_from_free(self, free: torch.Tensor) -> torch.Tensor:
        """Map unconstrained fitting variables (S,) to shape parameters (S,)."""
        return free

    def free_from_shape(self, shape: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`shape_from_free` (numpy)."""
        return np.asarray(shape, dtype=float)

    def shape_prior(self, shape: torch.Tensor) -> torch.Tensor:
        """Negative log prior of shape parameters (S,) (scalar) or (N, S) (N,), 0 at the default shape."""
        raise NotImplementedError

    def rest_vertices_torch(self, shape: torch.Tensor, vertex_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(V', 3) rest vertices (all, or ``vertex_ids``) in the model's axes for shape (S,)."""
        raise NotImplementedError

    def rest_joints_torch(self, shape: torch.Tensor) -> torch.Tensor:
        """(J, 3) rest joint positions for shape (S,)."""
        raise NotImplementedError

    def blend_coefficients(self, shape: torch.Tensor) -> torch.Tensor:
        """(C,) coefficients of the rest-state blend basis for shape (S,) (or (N, C) for shapes (N, S)): the
        rest vertices and joints are affine in them (see :meth:`blend_basis`). Differentiable."""
        raise NotImplementedError

    def blend_basis(self, vertex_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The rest state as an affine function of :meth:`blend_coefficients` c (C,):
        vertices[ids] = v0 + sum_c c_c vdirs[c], joints = j0 + sum_c c_c jdirs[c].

        vertex_ids (N,) -> v0 (N, 3), vdirs (C, N, 3), j0 (J, 3), jdirs (C, J, 3), in the model's dtype.
        """
        raise NotImplementedError

    def pose_correctives_torch(self, rotmats: torch.Tensor, vertex_ids: torch.Tensor | None = None) -> torch.Tensor | None:
        """(B, V', 3) pose-dependent vertex offsets, or None for models without them."""
        return None

    # ---- posing
    def _check_inputs(self, shape: torch.Tensor, pose_rotvec: torch.Tensor, trans: torch.Tensor) -> None:
        if shape.shape != (self.num_shape,):
            raise ValueError(f"shape must have shape ({self.num_shape},), got {tuple(shape.shape)}")
        if pose_rotvec.ndim != 3 or pose_rotvec.shape[1:] != (self.num_joints, 3):
            raise ValueError(f"pose_rotvec must have shape (T, {self.num_joints}, 3), got {tuple(pose_rotvec.shape)}")
        if trans.shape != (pose_rotvec.shape[0], 3):
            raise ValueError(f"trans must have shape ({pose_rotvec.shape[0]}, 3), got {tuple(trans.shape)}")

    def forward_torch(
        self,
        shape: torch.Tensor,
        pose_rotvec: torch.Tensor,
        trans: torch.Tensor,
        vertex_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posed vertices (T, V', 3) and joints (T, J, 3) in the world frame.

        shape: (S,); pose_rotvec: (T, J, 3) local rotations; trans: (T, 3) metres; vertex_ids: optional
        (V',) subset of vertices to compute (the joints are always all computed).
        """
        self._check_inputs(shape, pose_rotvec, trans)
        rotmats = rotvec_to_rotmat(pose_rotvec)
        rest_j = self.rest_joints_torch(shape)
        rest_v = self.rest_vertices_torch(shape, vertex_ids)
        corr = self.pose_correctives_torch(rotmats, vertex_ids)
        if corr is not None:
            rest_v = rest_v[None] + corr
        rg, tg = forward_kinematics(rotmats, rest_j, self._levels)
        weights = self._weights if vertex_ids is None else self._weights[vertex_ids]
        verts = skin(rest_v, weights, rg, tg, rest_j)
        return verts + trans[:, None], tg + trans[:, None]

    def _tensor(self, arr: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(arr, dtype=float), dtype=self.dtype)

    def evaluate(self, shape: np.ndarray, pose_rotvec: np.ndarray, trans: np.ndarray, batch: int = 256) -> BodyOutput:
        """Numpy wrapper of :meth:`forward_torch` over all vertices, in batches of frames.

        shape (S,), pose_rotvec (T, J, 3), trans (T, 3) -> vertices (T, V, 3), joints (T, J, 3).
        """
        pose_rotvec = np.asarray(pose_rotvec, dtype=float)
        trans = np.asarray(trans, dtype=float)
        verts, joints = [], []
        with torch.no_grad():
            s = self._tensor(shape)
            for start in range(0, max(len(pose_rotvec), 1), batch):
                v, j = self.forward_torch(
                    s,
                    self._tensor(pose_rotvec[start : start + batch]),
                    self._tensor(trans[start : start + batch]),
                )
                verts.append(v.double().numpy())
                joints.append(j.double().numpy())
        return BodyOutput(np.concatenate(verts), np.concatenate(joints))

    def rest_mesh(self, shape: np.ndarray) -> np.ndarray:
        """(V, 3) rest-pose vertices standing upright in the world frame (Z up, facing -Y), feet at Z = 0,
        centred over the origin in X and Y."""
        with torch.no_grad():
            v = self.rest_vertices_torch(self._tensor(shape)).double().numpy()
        v = v @ self.model_to_world_rest.T
        centre = 0.5 * (v.min(0) + v.max(0))
        return v - np.array([centre[0], centre[1], v[:, 2].min()])

    def kinematic_tree(self, shape: np.ndarray) -> KinematicTree:
        """The rest skeleton for ``shape`` (S,), in the model's axes."""
        with torch.no_grad():
            rest = self.rest_joints_torch(self._tensor(shape)).double().numpy()
        offsets = rest.copy()
        has_parent = self.parents >= 0
        offsets[has_parent] = rest[has_parent] - rest[self.parents[has_parent]]
        return KinematicTree(tuple(self.joint_names), self.parents.copy(), rest, offsets)

    def skinning_weights(self) -> np.ndarray:
        """(V, J) skinning weights, rows sum to 1."""
        return self._weights.double().numpy()

    # ---- keypoints
    def keypoint_regressor(self, skeleton: str) -> KeypointRegressor:
        """Linear map from vertices to the keypoints of a detector skeleton ("blazepose33", "coco17", ...)."""
        if skeleton not in self._regressors:
            self._regressors[skeleton] = format_regressor(self.landmarks, skeleton)
        return self._regressors[skeleton]

    def keypoints(self, shape: np.ndarray, pose_rotvec: np.ndarray, trans: np.ndarray, skeleton: str) -> np.ndarray:
        """(T, K, 3) keypoints of ``skeleton``; NaN for joints this model has no definition of."""
        reg = self.keypoint_regressor(skeleton)
        with torch.no_grad():
            ids = torch.as_tensor(reg.vertex_ids)
            v, _ = self.forward_torch(self._tensor(shape), self._tensor(pose_rotvec), self._tensor(trans), vertex_ids=ids)
        kp = np.einsum("kn,tnd->tkd", reg.matrix, v.double().numpy())
        kp[:, ~reg.supported] = np.nan
        return kp

    def semantic_rest_joints(self, shape: np.ndarray) -> dict[str, np.ndarray]:
        """SMPL-24 name -> (3,) rest position in the model's axes."""
        tree = self.kinematic_tree(shape)
        return {name: tree.rest_positions[j] for name, j in self.semantic_joints.items()}

    def free_joint_names(self) -> tuple[str, ...]:
        """Names of the joints fitting optimises."""
        return tuple(self.joint_names[j] for j in self.free_joints)


def check_free_joints(parents: Sequence[int], free: Sequence[int]) -> None:
    """The root must be free (it carries the global orientation)."""
    if 0 not in free:
        raise ValueError("free joints must include the root (joint 0)")
    if any(p >= 0 and p >= j for j, p in enumerate(parents)):
        raise ValueError("parents must come before their children")


__all__ = [
    "BodyModel",
    "BodyOutput",
    "KinematicTree",
    "SEMANTIC_JOINTS",
    "SkinnedBodyModel",
    "pose_feature",
]
