"""``Motion``: a joint hierarchy with rest offsets, per-frame local rotations and root translation.

Conventions (DESIGN.md): metres, seconds, right-handed world with Z up. Writers convert to their target's
axes and units with :meth:`Motion.transformed`.

Kinematics, for joint ``j`` with parent ``p`` at frame ``t``::

    world_rotmat[t, j] = world_rotmat[t, p] @ local_rotmat[t, j]
    world_pos[t, j]    = world_pos[t, p] + world_rotmat[t, p] @ rest_offsets_m[j]

and for the root, ``world_rotmat[t, 0] = local_rotmat[t, 0]`` and ``world_pos[t, 0] = root_translation_m[t]``
(the root's world position, not an offset added to its rest offset; BVH and Blender read root position
channels the same way). With every local rotation the identity the skeleton stands in its rest pose.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
from mocap_studio.common.rotations import quat_wxyz_to_rotmat, rotmat_to_quat_wxyz, rotvec_to_rotmat

log = logging.getLogger(__name__)

Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""Maps Z-up world coordinates (x, y, z) to Y-up (x, z, -y), the convention of glTF, BVH, FBX, USD."""
Y_UP_TO_Z_UP = Z_UP_TO_Y_UP.T


def _as_array(value: np.ndarray, shape: tuple[int | None, ...], name: str, dtype: type = float) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape, strict=True))
    if not ok:
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class Motion:
    """An animated joint hierarchy. J joints in an order where every parent comes before its children."""

    joint_names: tuple[str, ...]
    """(J,) unique joint names."""
    parents: np.ndarray
    """(J,) int parent index per joint, -1 for the root (joint 0, the only root)."""
    rest_offsets_m: np.ndarray
    """(J, 3) each joint's position in its parent's frame at rest, metres; the root's is its rest position."""
    local_rotmat: np.ndarray
    """(T, J, 3, 3) each joint's rotation relative to its parent, per frame."""
    root_translation_m: np.ndarray
    """(T, 3) world position of the root joint per frame, metres."""
    frame_rate: float
    """Frames per second."""
    end_sites_m: np.ndarray | None = None
    """(J, 3) end-site offsets in each joint's frame (BVH ``End Site``), NaN where a joint has none."""
    bvh_channels: tuple[tuple[str, ...], ...] | None = None
    """Per joint, the BVH channel names the motion was read with (so a re-written file keeps its layout)."""
    name: str = ""
    """A label (e.g. the source file's stem)."""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.joint_names)
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"joint_names must be unique; repeated: {dup}")
        n_joints = len(names)
        if n_joints == 0:
            raise ValueError("joint_names must name at least one joint")
        parents = _as_array(self.parents, (n_joints,), "parents", dtype=np.int64)
        if parents[0] != -1 or np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, n_joints)):
            raise ValueError(
                "parents must be -1 for joint 0 only, and every parent must come before its child"
            )
        offsets = _as_array(self.rest_offsets_m, (n_joints, 3), "rest_offsets_m")
        rot = _as_array(self.local_rotmat, (None, n_joints, 3, 3), "local_rotmat")
        trans = _as_array(self.root_translation_m, (rot.shape[0], 3), "root_translation_m")
        if not (np.isfinite(self.frame_rate) and self.frame_rate > 0):
            raise ValueError(f"frame_rate must be positive, got {self.frame_rate}")
        ends = None if self.end_sites_m is None else _as_array(self.end_sites_m, (n_joints, 3), "end_sites_m")
        if self.bvh_channels is not None and len(self.bvh_channels) != n_joints:
            raise ValueError(
                f"bvh_channels must have one entry per joint ({n_joints}), got {len(self.bvh_channels)}"
            )
        object.__setattr__(self, "joint_names", names)
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "rest_offsets_m", offsets)
        object.__setattr__(self, "local_rotmat", rot)
        object.__setattr__(self, "root_translation_m", trans)
        object.__setattr__(self, "frame_rate", float(self.frame_rate))
        object.__setattr__(self, "end_sites_m", ends)
        for arr in (parents, offsets, rot, trans) + (() if ends is None else (ends,)):
            arr.setflags(write=False)

    # ---- construction
    @classmethod
    def from_quat_wxyz(
        cls,
        joint_names: tuple[str, ...] | list[str],
        parents: np.ndarray,
        rest_offsets_m: np.ndarray,
        local_quat_wxyz: np.ndarray,
        root_translation_m: np.ndarray,
        frame_rate: float,
        **kwargs: object,
    ) -> Motion:
        """Like the constructor, with ``local_quat_wxyz`` (T, J, 4) instead of rotation matrices."""
        quat = _as_array(local_quat_wxyz, (None, len(joint_names), 4), "local_quat_wxyz")
        return cls(
            tuple(joint_names),
            parents,
            rest_offsets_m,
            quat_wxyz_to_rotmat(quat),
            root_translation_m,
            frame_rate,
            **kwargs,
        )  # type: ignore[arg-type]

    @classmethod
    def from_rest_positions(
        cls,
        joint_names: tuple[str, ...] | list[str],
        parents: np.ndarray,
        rest_positions_m: np.ndarray,
        local_rotvec: np.ndarray,
        root_translation_m: np.ndarray,
        frame_rate: float,
        name: str = "",
    ) -> Motion:
        """A motion from a body model's kinematic tree (the SMPL layout).

        ``rest_positions_m`` (J, 3) world joint positions at rest, ``local_rotvec`` (T, J, 3) axis-angle
        per joint relative to its parent, ``root_translation_m`` (T, 3) world position of the root joint
        (for SMPL: rest root position + ``transl``).
        """
        n = len(joint_names)
        rest = _as_array(rest_positions_m, (n, 3), "rest_positions_m")
        rotvec = _as_array(local_rotvec, (None, n, 3), "local_rotvec")
        parents = _as_array(parents, (n,), "parents", dtype=np.int64)
        offsets = rest.copy()
        offsets[1:] = rest[1:] - rest[parents[1:]]
        return cls(
            tuple(joint_names),
            parents,
            offsets,
            rotvec_to_rotmat(rotvec),
            root_translation_m,
            frame_rate,
            name=name,
        )

    # ---- sizes and lookups
    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.local_rotmat.shape[0])

    @property
    def num_joints(self) -> int:
        """Number of joints J."""
        return len(self.joint_names)

    @property
    def duration_s(self) -> float:
        """Length in seconds (frames / frame rate)."""
        return self.num_frames / self.frame_rate

    def joint_index(self, name: str) -> int:
        """Position of the named joint (KeyError listing the joints when absent)."""
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(f"no joint named {name!r}; joints are {list(self.joint_names)}") from None

    def children(self, joint: int) -> list[int]:
        """Indices of the joints whose parent is ``joint``."""
        return [int(c) for c in np.flatnonzero(self.parents == joint)]

    @property
    def local_quat_wxyz(self) -> np.ndarray:
        """(T, J, 4) local rotations as unit quaternions, sign-continuous over time per joint."""
        if "quat" not in self._cache:
            q = rotmat_to_quat_wxyz(self.local_rotmat)
            self._cache["quat"] = make_quat_continuous(q)
        return self._cache["quat"]

    # ---- kinematics
    def rest_positions_m(self) -> np.ndarray:
        """(J, 3) world joint positions in the rest pose (all local rotations identity)."""
        pos = np.zeros((self.num_joints, 3))
        for j, p in enumerate(self.parents):
            pos[j] = self.rest_offsets_m[j] if p < 0 else pos[p] + self.rest_offsets_m[j]
        return pos

    def world_transforms(self) -> tuple[np.ndarray, np.ndarray]:
        """World rotation (T, J, 3, 3) and position (T, J, 3) of every joint on every frame."""
        if "fk" not in self._cache:
            n_frames, n_joints = self.num_frames, self.num_joints
            rot = np.empty((n_frames, n_joints, 3, 3))
            pos = np.empty((n_frames, n_joints, 3))
            rot[:, 0] = self.local_rotmat[:, 0]
            pos[:, 0] = self.root_translation_m
            for j in range(1, n_joints):
                p = self.parents[j]
                rot[:, j] = rot[:, p] @ self.local_rotmat[:, j]
                pos[:, j] = pos[:, p] + rot[:, p] @ self.rest_offsets_m[j]
            rot.setflags(write=False)
            pos.setflags(write=False)
            self._cache["fk"] = (rot, pos)
        return self._cache["fk"]

    def world_positions_m(self) -> np.ndarray:
        """(T, J, 3) world joint positions, metres: the basis every reader check compares against."""
        return self.world_transforms()[1]

    # ---- checks and edits
    def check_finite(self, what: str = "motion") -> None:
        """Raise ValueError naming the frames with NaN or infinite values (writers call this first)."""
        bad = ~np.isfinite(self.local_rotmat).all(axis=(1, 2, 3)) | ~np.isfinite(self.root_translation_m).all(
            1
        )
        if np.any(bad):
            frames = np.flatnonzero(bad)
            shown = ", ".join(map(str, frames[:10])) + (" ..." if len(frames) > 10 else "")
            raise ValueError(
                f"{what}: {len(frames)} of {self.num_frames} frames contain NaN or infinite values "
                f"(frames {shown}); fill the gaps or cut them out with Motion.slice_frames before exporting"
            )
        if not np.isfinite(self.rest_offsets_m).all():
            raise ValueError(f"{what}: rest offsets contain NaN; the skeleton is not usable")

    def slice_frames(self, start: int, stop: int | None = None, step: int = 1) -> Motion:
        """Frames ``start:stop:step`` as a new motion (the frame rate divides by ``step``)."""
        sl = slice(start, stop, step)
        return replace(
            self,
            local_rotmat=self.local_rotmat[sl],
            root_translation_m=self.root_translation_m[sl],
            frame_rate=self.frame_rate / step,
            _cache={},
        )

    def transformed(self, basis: np.ndarray, scale: float = 1.0) -> Motion:
        """The same motion in another frame: positions become ``scale * basis @ x``, rotations
        ``basis @ R @ basis.T``. ``basis`` (3, 3) must be a rotation (e.g. :data:`Z_UP_TO_Y_UP`).

        The motion keeps meaning metres in the new axes only when ``scale`` is 1; writers use it to reach
        their file's axes and units.
        """
        basis = _as_array(basis, (3, 3), "basis")
        if not np.allclose(basis @ basis.T, np.eye(3), atol=1e-9) or np.linalg.det(basis) < 0:
            raise ValueError("basis must be a proper rotation matrix (orthonormal, det +1)")
        ends = None if self.end_sites_m is None else scale * self.end_sites_m @ basis.T
        return replace(
            self,
            rest_offsets_m=scale * self.rest_offsets_m @ basis.T,
            local_rotmat=basis @ self.local_rotmat @ basis.T,
            root_translation_m=scale * self.root_translation_m @ basis.T,
            end_sites_m=ends,
            _cache={},
        )

    def with_rotations(
        self, local_rotmat: np.ndarray, root_translation_m: np.ndarray | None = None
    ) -> Motion:
        """The same skeleton with other per-frame rotations (T', J, 3, 3) and optionally root translation."""
        trans = self.root_translation_m if root_translation_m is None else root_translation_m
        return replace(self, local_rotmat=local_rotmat, root_translation_m=trans, _cache={})

    def bone_lengths_m(self) -> np.ndarray:
        """(J,) length of each joint's offset from its parent (0 for the root)."""
        lengths = np.linalg.norm(self.rest_offsets_m, axis=1)
        lengths[0] = 0.0
        return lengths


def make_quat_continuous(quat_wxyz: np.ndarray) -> np.ndarray:
    """Flip signs so consecutive quaternions along axis 0 have a non-negative dot product: (T, ..., 4)."""
    q = np.array(quat_wxyz, dtype=float)
    if q.shape[0] < 2:
        return q
    dots = np.sum(q[1:] * q[:-1], axis=-1)
    flips = np.cumsum(dots < 0, axis=0) % 2
    q[1:] *= np.where(flips[..., None] == 1, -1.0, 1.0)
    return q


def unwrap_degrees(angles_deg: np.ndarray) -> np.ndarray:
    """Unwrap angles over axis 0 so consecutive frames never jump by more than 180 degrees."""
    return np.degrees(np.unwrap(np.radians(angles_deg), axis=0))
