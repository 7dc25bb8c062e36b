"""Make ``data/anny_landmarks.npz``: Anny's keypoint landmarks as vertex-weight pairs.

Run ``python -m mocap_studio.tools.make_regressors`` (needs Anny's cache; builds it on first use).

Where each landmark comes from (Anny's average body, rest pose, Z up, facing -Y, left +X):
- nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles, big and small toes, heels: Anny's
  own keypoint regressor (``anny/data/keypoints/coco.pth``), keeping its 24 largest weights per keypoint
  (renormalised; the dropped ones move the point by a few millimetres at most).
- eye inner/outer corners: the 3 vertices nearest to 1.2 cm medial / 1.4 cm lateral of the eye.
- mouth corners: the most anterior vertex 2.4 cm to each side of the midline, 3-6 cm below the nose.
- pinky, index and thumb (BlazePose's knuckles): the 8 vertices nearest to the heads of the bones
  ``finger5-1``, ``finger2-1`` and ``finger1-2``, equally weighted (their mean is near the joint).
- head top: the 3 highest vertices.
- then every landmark in ``data/anny_landmarks_learned.npz`` (when present) replaces the above: those are
  learned from MediaPipe's own triangulated landmarks in virtual studio takes
  (``tools/learn_landmarks.py``; provenance in ``anny_landmarks_learned.json``), so that the
  body model's BlazePose landmarks are where MediaPipe puts them (the 12 limb joints: 7-30 mm each from the
  COCO regressor's points, mostly a constant offset on the body).
Each surface landmark also records its offset from an SMPL-24 joint (head, wrist or ankle), scaled by body
height, so that other body models can place it on their own mesh (``regressors.transfer_landmarks``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from mocap_studio.reconstruction.body.anny_model import AnnyBody, load_anny_core
from mocap_studio.reconstruction.body.regressors import ANNY_LANDMARKS_PATH, LandmarkSet

LEARNED_LANDMARKS_PATH = ANNY_LANDMARKS_PATH.with_name("anny_landmarks_learned.npz")

logger = logging.getLogger(__name__)

COCO_LANDMARKS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle", "left_big_toe", "right_big_toe", "left_small_toe",
    "right_small_toe", "left_heel", "right_heel",
)
MAX_VERTICES = 24
JOINT_LANDMARKS = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")


def _anchor_for(name: str) -> str:
    side = "left" if name.startswith("left") or name.endswith("left") else "right"
    if any(k in name for k in ("heel", "toe", "foot")):
        return f"{side}_ankle"
    if any(k in name for k in ("pinky", "index", "thumb")):
        return f"{side}_wrist"
    for j in JOINT_LANDMARKS:
        if name.endswith(j):
            return name
    return "head"


def _nearest(v: np.ndarray, point: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.argsort(np.linalg.norm(v - point, axis=1))[:k]
    return ids.astype(np.int64), np.full(k, 1.0 / k)


def build_anny_landmarks(learned_path: Path | None = LEARNED_LANDMARKS_PATH) -> LandmarkSet:
    """The Anny landmark set; rows in ``learned_path`` (a LandmarkSet file) replace the hand-made ones
    (``None``: the hand-made set only, the prior that learning starts from)."""
    core = load_anny_core()
    body = AnnyBody(landmarks_path=None)  # only the geometry is needed, not an existing landmark file
    shape = body.default_shape()
    with torch.no_grad():
        v = body.rest_vertices_torch(torch.as_tensor(shape, dtype=body.dtype)).double().numpy()
        joints = body.rest_joints_torch(torch.as_tensor(shape, dtype=body.dtype)).double().numpy()
    bone = {n: joints[i] for i, n in enumerate(body.joint_names)}
    semantic = {sem: joints[j] for sem, j in body.semantic_joints.items()}
    height = float(v[:, 2].max() - v[:, 2].min())

    import anny

    coco = torch.load(Path(anny.__file__).parent / "data" / "keypoints" / "coco.pth", weights_only=True)
    base_ids = core.base_mesh_vertex_indices.cpu().numpy()
    rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in COCO_LANDMARKS:
        w = coco[name].double().numpy()[base_ids]
        # keep the largest weights only: a few vertices per keypoint keep fitting fast
        ids = np.argsort(-np.abs(w))[:MAX_VERTICES]
        ids = ids[np.abs(w[ids]) > 1e-6]
        rows[name] = (ids.astype(np.int64), w[ids] / w[ids].sum())

    def pos(name: str) -> np.ndarray:
        ids, w = rows[name]
        return w @ v[ids]

    for side, sx in (("left", 1.0), ("right", -1.0)):
        eye = pos(f"{side}_eye")
        rows[f"{side}_eye_inner"] = _nearest(v, eye + np.array([-0.012 * sx, 0, 0]), 3)
        rows[f"{side}_eye_outer"] = _nearest(v, eye + np.array([0.014 * sx, 0, 0]), 3)
        nose = pos("nose")
        box = (np.abs(v[:, 0] - 0.024 * sx) < 0.005) & (v[:, 2] < nose[2] - 0.03) & (v[:, 2] > nose[2] - 0.06)
        box &= np.abs(v[:, 1] - nose[1]) < 0.06
        cand = np.flatnonzero(box)
        rows[f"mouth_{side}"] = (cand[[np.argmin(v[cand, 1])]].astype(np.int64), np.ones(1))
        s = "L" if side == "left" else "R"
        for landmark, bone_name in (("pinky", "finger5-1"), ("index", "finger2-1"), ("thumb", "finger1-2")):
            rows[f"{side}_{landmark}"] = _nearest(v, bone[f"{bone_name}.{s}"], 8)
    top = np.argsort(-v[:, 2])[:3]
    rows["head_top"] = (top.astype(np.int64), np.full(3, 1 / 3))
    if learned_path is not None and Path(learned_path).exists():
        learned = LandmarkSet.load(learned_path)
        unknown = [n for n in learned.names if n not in rows]
        if unknown:
            raise ValueError(f"{learned_path}: learned landmarks {unknown} are not Anny landmarks")
        if learned.max_vertex() >= len(v):
            raise ValueError(f"{learned_path}: vertex index {learned.max_vertex()} beyond Anny's {len(v)} vertices")
        rows.update(zip(learned.names, learned.rows, strict=True))
        logger.info("learned definitions from %s: %s", learned_path, ", ".join(learned.names))

    names = tuple(rows)
    anchors = tuple(_anchor_for(n) for n in names)
    kinds = tuple(
        "joint" if any(n == f"{s}_{j}" for s in ("left", "right") for j in JOINT_LANDMARKS) else "surface" for n in names
    )
    offsets = np.array([(pos(n) - semantic[a]) / height for n, a in zip(names, anchors, strict=True)])
    return LandmarkSet(names, tuple(rows[n] for n in names), anchors, offsets, kinds, height)


def main(argv: list[str] | None = None) -> int:
    """Command line: build Anny's landmark regressors and save them (``--out``); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ANNY_LANDMARKS_PATH)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    landmarks = build_anny_landmarks()
    landmarks.save(args.out)
    logger.info("wrote %d landmarks to %s", len(landmarks.names), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
