"""Skeleton formats as data, and conversion between them by joint name.

Every format is a :class:`SkeletonFormat`: joint names in the format's own index order, a parent per joint
(a tree used for drawing and traversal; -1 marks the root), and left/right pairs derived from the names.
All formats share one joint vocabulary (snake_case, MediaPipe's names where BlazePose has the joint), so
mapping between formats is a lookup by name: ``left_knee`` is ``left_knee`` in every format that has it.

Joints that one format detects and another only implies (OpenPose's ``neck`` and ``mid_hip``, SMPL's
``pelvis``) are derived as the mean of other joints when the source lacks them; see :data:`DERIVED_JOINTS`.
A target joint with no source and no derivation is NaN.

Note that a detector's ``left_hip`` (a surface landmark) and SMPL's ``left_hip`` (a joint centre inside the
body) are not the same point; converting to SMPL-24 by name gives the right topology and a rough position,
and body fitting is where the difference is modelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SkeletonFormat",
    "FORMATS",
    "BLAZEPOSE_33",
    "COCO_17",
    "HALPE_26",
    "BODY_25",
    "BODY_25B",
    "COCO_18",
    "SMPL_24",
    "DERIVED_JOINTS",
    "RIGID_SEGMENTS",
    "get_format",
    "convert",
    "convert_confidence",
    "conversion_plan",
    "flip_name",
]


def flip_name(name: str) -> str:
    """The mirror joint's name: ``left_eye`` <-> ``right_eye``, ``mouth_left`` <-> ``mouth_right``."""
    return name.replace("left", "\0").replace("right", "left").replace("\0", "right")


@dataclass(frozen=True)
class SkeletonFormat:
    """A keypoint layout.

    name: the format's identifier (stored in keypoint files). joints: joint names in index order.
    parents: index of each joint's parent in ``joints``, -1 for the single root.
    """

    name: str
    joints: tuple[str, ...]
    parents: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(set(self.joints)) != len(self.joints):
            raise ValueError(f"skeleton {self.name}: joint names repeat")
        if len(self.parents) != len(self.joints):
            raise ValueError(
                f"skeleton {self.name}: {len(self.parents)} parents for {len(self.joints)} joints"
            )
        roots = [i for i, p in enumerate(self.parents) if p < 0]
        if len(roots) != 1:
            raise ValueError(f"skeleton {self.name}: needs exactly one root, got {roots}")
        # every joint must reach the root without a cycle
        for start in range(len(self.joints)):
            seen, j = set(), start
            while j >= 0:
                if j in seen or j >= len(self.joints):
                    raise ValueError(f"skeleton {self.name}: broken parent chain at {self.joints[start]}")
                seen.add(j)
                j = self.parents[j]

    @property
    def num_joints(self) -> int:
        """Number of joints."""
        return len(self.joints)

    def index(self, joint: str) -> int:
        """Position of the named joint (KeyError naming the skeleton when absent)."""
        try:
            return self.joints.index(joint)
        except ValueError:
            raise KeyError(f"skeleton {self.name} has no joint {joint!r}") from None

    def indices(self, joints: Sequence[str]) -> np.ndarray:
        """Indices of the named joints, (len(joints),) int."""
        return np.array([self.index(j) for j in joints], dtype=int)

    @property
    def left_right_pairs(self) -> tuple[tuple[int, int], ...]:
        """(left index, right index) for every joint whose mirror is also in the format."""
        pairs = []
        for i, name in enumerate(self.joints):
            if "left" in name:
                mirror = flip_name(name)
                if mirror in self.joints:
                    pairs.append((i, self.joints.index(mirror)))
        return tuple(pairs)

    @property
    def flip_permutation(self) -> np.ndarray:
        """(J,) index array that swaps every left joint with its right mirror (others map to themselves)."""
        perm = np.arange(self.num_joints)
        for left, right in self.left_right_pairs:
            perm[left], perm[right] = right, left
        return perm

    @property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """(parent, child) index pairs of the tree."""
        return tuple((p, c) for c, p in enumerate(self.parents) if p >= 0)

    @property
    def rigid_segments(self) -> tuple[tuple[int, int], ...]:
        """Index pairs of the :data:`RIGID_SEGMENTS` this format has (for bone-length checks)."""
        return tuple(
            (self.joints.index(a), self.joints.index(b))
            for a, b in RIGID_SEGMENTS
            if a in self.joints and b in self.joints
        )


