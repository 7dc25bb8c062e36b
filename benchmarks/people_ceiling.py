"""How far the triangulation could take each performer of a several-performer synthetic take, from the detections
it has: the ceiling of a better robust triangulation, told apart from the detector's share of the error.

    python benchmarks/people_ceiling.py TAKE [--drop-px 25]

TAKE is a ``mocap synth --performers N`` take already run through ``mocap run`` (its ``people/<id>/`` folders
hold each person's 2D keypoints). Each person is triangulated again from their own ``keypoints2d.npz``
(synchronized as the triangulate stage does) with the take's [triangulate] and [filter] settings, three ways,
and scored as ``people_scores`` scores the take (body MPJPE of the filtered keypoints, in the truth's world,
against the true performer the person matches):

- ``as detected``: the detections as they are (the pipeline's own figure, to the filter);
- ``outliers removed``: every detection farther than ``--drop-px`` from the true joint's projection left out, a
  perfect outlier test (which also leaves some joints fewer views);
- ``true depth on one view``: the points that rest on one camera moved along that camera's ray to the point
  nearest the truth, a perfect depth for what one camera alone sees (its 2D stays the detector's).

Each way also splits the points by how many views they rest on: the share of the body points, and their mean
error (mm, before the filter).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import warnings
from pathlib import Path

import numpy as np
from mocap_studio.demo import to_truth_world
from mocap_studio.inputs import read_keypoints2d, read_rig
from mocap_studio.people_scores import _body_joints, _true_ids
from mocap_studio.reconstruction.filtering import FilterConfig, smooth
from mocap_studio.reconstruction.keypoints import load_keypoints3d
from mocap_studio.reconstruction.triangulate import TriangulationConfig, triangulate_with_diagnostics
from mocap_studio.report.overlay import interpolate_keypoints
from mocap_studio.session import Session
from mocap_studio.stages_keypoints import camera_frame_times, synchronize_keypoints


def _matched_truth(take: Session, xyz: np.ndarray, times: np.ndarray, skeleton: str, body: list[int],
                   R: np.ndarray, t: np.ndarray) -> tuple[str, np.ndarray]:
    """The true performer nearest the person's body joints over the take, and their joints (T, J, 3) moved into
    the take's calibrated world."""
    best: tuple[float, str, np.ndarray] | None = None
    for tid in _true_ids(take):
        truth = load_keypoints3d(take.truth_dir / tid / f"keypoints3d_{skeleton}.npz")
        at = interpolate_keypoints(truth.xyz, truth.frame_times, times)
        error = float(np.nanmedian(np.linalg.norm(xyz[:, body] @ R.T + t - at[:, body], axis=-1)))
        if best is None or error < best[0]:
            best = (error, tid, (at - t) @ R)
    assert best is not None
    return best[1], best[2]


def _on_true_depth(xyz: np.ndarray, used: np.ndarray, centres: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """xyz (T, J, 3) with each point resting on one view (used (T, J, C)) moved along that view's ray to the point
    nearest the truth's."""
    out = xyz.copy()
    one = (used.sum(-1) == 1) & np.isfinite(xyz).all(-1) & np.isfinite(truth).all(-1)
    t_idx, j_idx = np.nonzero(one)
    origin = centres[np.argmax(used[t_idx, j_idx], -1)]
    ray = xyz[t_idx, j_idx] - origin
    ray /= np.linalg.norm(ray, axis=-1, keepdims=True)
    depth = np.sum((truth[t_idx, j_idx] - origin) * ray, -1, keepdims=True)
    out[t_idx, j_idx] = origin + depth * ray
    return out


def person_ceiling(take: Session, pid: str, drop_px: float) -> dict:
    """One person's body MPJPE (mm) three ways (see the module docstring), with the split by views."""
    person = take.person(pid)
    kp = read_keypoints2d(person)  # as the triangulate stage reads them: on the take's one timeline
    kp, _ = synchronize_keypoints(person, kp, camera_frame_times(person, kp), [])
    rig = read_rig(person, fit_to_recordings=True, warnings=[])
    config = person.stage_config("triangulate", TriangulationConfig)
    filter_config = person.stage_config("filter", FilterConfig)
    frame_rate = take.config().frame_rate or 30.0
    body = _body_joints(kp.skeleton)
    R, t = to_truth_world(take)
    k3, _ = triangulate_with_diagnostics(rig, kp, config)
    tid, truth = _matched_truth(take, k3.xyz, k3.frame_times, kp.skeleton, body, R, t)
    centres = np.stack([np.asarray(cam.center, float) for cam in rig.cameras])

    def score(xyz: np.ndarray, used: np.ndarray) -> dict:
        raw = 1000 * np.linalg.norm(xyz[:, body] - truth[:, body], axis=-1)
        filtered = smooth(xyz, frame_rate, kp.skeleton, filter_config)
        views = used.sum(-1)[:, body]
        split = {}
        for k in range(used.shape[-1] + 1):
            sel = (views == k) & np.isfinite(raw)
            if sel.any():
                split[f"{k} views"] = {"share": round(float(sel.mean()), 3), "mean_mm": round(float(raw[sel].mean()), 1)}
        error = 1000 * np.linalg.norm(filtered[:, body] - truth[:, body], axis=-1)
        return {"mpjpe_body_mm": round(float(np.nanmean(error)), 1), "by_views": split}

    projected = np.stack([cam.project(truth) for cam in rig.cameras])  # (C, T, J, 2) true joints in each image
    far = np.linalg.norm(kp.xy - projected, axis=-1) > drop_px
    kept = dataclasses.replace(kp, xy=np.where(far[..., None], np.nan, kp.xy), confidence=np.where(far, 0.0, kp.confidence))
    k3_kept, _ = triangulate_with_diagnostics(rig, kept, config)
    return {
        "truth": tid,
        "as detected": score(k3.xyz, k3.cameras_used),
        f"outliers removed (> {drop_px:g} px)": score(k3_kept.xyz, k3_kept.cameras_used),
        "true depth on one view": score(_on_true_depth(k3.xyz, k3.cameras_used, centres, truth), k3.cameras_used),
    }


def main(argv: list[str] | None = None) -> int:
    """Print each person's ceiling as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("take", type=Path)
    parser.add_argument("--drop-px", type=float, default=25.0, help="the perfect outlier test's distance (px)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    logging.disable(logging.WARNING)
    take = Session(args.take)
    if not take.people_path.exists():
        raise SystemExit(f"{take.people_path} is missing: run `mocap run {take.root}` on a several-performer take first")
    people = [p["id"] for p in json.loads(take.people_path.read_text())["people"]]
    print(json.dumps({pid: person_ceiling(take, pid, args.drop_px) for pid in people}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
