"""Learn where a detector puts its landmarks on the body model, from the detector's own 3D points.

A detector's ``left_shoulder`` is not the body model's shoulder joint, nor the COCO regressor's vertex mix:
MediaPipe places it where its training labels put it, a few centimetres off either, and the offset is
mostly constant on the body. Given frames where the true posed mesh is known and the detector's landmarks
were triangulated (virtual studio takes: ``python -m mocap_studio.tools.landmark_takes``), each landmark
is fitted as a fixed convex combination of nearby vertices (non-negative weights summing to 1, so the point
stays inside the local mesh and follows it under any pose and shape):

    minimise over w:  sum_t huber(|V_t[c] w - y_t|) + ridge * T * |w - w_prior|^2,  w >= 0, sum(w) = 1

where c are the candidate vertices within ``radius_m`` of the prior landmark on the average rest body,
``y_t`` the triangulated landmark in frame t (NaN frames skipped) and ``w_prior`` the previous definition
(a weak pull towards it where the data do not decide). Huber weights come from iterated reweighting. The
result is trimmed to the ``max_vertices`` largest weights and refitted.

Run: ``python -m mocap_studio.tools.learn_landmarks SAMPLES.npz ... [--validate HELD_OUT.npz ...]``
(writes ``data/anny_landmarks.npz`` and ``data/anny_landmarks.json``, the provenance, beside it).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mocap_studio.reconstruction.body.regressors import LandmarkSet
from scipy.optimize import nnls

logger = logging.getLogger(__name__)

BODY_JOINTS = tuple(f"{s}_{j}" for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle") for s in ("left", "right"))


@dataclass(frozen=True)
class LearnConfig:
    """How landmark definitions are fitted."""

    radius_m: float = 0.14
    """Candidate vertices: within this distance of the prior landmark on the average rest body."""
    max_candidates: int = 160
    """At most this many candidates (the nearest)."""
    max_vertices: int = 24
    """Vertices kept per landmark (largest weights), as the regressors keep them few for fitting speed."""
    ridge: float = 1e-4
    """Pull towards the prior weights, per frame (squared metres per unit weight change)."""
    huber_m: float = 0.03
    """Residuals beyond this (metres) get Huber weights (mis-detections, left/right swaps)."""
    iterations: int = 4
    """Reweighting rounds."""


@dataclass(frozen=True)
class Samples:
    """Training frames: targets (T, L, 3) triangulated landmarks, metres, NaN where missing, named by
    ``names`` (L,); vertices (T, V, 3) the true posed mesh at the same instants; take (T,) take index."""

    names: tuple[str, ...]
    targets: np.ndarray
    vertices: np.ndarray
    take: np.ndarray


def load_samples(paths: list[Path], names: tuple[str, ...], every: int = 1) -> Samples:
    """Read ``landmark_takes`` sample files (every ``every``-th frame); targets keep only ``names``."""
    from mocap_studio.common.fileio import load_npz
    from mocap_studio.reconstruction.skeletons import get_format

    fmt = get_format("blazepose33").joints
    missing = [n for n in names if n not in fmt]
    if missing:
        raise ValueError(f"landmarks {missing} are not BlazePose-33 joints")
    cols = [fmt.index(n) for n in names]
    targets, verts, take = [], [], []
    for k, path in enumerate(paths):
        data = load_npz(path, ("targets", "vertices"))
        if data["targets"].shape[1] != len(fmt) or data["vertices"].shape[0] != data["targets"].shape[0]:
            raise ValueError(f"{path}: targets {data['targets'].shape} and vertices {data['vertices'].shape} do not pair")
        targets.append(data["targets"][::every][:, cols])
        verts.append(data["vertices"][::every])
        take.append(np.full(len(targets[-1]), k))
    return Samples(names, np.concatenate(targets), np.concatenate(verts), np.concatenate(take))


def _solve(a: np.ndarray, b: np.ndarray, w_prior: np.ndarray, ridge_rows: float) -> np.ndarray:
    """Non-negative least squares with sum(w) = 1 (a stiff row) and a pull towards ``w_prior``."""
    n = a.shape[1]
    scale = max(float(np.sqrt((a**2).sum() / n)), 1e-9)
    big = 1e3 * scale
    r = np.sqrt(ridge_rows)
    aa = np.vstack([a, big * np.ones((1, n)), r * np.eye(n)])
    bb = np.concatenate([b, [big], r * w_prior])
    w, _ = nnls(aa, bb, maxiter=50 * n)
    return w / max(w.sum(), 1e-12)


def fit_landmark(
    vertices: np.ndarray, targets: np.ndarray, candidates: np.ndarray, w_prior: np.ndarray, config: LearnConfig
) -> np.ndarray:
    """Weights (n,) over ``candidates`` (n,) reproducing ``targets`` (T, 3) from ``vertices`` (T, V, 3).

    ``w_prior`` (n,) sums to 1. Frames with a NaN target are skipped; at least 10 must remain.
    """
    if vertices.ndim != 3 or vertices.shape[2] != 3 or targets.shape != (vertices.shape[0], 3):
        raise ValueError(f"vertices must be (T, V, 3) and targets (T, 3); got {vertices.shape} and {targets.shape}")
    ok = np.isfinite(targets).all(1)
    if ok.sum() < 10:
        raise ValueError(f"only {int(ok.sum())} frames with this landmark triangulated; need 10 or more")
    vc = vertices[ok][:, candidates].astype(np.float64)  # (T, n, 3)
    y = targets[ok]
    T = len(y)

    def run(ids: np.ndarray, prior: np.ndarray) -> np.ndarray:
        a_full = vc[:, ids].transpose(0, 2, 1)  # (T, 3, n)
        rw = np.ones(T)
        w = prior
        for _ in range(config.iterations):
            s = np.sqrt(rw)[:, None, None]
            w = _solve((s * a_full).reshape(3 * T, -1), (s[:, :, 0] * y).reshape(-1), prior, config.ridge * T)
            res = np.linalg.norm(np.einsum("tkn,n->tk", a_full, w) - y, axis=1)
            rw = np.minimum(1.0, config.huber_m / np.maximum(res, 1e-9))
        return w

    w = run(np.arange(len(candidates)), w_prior)
    keep = np.sort(np.argsort(-w)[: config.max_vertices])
    keep = keep[w[keep] > 1e-6]
    prior = w_prior[keep] + 1e-9
    w_small = run(keep, prior / prior.sum())
    out = np.zeros(len(candidates))
    out[keep] = w_small
    return out


def landmark_positions(landmarks: LandmarkSet, names: tuple[str, ...], vertices: np.ndarray) -> np.ndarray:
    """(T, L, 3) positions of ``names`` from ``vertices`` (T, V, 3)."""
    out = np.empty((vertices.shape[0], len(names), 3))
    for k, name in enumerate(names):
        ids, w = landmarks.rows[landmarks.index(name)]
        out[:, k] = np.einsum("tnk,n->tk", vertices[:, ids].astype(np.float64), w)
    return out


def landmark_errors(landmarks: LandmarkSet, samples: Samples) -> np.ndarray:
    """(L,) mean distance (metres) between each landmark and its triangulated position, NaN frames skipped."""
    d = np.linalg.norm(landmark_positions(landmarks, samples.names, samples.vertices) - samples.targets, axis=-1)
    return np.nanmean(d, axis=0)


def learn(prior: LandmarkSet, rest_vertices: np.ndarray, samples: Samples, config: LearnConfig = LearnConfig()) -> LandmarkSet:
    """``prior`` with the rows of ``samples.names`` refitted (see the module docstring).

    rest_vertices: (V, 3) the average body at rest, where candidate vertices are chosen. Anchor offsets and
    kinds are recomputed by the caller (they need the body model's joints).
    """
    rows = list(prior.rows)
    for k, name in enumerate(samples.names):
        ids0, w0 = prior.rows[prior.index(name)]
        centre = w0 @ rest_vertices[ids0]
        d = np.linalg.norm(rest_vertices - centre, axis=1)
        cand = np.flatnonzero(d < config.radius_m)
        cand = cand[np.argsort(d[cand])][: config.max_candidates]
        cand = np.union1d(cand, ids0)
        w_prior = np.zeros(len(cand))
        w_prior[np.searchsorted(cand, ids0)] = w0
        w = fit_landmark(samples.vertices, samples.targets[:, k], cand, w_prior, config)
        nz = w > 0
        rows[prior.index(name)] = (cand[nz].astype(np.int64), w[nz] / w[nz].sum())
        logger.info("%s: %d candidates, %d vertices kept", name, len(cand), int(nz.sum()))
    return LandmarkSet(prior.names, tuple(rows), prior.anchor_joint, prior.anchor_offset, prior.kind, prior.reference_height)


def write_fixture(path: Path, held: Samples, prior: LandmarkSet, learned: LandmarkSet, source: str) -> Path:
    """A small held-out check for the tests: the triangulated ``targets`` (T, L, 3) of ``held.names``, the
    previous definitions' positions ``prior_xyz`` (T, L, 3), and the true mesh at the learned rows' vertices
    (``vertex_ids`` (N,), ``vertices`` (T, N, 3) float32)."""
    from mocap_studio.common.fileio import save_npz_atomic

    ids = np.unique(np.concatenate([learned.rows[learned.index(n)][0] for n in held.names]))
    return save_npz_atomic(
        path,
        names=np.array(held.names, dtype=str),
        targets=held.targets.astype(np.float32),
        prior_xyz=landmark_positions(prior, held.names, held.vertices).astype(np.float32),
        vertex_ids=ids,
        vertices=held.vertices[:, ids].astype(np.float32),
        source=np.array(source),
    )


def _report(label: str, before: np.ndarray, after: np.ndarray, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    out = {}
    for n, b, a in zip(names, before, after, strict=True):
        logger.info("  %-16s %s: %5.1f mm -> %5.1f mm", n, label, 1000 * b, 1000 * a)
        out[n] = {"before_mm": round(1000 * float(b), 2), "after_mm": round(1000 * float(a), 2)}
    body = [names.index(n) for n in BODY_JOINTS if n in names]
    logger.info("%s, body joints: %.1f mm -> %.1f mm", label, 1000 * np.mean(before[body]), 1000 * np.mean(after[body]))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: learn the landmark rows from sample files, score them on held-out files and write them; returns the exit
    status."""
    from dataclasses import asdict

    import torch
    from mocap_studio.common.fileio import load_npz, write_json_atomic
    from mocap_studio.reconstruction.body.anny_model import AnnyBody
    from mocap_studio.tools.make_regressors import LEARNED_LANDMARKS_PATH, build_anny_landmarks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, nargs="+", help="training sample files (landmark_takes)")
    parser.add_argument("--validate", type=Path, nargs="*", default=[], help="held-out sample files, only scored")
    parser.add_argument("--landmarks", default=",".join(BODY_JOINTS), help="comma-separated landmarks to learn")
    parser.add_argument("--every", type=int, default=1, help="use every n-th training frame")
    parser.add_argument("--radius", type=float, default=LearnConfig.radius_m)
    parser.add_argument("--ridge", type=float, default=LearnConfig.ridge)
    parser.add_argument("--out", type=Path, default=LEARNED_LANDMARKS_PATH, help="learned rows (a .json provenance goes beside)")
    parser.add_argument("--dry-run", action="store_true", help="score only; write nothing")
    parser.add_argument("--fixture", type=Path, help="also write a small test fixture from the first held-out file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = tuple(n for n in args.landmarks.split(",") if n)
    config = LearnConfig(radius_m=args.radius, ridge=args.ridge)
    prior = build_anny_landmarks(learned_path=None)
    body = AnnyBody(landmarks_path=None)
    with torch.no_grad():
        rest = body.rest_vertices_torch(torch.as_tensor(body.default_shape(), dtype=body.dtype)).double().numpy()
    train = load_samples(args.samples, names, args.every)
    logger.info("training: %d frames from %d takes", len(train.targets), len(args.samples))
    learned = learn(prior, rest, train, config)
    scores = {"training": _report("training", landmark_errors(prior, train), landmark_errors(learned, train), names)}
    for path in args.validate:
        held = load_samples([path], names)
        scores[path.name] = _report(path.name, landmark_errors(prior, held), landmark_errors(learned, held), names)
    if args.dry_run:
        return 0
    rows = LandmarkSet(names, tuple(learned.rows[learned.index(n)] for n in names))
    rows.save(args.out)

    def take_info(path: Path) -> dict:
        d = load_npz(path, ("seed", "motions", "targets", "seconds"))
        return {
            "file": path.name,
            "seed": int(d["seed"]),
            "motions": [str(m) for m in d["motions"]],
            "seconds": float(d["seconds"]),
            "frames": int(len(d["targets"])),
        }

    write_json_atomic(
        args.out.with_suffix(".json"),
        {
            "what": "Anny landmark definitions learned from MediaPipe (BlazePose-33, pose_landmark_full) triangulated in "
            "virtual studio takes; merged into anny_landmarks.npz by `python -m mocap_studio.tools.make_regressors`",
            "how": "`python -m mocap_studio.tools.landmark_takes WORK --seeds S... --seconds T [--first-motion K]` "
            "(ring4, 1280x720, 30 fps, true calibration; mocap sync, detect (MediaPipe image mode), triangulate with their "
            "defaults; "
            "seeds, exercises and lengths per take below), then `python -m mocap_studio.tools.learn_landmarks` "
            + " ".join(p.name for p in args.samples)
            + (" --validate " + " ".join(p.name for p in args.validate) if args.validate else ""),
            "config": asdict(config),
            "every": args.every,
            "landmarks": list(names),
            "training_takes": [take_info(p) for p in args.samples],
            "held_out_takes": [take_info(p) for p in args.validate],
            "not_used": "the benchmark take (benchmarks/bench_studio_keypoints.py: seed 0) is not used in any way",
            "mean_error_mm": scores,
        },
    )
    if args.fixture and args.validate:
        write_fixture(args.fixture, load_samples([args.validate[0]], names), prior, learned, args.validate[0].name)
    logger.info("wrote %s (+ .json); now run `python -m mocap_studio.tools.make_regressors`", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
