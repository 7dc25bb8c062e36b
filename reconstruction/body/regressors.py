"""Keypoint regressors: detector keypoints as fixed weighted sums of body-model vertices, kept as data.

A :class:`LandmarkSet` names anatomical landmarks (the shared joint vocabulary of
``reconstruction/skeletons.py``: ``nose``, ``left_heel``, ``left_foot_index``, ...) and stores, for each, a
few vertex indices and weights that sum to 1. A detector skeleton's regressor is then a lookup by name
(:func:`format_regressor`); joints a format has but the set lacks are derived by
``skeletons.DERIVED_JOINTS`` (means of landmarks stay linear in the vertices) or marked unsupported.

The Anny landmarks are made by ``python -m mocap_studio.tools.make_regressors`` and stored in
``data/anny_landmarks.npz``; the same file holds, for each surface landmark, where it sits relative to a
joint of the SMPL-24 vocabulary, so that other models (SMPL, SMPL+H, SMPL-X, from the user's files) get
their landmarks by :func:`transfer_landmarks` without shipping any of their data.

File layout (npz): ``names`` (L,) str; ``row_ptr`` (L+1,) int; ``vertex_ids`` (N,) int; ``weights``
(N,) float; optional ``anchor_joint`` (L,) str, ``anchor_offset`` (L, 3) float (offset from the anchor
joint divided by body height, in the canonical frame: Z up, facing -Y, left +X), ``kind`` (L,) str
("surface" or "joint"), ``reference_height`` () float.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mocap_studio.reconstruction.skeletons import DERIVED_JOINTS, get_format

DATA_DIR = Path(__file__).resolve().parent / "data"
ANNY_LANDMARKS_PATH = DATA_DIR / "anny_landmarks.npz"


@dataclass(frozen=True)
class LandmarkSet:
    """Named landmarks, each a weighted mean of a few vertices.

    names: (L,); rows: per landmark, (vertex ids (n,), weights (n,)) with weights summing to 1.
    anchor_joint, anchor_offset, kind: see the module docstring (empty when not known).
    """

    names: tuple[str, ...]
    rows: tuple[tuple[np.ndarray, np.ndarray], ...]
    anchor_joint: tuple[str, ...] = ()
    anchor_offset: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    kind: tuple[str, ...] = ()
    reference_height: float = float("nan")

    def __post_init__(self) -> None:
        if len(self.rows) != len(self.names):
            raise ValueError(f"rows: {len(self.rows)} rows for {len(self.names)} names")
        for name, (ids, w) in zip(self.names, self.rows, strict=True):
            if ids.shape != w.shape or ids.ndim != 1 or len(ids) == 0:
                raise ValueError(f"landmark {name!r}: vertex ids and weights must be matching 1-D arrays")
            if abs(float(w.sum()) - 1.0) > 1e-4:
                raise ValueError(f"landmark {name!r}: weights sum to {w.sum():.6f}, not 1")

    def index(self, name: str) -> int:
        """Position of the named landmark (ValueError when absent)."""
        return self.names.index(name)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def max_vertex(self) -> int:
        """The largest vertex id any landmark uses."""
        return max(int(ids.max()) for ids, _ in self.rows)

    def save(self, path: str | Path) -> Path:
        """Save as a .npz (rows flattened with a row pointer) atomically; returns the path."""
        from mocap_studio.common.fileio import save_npz_atomic

        lengths = [len(ids) for ids, _ in self.rows]
        return save_npz_atomic(
            path,
            names=np.array(self.names, dtype=str),
            row_ptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            vertex_ids=np.concatenate([ids for ids, _ in self.rows]).astype(np.int64),
            weights=np.concatenate([w for _, w in self.rows]).astype(np.float64),
            anchor_joint=np.array(self.anchor_joint, dtype=str),
            anchor_offset=np.asarray(self.anchor_offset, dtype=np.float64).reshape(-1, 3),
            kind=np.array(self.kind, dtype=str),
            reference_height=np.array(self.reference_height),
        )

    @classmethod
    def load(cls, path: str | Path) -> LandmarkSet:
        """Read a landmark set written by :meth:`save` (FileNotFoundError saying how to regenerate it)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: landmark regressor file missing; regenerate it with `python -m mocap_studio.tools.make_regressors`"
            )
        with np.load(path, allow_pickle=False) as data:
            names = tuple(str(n) for n in data["names"])
            ptr = data["row_ptr"]
            ids, w = data["vertex_ids"], data["weights"]
            rows = tuple((ids[ptr[i] : ptr[i + 1]].copy(), w[ptr[i] : ptr[i + 1]].copy()) for i in range(len(names)))
            return cls(
                names,
                rows,
                tuple(str(n) for n in data["anchor_joint"]),
                data["anchor_offset"].copy(),
                tuple(str(n) for n in data["kind"]),
                float(data["reference_height"]),
            )


@dataclass(frozen=True)
class KeypointRegressor:
    """Keypoints of one skeleton format from a few vertices.

    skeleton: format name; joint_names: (K,); supported: (K,) bool, False where the model has no
    definition (those keypoints are NaN and carry no weight in fitting); vertex_ids: (N,) the vertices
    used; matrix: (K, N) weights, keypoints = matrix @ vertices[vertex_ids].
    """

    skeleton: str
    joint_names: tuple[str, ...]
    supported: np.ndarray
    vertex_ids: np.ndarray
    matrix: np.ndarray


def _landmark_groups(landmarks: LandmarkSet, joint: str) -> tuple[str, ...] | None:
    if joint in landmarks:
        return (joint,)
    for group in DERIVED_JOINTS.get(joint, ()):
        if all(g in landmarks for g in group):
            return group
    return None