def _build(name: str, joints: Sequence[str], edges: Sequence[tuple[str, str]]) -> SkeletonFormat:
    """A format from joint names and (parent, child) name pairs; the joint with no parent is the root."""
    index = {j: i for i, j in enumerate(joints)}
    parents = [-1] * len(joints)
    for parent, child in edges:
        if parents[index[child]] != -1:
            raise ValueError(f"skeleton {name}: {child} has two parents")
        parents[index[child]] = index[parent]
    return SkeletonFormat(name, tuple(joints), tuple(parents))


def _mirror(edges: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Left-side edges plus their right-side mirrors."""
    out = list(edges)
    out += [(flip_name(a), flip_name(b)) for a, b in edges if "left" in a + b]
    return out


_ARM = [("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist")]
_LEG = [("left_hip", "left_knee"), ("left_knee", "left_ankle")]
_OP_FOOT = [("left_ankle", "left_heel"), ("left_ankle", "left_big_toe"), ("left_big_toe", "left_small_toe")]

BLAZEPOSE_33 = _build(
    "blazepose33",
    [
        "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
        "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
        "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
        "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
        "left_foot_index", "right_foot_index",
    ],
    # No mid-hip or neck in BlazePose: the tree hangs from the left hip, across to the right hip, and up
    # each side to the shoulders; the head hangs from the left shoulder.
    [("left_hip", "right_hip"), ("left_hip", "left_shoulder"), ("right_hip", "right_shoulder"),
     ("left_shoulder", "nose"), ("nose", "mouth_left"), ("nose", "mouth_right")]
    + _mirror(
        _ARM + _LEG
        + [("nose", "left_eye_inner"), ("left_eye_inner", "left_eye"), ("left_eye", "left_eye_outer"),
           ("left_eye_outer", "left_ear"), ("left_wrist", "left_pinky"), ("left_wrist", "left_index"),
           ("left_wrist", "left_thumb"), ("left_ankle", "left_heel"), ("left_ankle", "left_foot_index")]
    ),
)

_COCO_JOINTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
]
_COCO_FACE = [("nose", "left_eye"), ("left_eye", "left_ear")]

COCO_17 = _build(
    "coco17",
    _COCO_JOINTS,
    [("left_hip", "right_hip"), ("left_hip", "left_shoulder"), ("right_hip", "right_shoulder"),
     ("left_shoulder", "nose")] + _mirror(_ARM + _LEG + _COCO_FACE),
)

_FEET = ["left_big_toe", "right_big_toe", "left_small_toe", "right_small_toe", "left_heel", "right_heel"]

HALPE_26 = _build(
    "halpe26",
    _COCO_JOINTS + ["head_top", "neck", "mid_hip"] + _FEET,
    [("mid_hip", "left_hip"), ("mid_hip", "right_hip"), ("mid_hip", "neck"), ("neck", "left_shoulder"),
     ("neck", "right_shoulder"), ("neck", "nose"), ("nose", "head_top")]
    + _mirror(_ARM + _LEG + _COCO_FACE + _OP_FOOT),
)

_OP_TRUNK = [("mid_hip", "left_hip"), ("mid_hip", "right_hip"), ("mid_hip", "neck"),
             ("neck", "left_shoulder"), ("neck", "right_shoulder"), ("neck", "nose")]

BODY_25 = _build(
    "body25",
    [
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
        "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
        "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
        "left_heel", "right_big_toe", "right_small_toe", "right_heel",
    ],
    _OP_TRUNK + _mirror(_ARM + _LEG + _COCO_FACE + _OP_FOOT),
)

BODY_25B = _build(
    "body25b",
    _COCO_JOINTS + ["upper_neck", "head_top", "left_big_toe", "left_small_toe", "left_heel",
                    "right_big_toe", "right_small_toe", "right_heel"],
    [("left_hip", "right_hip"), ("left_hip", "left_shoulder"), ("right_hip", "right_shoulder"),
     ("left_shoulder", "upper_neck"), ("upper_neck", "nose"), ("upper_neck", "head_top")]
    + _mirror(_ARM + _LEG + _COCO_FACE + _OP_FOOT),
)

COCO_18 = _build(
    "coco18",
    [
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
        "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "right_eye", "left_eye", "right_ear", "left_ear",
    ],
    [("neck", "left_hip"), ("neck", "right_hip"), ("neck", "left_shoulder"), ("neck", "right_shoulder"),
     ("neck", "nose")] + _mirror(_ARM + _LEG + _COCO_FACE),
)

SMPL_24 = SkeletonFormat(
    "smpl24",
    (
        "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
        "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hand", "right_hand",
    ),
    (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21),
)

FORMATS: dict[str, SkeletonFormat] = {
    f.name: f for f in (BLAZEPOSE_33, COCO_17, HALPE_26, BODY_25, BODY_25B, COCO_18, SMPL_24)
}

# Joints a format may lack but can be estimated from others: name -> alternatives, each a group of joints
# to average; the first group whose joints are all in the source format is used.
DERIVED_JOINTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "mid_hip": (("left_hip", "right_hip"),),
    "pelvis": (("mid_hip",), ("left_hip", "right_hip")),
    "neck": (("left_shoulder", "right_shoulder"),),
    "head": (("left_ear", "right_ear"),),
    "left_foot": (("left_foot_index",), ("left_big_toe", "left_small_toe")),
    "right_foot": (("right_foot_index",), ("right_big_toe", "right_small_toe")),
    "left_foot_index": (("left_big_toe",),),
    "right_foot_index": (("right_big_toe",),),
    "left_big_toe": (("left_foot_index",),),
    "right_big_toe": (("right_foot_index",),),
    "left_hand": (("left_index", "left_pinky"),),
    "right_hand": (("right_index", "right_pinky"),),
}

# Segments whose length is constant on a real body (by joint name); each format uses those it has.
RIGID_SEGMENTS: tuple[tuple[str, str], ...] = tuple(
    _mirror(
        [
            ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("left_hip", "left_knee"),
            ("left_knee", "left_ankle"), ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"),
            ("left_heel", "left_big_toe"), ("left_eye", "left_ear"),
        ]
    )
    + [("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_ear", "right_ear")]
)


def get_format(name: str | SkeletonFormat) -> SkeletonFormat:
    """The format called ``name`` (case and ``-``/``_`` insensitive: ``BODY_25``, ``body25``, ``coco-17``)."""
    if isinstance(name, SkeletonFormat):
        return name
    key = str(name).lower().replace("-", "").replace("_", "")
    if key in FORMATS:
        return FORMATS[key]
    raise ValueError(f"unknown skeleton format {name!r}; known formats: {', '.join(FORMATS)}")


def conversion_plan(
    from_format: str | SkeletonFormat, to_format: str | SkeletonFormat
) -> list[tuple[int, ...]]:
    """For each target joint, the source joint indices whose mean gives it (empty: no source, NaN)."""
    src, dst = get_format(from_format), get_format(to_format)
    plan: list[tuple[int, ...]] = []
    for joint in dst.joints:
        if joint in src.joints:
            plan.append((src.joints.index(joint),))
            continue
        group: tuple[int, ...] = ()
        for alternative in DERIVED_JOINTS.get(joint, ()):
            resolved = _resolve(alternative, src)
            if resolved:
                group = resolved
                break
        plan.append(group)
    return plan


def _resolve(names: tuple[str, ...], src: SkeletonFormat) -> tuple[int, ...]:
    """Source indices for a group of names, deriving one level deep (``pelvis`` <- ``mid_hip`` <- hips)."""
    out: list[int] = []
    for name in names:
        if name in src.joints:
            out.append(src.joints.index(name))
            continue
        for alternative in DERIVED_JOINTS.get(name, ()):
            if all(a in src.joints for a in alternative):
                out.extend(src.joints.index(a) for a in alternative)
                break
        else:
            return ()
    return tuple(out)


def convert(
    points: np.ndarray, from_format: str | SkeletonFormat, to_format: str | SkeletonFormat
) -> np.ndarray:
    """Re-order keypoints into another format. ``points`` (..., J_from, D) -> (..., J_to, D).

    Derived joints are the mean of their sources (NaN if any source is NaN); joints with no source are NaN.
    """
    src, dst = get_format(from_format), get_format(to_format)
    points = np.asarray(points, dtype=float)
    if points.ndim < 2 or points.shape[-2] != src.num_joints:
        raise ValueError(
            f"points must have shape (..., {src.num_joints}, D) for {src.name}, got {points.shape}"
        )
    out = np.full(points.shape[:-2] + (dst.num_joints, points.shape[-1]), np.nan)
    for j, group in enumerate(conversion_plan(src, dst)):
        if group:
            out[..., j, :] = points[..., list(group), :].mean(axis=-2)
    return out


def convert_confidence(
    confidence: np.ndarray, from_format: str | SkeletonFormat, to_format: str | SkeletonFormat
) -> np.ndarray:
    """Re-order confidences (..., J_from) -> (..., J_to); a derived joint gets its sources' minimum, a
    joint with no source 0."""
    src, dst = get_format(from_format), get_format(to_format)
    confidence = np.asarray(confidence, dtype=float)
    if confidence.ndim < 1 or confidence.shape[-1] != src.num_joints:
        raise ValueError(
            f"confidence must have shape (..., {src.num_joints}) for {src.name}, got {confidence.shape}"
        )
    out = np.zeros(confidence.shape[:-1] + (dst.num_joints,))
    for j, group in enumerate(conversion_plan(src, dst)):
        if group:
            out[..., j] = confidence[..., list(group)].min(axis=-1)
    return out


# ------------------------------------------------------------------------------------------------
# Telling same-count layouts apart from the data
# ------------------------------------------------------------------------------------------------
DETECTOR_FORMATS: tuple[str, ...] = ("blazepose33", "coco17", "halpe26", "body25", "body25b", "coco18")
"""Formats that 2D detectors write (SMPL-24 is a body model's, never a detector's)."""

# Segments scored for every candidate layout, by name: each left one with its right mirror, then the two
# girdles. A layout read at the wrong indices joins unrelated joints, so these come out long and lopsided.
_SIDE_SEGMENTS = (("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("left_hip", "left_knee"),
                  ("left_knee", "left_ankle"), ("left_eye", "left_ear"), ("nose", "left_eye"),
                  ("left_shoulder", "left_hip"))
_GIRDLES = (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"))
_HEAD = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")


def layouts_with(num_joints: int) -> tuple[str, ...]:
    """Names of the detector formats (:data:`DETECTOR_FORMATS`) with ``num_joints`` joints."""
    return tuple(n for n in DETECTOR_FORMATS if FORMATS[n].num_joints == num_joints)


def _named(fmt: SkeletonFormat, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """(S, 2) indices of the named segments the format has."""
    rows = [(fmt.joints.index(a), fmt.joints.index(b)) for a, b in pairs if a in fmt.joints and b in fmt.joints]
    return np.array(rows, dtype=int).reshape(-1, 2)


def _mean_of(xy: np.ndarray, fmt: SkeletonFormat, names: Sequence[str]) -> np.ndarray:
    """(N, 2) mean of the named joints present per detection (NaN when none is)."""
    idx = [fmt.joints.index(n) for n in names if n in fmt.joints]
    if not idx:
        return np.full((len(xy), 2), np.nan)
    pts = xy[:, idx]
    count = np.isfinite(pts[..., 0]).sum(-1)
    total = np.nansum(pts, axis=1)
    return np.where(count[:, None] > 0, total / np.maximum(count, 1)[:, None], np.nan)


def layout_cues(xy: np.ndarray, skeleton: str | SkeletonFormat) -> np.ndarray:
    """How body-like the detections look when read as ``skeleton``: (N, 3) cues per detection.

    xy (N, J, 2), NaN where a joint is missing. Columns (NaN where a cue cannot be measured):

    - length: mean length of the named limb, face and girdle segments over the detection's extent (its
      bounding-box diagonal); bones join neighbouring joints, so the right layout gives short segments.
    - asymmetry: median |log(left / right)| over mirrored segments (upper arm, forearm, thigh, shank,
      eye-ear, nose-eye, torso side); about 0 for the right layout, large when the indices are wrong.
    - order: fraction of anatomical orderings that hold along the body's own axis (hips -> shoulders, so any
      camera roll is fine): the head beyond the shoulders, the knees below the hips, the ankles below the
      knees.
    """
    fmt = get_format(skeleton)
    xy = np.asarray(xy, dtype=float)
    if xy.ndim != 3 or xy.shape[1:] != (fmt.num_joints, 2):
        raise ValueError(f"xy must have shape (N, {fmt.num_joints}, 2) for {fmt.name}, got {xy.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        extent = np.linalg.norm(np.nanmax(xy, axis=1) - np.nanmin(xy, axis=1), axis=-1)  # (N,)
        extent = np.where(extent > 0, extent, np.nan)
        left = _named(fmt, _SIDE_SEGMENTS)
        right = _named(fmt, [(flip_name(a), flip_name(b)) for a, b in _SIDE_SEGMENTS])
        segs = np.concatenate([left, right, _named(fmt, _GIRDLES)])

        def lengths(s: np.ndarray) -> np.ndarray:
            return np.linalg.norm(xy[:, s[:, 0]] - xy[:, s[:, 1]], axis=-1) / extent[:, None]

        seg_len = lengths(segs)
        length = _nanmean_rows(seg_len)
        ratio = np.abs(np.log((lengths(left) + 1e-3) / (lengths(right) + 1e-3)))
        asymmetry = np.full(len(xy), np.nan)
        has = np.isfinite(ratio).any(-1)
        asymmetry[has] = np.nanmedian(ratio[has], axis=-1)
        hips = _mean_of(xy, fmt, ("left_hip", "right_hip"))
        shoulders = _mean_of(xy, fmt, ("left_shoulder", "right_shoulder"))
        axis = shoulders - hips
        norm2 = (axis**2).sum(-1)
        axis = axis / np.where(norm2 > 0, norm2, np.nan)[:, None]  # hips at 0, shoulders at 1

        def along(names: Sequence[str]) -> np.ndarray:
            return ((_mean_of(xy, fmt, names) - hips) * axis).sum(-1)

        head, knees = along(_HEAD), along(("left_knee", "right_knee"))
        ankles = along(("left_ankle", "right_ankle"))
        checks = np.stack([head - 1.0, -knees, knees - ankles], -1)
        order = _nanmean_rows(np.where(np.isfinite(checks), checks > 0, np.nan))
    return np.stack([length, asymmetry, order], -1)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Row means of (N, K) ignoring NaN; NaN for a row with nothing finite (no warning)."""
    count = np.isfinite(a).sum(-1)
    return np.where(count > 0, np.nansum(a, -1) / np.maximum(count, 1), np.nan)


