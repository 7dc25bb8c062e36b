"""Scoring a several-performer synthetic take (``mocap synth --performers N``) against its truth, person by person.

The estimated people (``people/<id>/``, ids of the association) and the true performers (``truth/<id>/``, ids of
the studio) are told apart by nothing but where they are: each estimated person is matched to the true performer
whose body joints lie nearest over the take (one to one, Hungarian), in the truth's world (the calibrated world
moved onto the true one from the cameras alone, :func:`demo.to_truth_world`). Per person:

- ``found``: the fraction of the take's frames in which the person was found by two cameras or more
  (``people.json``), and ``triangulated``: the fraction with body joints in keypoints3d.npz;
- ``identity_switches``: how many times, over the frames the person has body joints, the nearest true performer
  changes, and ``frames_on_another``: frames in which another true performer lies nearer than the matched one;
- ``mpjpe_body_mm``: the 12 body joints' mean error (as ``mocap demo``); ``per_vertex_error_mm``: the fitted
  mesh's mean vertex error over the frames it shares with the truth's vertices (when both exist).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from mocap_studio.demo import BODY_JOINTS, to_truth_world
from mocap_studio.session import Session
from scipy.optimize import linear_sum_assignment


def _body_joints(skeleton: str) -> list[int]:
    from mocap_studio.reconstruction.skeletons import get_format

    return [i for i, n in enumerate(get_format(skeleton).joints) if any(b in n for b in BODY_JOINTS)]


def _true_ids(session: Session) -> list[str]:
    return sorted(p.name for p in session.truth_dir.iterdir() if p.is_dir() and (p / "body.npz").exists())


def _distances(session: Session, pid: str, true_ids: list[str], R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N, T, J) distances in mm from person ``pid``'s body joints (in the truth's world) to each true performer's
    at the person's frame times."""
    from mocap_studio.reconstruction.keypoints import load_keypoints3d
    from mocap_studio.report.overlay import interpolate_keypoints

    est = load_keypoints3d(session.person(pid).keypoints3d_path)
    body = _body_joints(est.skeleton)
    xyz = est.xyz[:, body] @ R.T + t
    out = []
    for tid in true_ids:
        truth = load_keypoints3d(session.truth_dir / tid / f"keypoints3d_{est.skeleton}.npz")
        at = interpolate_keypoints(truth.xyz, truth.frame_times, est.frame_times)[:, body]
        out.append(1000 * np.linalg.norm(xyz - at, axis=-1))
    return np.stack(out)


def _vertex_error_mm(session: Session, pid: str, tid: str, R: np.ndarray, t: np.ndarray) -> float | None:
    from mocap_studio.reconstruction.body.io import load_body_npz
    from mocap_studio.stages_body import load_body_model

    person, truth_dir = session.person(pid), session.truth_dir / tid
    if not person.body_path.exists() or not (truth_dir / "body.npz").exists():
        return None
    fitted, truth = load_body_npz(person.body_path), load_body_npz(truth_dir / "body.npz")
    if fitted.model != truth.model:
        return None
    model = load_body_model(fitted.model, fitted.gender)
    saved = truth_dir / "vertices.npy"  # the studio's own mesh when it was asked to write it; else the true body's
    true_vertices = np.load(saved, mmap_mode="r") if saved.exists() else None
    true_model = model if true_vertices is not None else load_body_model(truth.model, truth.gender)
    index = np.searchsorted(truth.frame_times, fitted.frame_times).clip(0, len(truth.frame_times) - 1)
    match = np.flatnonzero(np.abs(truth.frame_times[index] - fitted.frame_times) < 1e-3)
    errors = []
    for start in range(0, len(match), 32):
        sel = match[start:start + 32]
        verts = model.evaluate(fitted.shape, fitted.pose_rotvec[sel], fitted.trans[sel]).vertices
        at = index[sel]
        true = np.asarray(true_vertices[at]) if true_vertices is not None else \
            true_model.evaluate(truth.shape, truth.pose_rotvec[at], truth.trans[at]).vertices
        errors.append(np.linalg.norm(verts @ R.T + t - true, axis=-1).mean(1))
    return float(1000 * np.concatenate(errors).mean()) if errors else None


def score_people(session: Session) -> dict[str, Any]:
    """Per estimated person: the true performer it is, found and triangulated fractions, identity switches,
    body MPJPE and per-vertex error (see the module docstring); and the true performers nobody matched."""
    if not session.truth_dir.is_dir():
        raise FileNotFoundError(f"{session.truth_dir}: no truth; only a synthetic take (mocap synth) can be scored")
    true_ids = _true_ids(session)
    if not true_ids:
        raise FileNotFoundError(f"{session.truth_dir}: no performer folders (truth/p0/ ...); synthesize the take "
                                "with --performers 2 or more")
    people = json.loads(session.people_path.read_text())["people"] if session.people_path.exists() else []
    warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)  # frames nobody was found in
    R, t = to_truth_world(session)
    ids = [p["id"] for p in people if session.person(p["id"]).keypoints3d_path.exists()]
    distances = {pid: _distances(session, pid, true_ids, R, t) for pid in ids}
    with np.errstate(invalid="ignore"):
        cost = np.array([[np.nanmedian(np.nanmean(distances[pid][k], -1)) for k in range(len(true_ids))]
                         for pid in ids]) if ids else np.zeros((0, len(true_ids)))
    rows, cols = linear_sum_assignment(np.nan_to_num(cost, nan=1e9))
    out: dict[str, Any] = {"people": {}, "unmatched_truth": sorted(set(true_ids) - {true_ids[c] for c in cols})}
    found = {p["id"]: p.get("frames_seen_by_two_cameras") for p in people}
    for r, c in zip(rows, cols, strict=True):
        pid, d = ids[r], distances[ids[r]]
        per_frame = np.nanmean(np.where(np.isfinite(d), d, np.nan), -1) if np.isfinite(d).any() else d[..., 0]
        seen = np.isfinite(per_frame[c])
        nearest = np.argmin(np.where(np.isfinite(per_frame), per_frame, np.inf), 0)[seen]
        out["people"][pid] = {
            "truth": true_ids[c], "found": found.get(pid), "triangulated": round(float(seen.mean()), 4),
            "identity_switches": int((np.diff(nearest) != 0).sum()),
            "frames_on_another": int((nearest != c).sum()),
            "mpjpe_body_mm": round(float(np.nanmean(d[c])), 1),
            "per_vertex_error_mm": _round(_vertex_error_mm(session, pid, true_ids[c], R, t)),
        }
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main(argv: list[str] | None = None) -> int:
    """``python -m mocap_studio.people_scores SESSION``: print the take's per-person scores as JSON."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("session", type=Path)
    args = parser.parse_args(argv)
    print(json.dumps(score_people(Session(args.session)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["score_people"]