def format_regressor(landmarks: LandmarkSet, skeleton: str) -> KeypointRegressor:
    """The regressor for ``skeleton`` (a name from ``skeletons.FORMATS``) from ``landmarks``."""
    fmt = get_format(skeleton)
    entries: list[dict[int, float]] = []
    supported = np.zeros(fmt.num_joints, dtype=bool)
    for k, joint in enumerate(fmt.joints):
        group = _landmark_groups(landmarks, joint)
        row: dict[int, float] = {}
        if group is not None:
            supported[k] = True
            for name in group:
                ids, w = landmarks.rows[landmarks.index(name)]
                for i, wi in zip(ids.tolist(), w.tolist(), strict=True):
                    row[i] = row.get(i, 0.0) + wi / len(group)
        entries.append(row)
    used = np.array(sorted({i for row in entries for i in row}), dtype=np.int64)
    pos = {int(v): n for n, v in enumerate(used)}
    matrix = np.zeros((fmt.num_joints, len(used)))
    for k, row in enumerate(entries):
        for i, wi in row.items():
            matrix[k, pos[i]] = wi
    return KeypointRegressor(fmt.name, fmt.joints, supported, used, matrix)


def shift_joint_row(
    vertices: np.ndarray, ids: np.ndarray, weights: np.ndarray, offset: np.ndarray, k: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """A joint row moved by ``offset`` (3,) metres at rest, staying a convex vertex combination.

    The joint J (weights over ``ids`` of ``vertices`` (V, 3)) is blended with S, a point on the ray from J
    along the offset: a non-negative mix of the ``k`` vertices beyond the offset that lie closest in
    direction to it (within 25 cm). The result is (1 - a) J + a S with a the offset's share of |S - J|, so
    the point follows both the joint and the surface it leans towards under any pose. Returns (ids,
    weights), unchanged when the offset is under 1 mm or no vertex lies that way.
    """
    from scipy.optimize import nnls

    j = weights @ vertices[ids]
    length = float(np.linalg.norm(offset))
    if length < 1e-3:
        return ids, weights
    u = offset / length
    rel = vertices - j
    along = rel @ u
    dist = np.linalg.norm(rel, axis=1)
    cand = np.flatnonzero((along > length) & (dist < length + 0.25))
    if len(cand) == 0:
        return ids, weights
    near = cand[np.argsort(-along[cand] / dist[cand])[:k]]
    # S on the ray: minimise its distance off the ray over non-negative weights summing to 1
    off_ray = (rel[near] - along[near, None] * u).T  # (3, k)
    b, _ = nnls(np.vstack([off_ray, 10.0 * np.ones((1, len(near)))]), np.r_[np.zeros(3), 10.0])
    b = b / b.sum()
    reach = float(b @ along[near])
    a = float(np.clip(length / max(reach, 1e-9), 0.0, 1.0))
    row: dict[int, float] = {}
    for i, wi in zip(ids.tolist(), weights.tolist(), strict=True):
        row[i] = row.get(i, 0.0) + (1 - a) * wi
    for i, bi in zip(near.tolist(), b.tolist(), strict=True):
        if bi > 0:
            row[i] = row.get(i, 0.0) + a * bi
    out_ids = np.array(sorted(row), dtype=np.int64)
    return out_ids, np.array([row[i] for i in out_ids.tolist()])


def transfer_landmarks(
    reference: LandmarkSet,
    rest_vertices_canonical: np.ndarray,
    semantic_rest_joints: dict[str, np.ndarray],
    joint_rows: dict[str, tuple[np.ndarray, np.ndarray]],
    neighbours: int = 4,
) -> LandmarkSet:
    """Landmarks for another model from the reference set's anchors.

    rest_vertices_canonical: (V, 3) the model's rest mesh in the canonical frame (Z up, facing -Y);
    semantic_rest_joints: SMPL-24 joint name -> (3,) rest position in that frame; joint_rows: landmark
    name -> (vertex ids, weights) for landmarks the model defines itself (its joint regressor rows for
    hips, knees, ...). Surface landmarks become the ``neighbours`` nearest vertices to
    ``anchor + offset * height`` with inverse-distance weights. A joint landmark whose reference sits off its
    own joint (``kind`` "joint", anchored at itself: the reference's detector-learned definitions) is
    moved by the same offset: :func:`shift_joint_row`.
    """
    v = np.asarray(rest_vertices_canonical, dtype=float)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"rest_vertices_canonical must have shape (V, 3), got {v.shape}")
    if not reference.anchor_joint:
        raise ValueError("reference landmarks carry no anchors; regenerate them with make_regressors")
    height = float(v[:, 2].max() - v[:, 2].min())
    names, rows = [], []
    for i, name in enumerate(reference.names):
        if name in joint_rows:
            ids, w = joint_rows[name]
            if reference.kind and reference.kind[i] == "joint" and reference.anchor_joint[i] == name:
                ids, w = shift_joint_row(v, np.asarray(ids), np.asarray(w, dtype=float), reference.anchor_offset[i] * height)
        else:
            anchor = reference.anchor_joint[i]
            if anchor not in semantic_rest_joints:
                continue
            target = semantic_rest_joints[anchor] + reference.anchor_offset[i] * height
            d = np.linalg.norm(v - target, axis=1)
            ids = np.argsort(d)[:neighbours]
            inv = 1.0 / np.maximum(d[ids], 1e-4)
            w = inv / inv.sum()
        names.append(name)
        rows.append((np.asarray(ids, dtype=np.int64), np.asarray(w, dtype=float) / float(np.sum(w))))
    return LandmarkSet(tuple(names), tuple(rows))
