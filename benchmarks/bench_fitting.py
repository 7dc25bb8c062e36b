"""Sequence-fitting benchmark: frames per second for Anny and the synthetic SMPL-format model on a
synthetic 60 fps take (10 mm noise, 5 % outliers), and peak memory for a 10-minute 60 fps take; with
``--sessions``, the fit of session folders (real or virtual-studio takes, their 2D keypoints included, as
``mocap fit`` does): seconds, seconds per frame against the first session's, and the fit's quality figures.

Run: ``.venv/bin/python benchmarks/bench_fitting.py [--frames 600] [--long-minutes 10]``, or
``.venv/bin/python benchmarks/bench_fitting.py --sessions .cache/demo/take /path/to/real/take``. The fit
runs on its configured torch threads (``[fit] threads``, 1 by default). The long take is fitted for real
(synthetic motion repeated) unless ``--long-minutes 0``; peak memory is ``resource.getrusage`` max RSS of
the process (it includes the body models themselves).
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


def bench_sessions(roots: list[str]) -> None:
    """Fit each session folder (read-only: nothing is written) and print its time and quality figures; seconds
    per frame are compared with the first session's. Wall time and the process's CPU time are both shown
    (on a machine whose cores other work shares, the CPU time is the steadier figure)."""
    from mocap_studio.inputs import read_keypoints3d
    from mocap_studio.session import Session
    from mocap_studio.stages_body import _camera_views, fit_body_model

    first = None
    for root in roots:
        session = Session(Path(root))
        cfg = session.stage_config("fit", FitConfig)
        model = fit_body_model(cfg)
        kp = read_keypoints3d(session)
        rig, kp2d = _camera_views(session, kp, []) if cfg.reprojection else (None, None)
        rate = session.config().frame_rate or None
        cpu, wall = time.process_time(), time.perf_counter()
        res = fit_sequence(model, kp, cfg, frame_rate=rate, rig=rig, keypoints2d=kp2d)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        per_frame = wall / kp.num_frames
        first = first or per_frame
        f = res.figures
        print(f"{root}: {kp.num_frames} frames in {wall:.1f} s wall, {cpu:.1f} s CPU ({1000 * per_frame:.0f} ms/frame, "
              f"{per_frame / first:.2f}x the first); flips {f['flips']} (largest step {f['orientation_step_max_deg']:.0f} deg), "
              f"jerk ratio {f['jerk_ratio']:.2f}, acceleration ratio {f['acceleration_ratio']:.2f}, "
              f"ground {f['ground_z_m']:.3f} m")


def main() -> None:
    """Command line: fitting speed and accuracy for Anny and synthetic SMPL, then a long take's speed and peak memory."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--long-minutes", type=float, default=10.0)
    ap.add_argument("--sessions", nargs="+", help="fit these session folders instead (seconds per frame vs the first)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.sessions:
        bench_sessions(args.sessions)
        return
    anny = AnnyBody()
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_smpl(Path(tmp) / "smpl" / "SMPL_NEUTRAL.pkl", make_synthetic_smpl_arrays(anny))
        smpl = load_smpl(tmp)
    for model in (anny, smpl):
        fps, mpjpe = bench(model, args.frames)
        print(f"{model.name:5s}: {args.frames} frames, {fps:6.1f} frames/s on {FitConfig().threads} thread(s), "
              f"MPJPE {mpjpe:.1f} mm")
    if args.long_minutes > 0:
        frames = int(args.long_minutes * 60 * FPS)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        fps, mpjpe = bench(anny, frames)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"anny : {args.long_minutes:g}-minute take ({frames} frames): {fps:.1f} frames/s, MPJPE {mpjpe:.1f} mm, "
              f"peak RSS {peak:.0f} MiB (before the take {before:.0f} MiB)")


if __name__ == "__main__":
    main()
