"""Sequence-fitting benchmark: frames per second for Anny and the synthetic SMPL-format model on a
synthetic 60 fps take (10 mm noise, 5 % outliers), and peak memory for a 10-minute 60 fps take.

Run: ``.venv/bin/python benchmarks/bench_fitting.py [--frames 600] [--long-minutes 10]``. Uses 2 torch
threads. The long take is fitted for real (synthetic motion repeated) unless ``--long-minutes 0``; peak
memory is ``resource.getrusage`` max RSS of the process (it includes the body models themselves).
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from body_fixtures import make_synthetic_smpl_arrays, noisy_keypoints, plausible_motion, write_synthetic_smpl  # noqa: E402
from mocap_studio.reconstruction.body.anny_model import AnnyBody  # noqa: E402
from mocap_studio.reconstruction.body.fitting import FitConfig, fit_sequence  # noqa: E402
from mocap_studio.reconstruction.body.smpl_model import load_smpl  # noqa: E402
from mocap_studio.reconstruction.keypoints import Keypoints3D  # noqa: E402

FPS = 60.0


def _keypoints(model, shape, pose, trans) -> np.ndarray:  # noqa: ANN001
    """Keypoints (T, K, 3) in chunks, so that the benchmark's own bookkeeping stays small."""
    return np.concatenate([
        model.keypoints(shape, pose[a : a + 1000], trans[a : a + 1000], "blazepose33") for a in range(0, len(pose), 1000)
    ])


def _take(model, frames: int, seed: int = 3) -> tuple[np.ndarray, Keypoints3D]:  # noqa: ANN001
    shape = model.random_shape(np.random.default_rng(seed))
    pose, trans, _ = plausible_motion(model, shape, 200, FPS, seed)
    reps = int(np.ceil(frames / 200))
    pose = np.concatenate([pose] * reps)[:frames]
    trans = np.concatenate([trans] * reps)[:frames]
    clean = _keypoints(model, shape, pose, trans)
    return clean, noisy_keypoints(clean, seed)


def bench(model, frames: int) -> tuple[float, float]:  # noqa: ANN001
    """Fit a ``frames``-long synthetic take; returns frames per second and the keypoint MPJPE in millimetres."""
    clean, kp = _take(model, frames)
    cfg = FitConfig(model=model.name)
    fit_sequence(model, _take(model, 40)[1], cfg, frame_rate=FPS)  # warm-up (basis cache, allocator)
    start = time.perf_counter()
    res = fit_sequence(model, kp, cfg, frame_rate=FPS)
    seconds = time.perf_counter() - start
    fit = _keypoints(model, res.shape, res.pose_rotvec, res.trans)
    return frames / seconds, float(np.linalg.norm(fit - clean, axis=-1).mean() * 1000)


def main() -> None:
    """Command line: fitting speed and accuracy for Anny and synthetic SMPL, then a long take's speed and peak memory."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--long-minutes", type=float, default=10.0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    logging.basicConfig(level=logging.WARNING)
    anny = AnnyBody()
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_smpl(Path(tmp) / "smpl" / "SMPL_NEUTRAL.pkl", make_synthetic_smpl_arrays(anny))
        smpl = load_smpl(tmp)
    for model in (anny, smpl):
        fps, mpjpe = bench(model, args.frames)
        print(f"{model.name:5s}: {args.frames} frames, {fps:6.1f} frames/s on 2 threads, MPJPE {mpjpe:.1f} mm")
    if args.long_minutes > 0:
        frames = int(args.long_minutes * 60 * FPS)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        fps, mpjpe = bench(anny, frames)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"anny : {args.long_minutes:g}-minute take ({frames} frames): {fps:.1f} frames/s, MPJPE {mpjpe:.1f} mm, "
              f"peak RSS {peak:.0f} MiB (before the take {before:.0f} MiB)")


if __name__ == "__main__":
    main()