_CUE_WEIGHTS = np.array([-2.0, -1.0, 1.0])
"""Plausibility = 2 x -length - asymmetry + order; on the right layout length is about half a wrong one's
(0.15 vs 0.3 of the extent), asymmetry 0.15 vs 0.3-0.7, order 1 vs 0.33-0.5."""


@dataclass(frozen=True)
class LayoutChoice:
    """Which of several same-size layouts the detections are, and why.

    skeleton: the chosen format's name, or "" when the data cannot tell (then ask the user). detections:
    people (camera, frame, person) that had enough joints to score. evidence: per candidate, the median
    ``length`` and ``asymmetry`` cues, the mean ``order`` cue (see :func:`layout_cues`) and ``preferred``,
    the fraction of scored detections on which that layout was the most body-like. reason: one line.
    """

    skeleton: str
    candidates: tuple[str, ...]
    detections: int
    evidence: dict[str, dict[str, float]]
    reason: str

    def as_report(self) -> dict[str, object]:
        """Plain data for a stage report."""
        return {"skeleton": self.skeleton, "candidates": list(self.candidates), "detections": self.detections,
                "evidence": self.evidence, "reason": self.reason}


def identify_layout(
    xy: np.ndarray, candidates: Sequence[str], *, min_detections: int = 10, min_preferred: float = 0.75,
    max_detections: int = 5000,
) -> LayoutChoice:
    """Choose among same-size layouts from the detections themselves.

    xy (N, J, 2) pixels, NaN where missing (any camera, frame and person, flattened). Every detection is
    scored as each candidate (:func:`layout_cues`, only cues measurable under every candidate); the
    candidate most body-like on at least ``min_preferred`` of at least ``min_detections`` detections wins.
    Otherwise ``skeleton`` is "" and ``reason`` says why. At most ``max_detections`` evenly spaced
    detections are scored.
    """
    xy = np.asarray(xy, dtype=float)
    fmts = [get_format(c) for c in candidates]
    if not fmts or len({f.num_joints for f in fmts}) != 1:
        raise ValueError(f"candidates must be layouts of one size, got {list(candidates)}")
    J = fmts[0].num_joints
    if xy.ndim != 3 or xy.shape[1:] != (J, 2):
        raise ValueError(f"xy must have shape (N, {J}, 2), got {xy.shape}")
    names = tuple(f.name for f in fmts)
    keep = np.isfinite(xy).all(-1).sum(-1) >= max(5, J // 3)
    xy = xy[keep]
    if len(xy) > max_detections:
        xy = xy[np.linspace(0, len(xy) - 1, max_detections).astype(int)]
    cues = np.stack([layout_cues(xy, f) for f in fmts])  # (K, N, 3)
    usable = np.isfinite(cues).all(0)  # (N, 3): measurable under every candidate
    scored = usable.any(-1)
    score = np.where(usable[None], cues * _CUE_WEIGHTS, 0.0).sum(-1)[:, scored]  # (K, N')
    n = int(scored.sum())
    best = np.argmax(score, axis=0) if n else np.zeros(0, int)
    evidence: dict[str, dict[str, float]] = {}
    with np.errstate(invalid="ignore"):
        for k, name in enumerate(names):
            c = cues[k][scored]
            evidence[name] = {
                "length": _round(np.nanmedian(c[:, 0]) if np.isfinite(c[:, 0]).any() else np.nan),
                "asymmetry": _round(np.nanmedian(c[:, 1]) if np.isfinite(c[:, 1]).any() else np.nan),
                "order": _round(np.nanmean(c[:, 2]) if np.isfinite(c[:, 2]).any() else np.nan),
                "preferred": _round(float((best == k).mean()) if n else 0.0),
            }
    winner = names[int(np.argmax([evidence[m]["preferred"] for m in names]))]
    summary = "; ".join(f"{m}: most body-like on {100 * e['preferred']:.0f} %, segment length {e['length']}, "
                        f"left/right asymmetry {e['asymmetry']}, anatomical order {e['order']}"
                        for m, e in evidence.items())
    if len(names) == 1:
        return LayoutChoice(names[0], names, n, evidence, f"the only {J}-joint layout ({summary})")
    if n < min_detections:
        return LayoutChoice("", names, n, evidence,
                            f"only {n} detection(s) with enough joints to tell {' from '.join(names)} apart")
    if evidence[winner]["preferred"] < min_preferred:
        return LayoutChoice("", names, n, evidence, f"no layout is clearly the most body-like over {n} "
                            f"detections ({summary})")
    return LayoutChoice(winner, names, n, evidence, f"{winner} over {n} detections ({summary})")


def _round(value: float) -> float:
    return float(np.round(value, 3)) if np.isfinite(value) else float("nan")
