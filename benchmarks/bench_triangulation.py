"""Triangulation benchmark: ours beside the inlier-only weighted DLT, a plain DLT, Pose2Sim's camera-exclusion
loop and aniposelib's ``triangulate_ransac``, on the same synthetic projections, in one process.

Scene (DESIGN.md "Numbers to beat"): 8 cameras on a ring (1280x720, f = 1000 px, half of them with lens
distortion), a walking BlazePose-33 skeleton, 2 px noise, 10 % outliers split between a bystander's joint,
the mirror joint (left/right swap) and a random pixel, with confidences that overlap the inliers'.

Peers get the same observations. Pose2Sim triangulates raw pixels with ``K [R | t]`` unless asked to
undistort, so it is given ideal (undistorted) pixels, as if its cameras had no distortion; aniposelib
undistorts itself and gets the observed pixels. Pose2Sim runs with its defaults (15 px, 2 cameras,
likelihood 0.3, no left/right swap handling). Slow peers run on a subset of frames; every method's error is
reported on the frames it ran, and ours also on those frames.

Run: ``.venv/bin/python benchmarks/bench_triangulation.py [--frames 600] [--pose2sim-frames 48]
[--anipose-frames 6]``. BLAS runs single-threaded here (set before numpy loads) because on a shared
2-core machine threaded BLAS on tall thin products thrashes; every method runs under the same setting.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from mocap_studio.reconstruction.synthetic import make_scene  # noqa: E402
from mocap_studio.reconstruction.triangulate import (  # noqa: E402
    TriangulationConfig,
    triangulate_with_diagnostics,
    weighted_dlt,
)


def errors_mm(xyz: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-point distance in millimetres between ``xyz`` and ``truth`` (..., 3), NaN where either is."""
    return np.linalg.norm(xyz - truth, axis=-1) * 1000


def summary(name: str, xyz: np.ndarray, truth: np.ndarray, seconds: float, frames: int) -> dict:
    """One table row: MPJPE, 95th percentile (mm), share of missing points and frames per second."""
    e = errors_mm(xyz, truth)
    return {
        "name": name,
        "mpjpe": float(np.nanmean(e)),
        "p95": float(np.nanpercentile(e, 95)),
        "missing": float(np.isnan(e).mean()),
        "fps": frames / seconds if seconds > 0 else float("inf"),
        "frames": frames,
    }


def run_pose2sim(scene, frames: np.ndarray) -> np.ndarray | None:
    """Pose2Sim's own ``triangulation_from_best_cameras`` per point, as its ``triangulate_all`` calls it."""
    try:
        from Pose2Sim.triangulation import triangulation_from_best_cameras
    except ImportError as e:
        print(f"Pose2Sim not importable ({e}); run `make bench-setup`", file=sys.stderr)
        return None
    rig, kp = scene.rig, scene.keypoints
    defaults = {"reproj_error_threshold_triangulation": 15, "min_cameras_for_triangulation": 2,
                "handle_LR_swap": False, "undistort_points": False}
    config = {"triangulation": defaults}
    likelihood_threshold = 0.3
    P = [c.projection_matrix for c in rig.cameras]
    ideal = np.stack([c.undistort_pixels(kp.xy[i]) for i, c in enumerate(rig.cameras)])  # (C, T, J, 2)
    x, y = ideal[..., 0].copy(), ideal[..., 1].copy()
    lik = np.array(kp.confidence)
    low = lik < likelihood_threshold  # as triangulate_all: low likelihood -> NaN
    x[low], y[low], lik[low] = np.nan, np.nan, np.nan
    J = kp.num_joints
    out = np.full((len(frames), J, 3), np.nan)
    for fi, t in enumerate(frames):
        for j in range(J):
            coords = np.array((x[:, t, j], y[:, t, j], lik[:, t, j]))
            Q, *_ = triangulation_from_best_cameras(config, coords, coords, P, {})
            out[fi, j] = Q
    return out


def run_aniposelib(scene, frames: np.ndarray) -> np.ndarray | None:
    """Triangulate ``frames`` with aniposelib's RANSAC triangulation -> (F, J, 3), or None when it cannot be imported."""
    try:
        from aniposelib.cameras import Camera as ACamera
        from aniposelib.cameras import CameraGroup
    except ImportError as e:
        print(f"aniposelib not importable ({e}); run `make bench-setup`", file=sys.stderr)
        return None
    rig, kp = scene.rig, scene.keypoints
    cams = [
        ACamera(matrix=c.K, dist=c.dist, size=c.size, rvec=c.rotvec, tvec=c.t, name=c.name)
        for c in rig.cameras
    ]
    group = CameraGroup(cams)
    pts = np.array(kp.xy[:, frames])  # (C, F, J, 2)
    C, F, J, _ = pts.shape
    X = group.triangulate_ransac(pts.reshape(C, -1, 2), undistort=True, min_cams=2, progress=False)
    X = X[0] if isinstance(X, tuple) else X
    return np.asarray(X).reshape(F, J, 3)


def main(argv: list[str] | None = None) -> int:
    """Command line: triangulate a synthetic scene with ours and the peers and print accuracy and speed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--pose2sim-frames", type=int, default=48)
    parser.add_argument("--anipose-frames", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    scene = make_scene(num_frames=args.frames, noise_px=2.0, outlier_fraction=0.1, seed=args.seed)
    rig, kp, truth = scene.rig, scene.keypoints, scene.truth
    C, T, J = kp.confidence.shape
    extrinsics = np.stack([np.hstack([c.R, c.t[:, None]]) for c in rig.cameras])
    xy = rig.undistort_points(kp.xy).reshape(C, -1, 2)
    print(f"scene: {C} cameras, {T} frames, {J} joints, 2 px noise, "
          f"{100 * (1 - scene.inliers.mean()):.1f} % outliers")

    rows = []
    t0 = time.perf_counter()
    k3, diag = triangulate_with_diagnostics(rig, kp, TriangulationConfig(max_gap_frames=0))
    ours_s = time.perf_counter() - t0
    rows.append(summary("ours (robust)", k3.xyz, truth, ours_s, T))

    t0 = time.perf_counter()
    inlier_weights = np.where(scene.inliers, kp.confidence, 0).reshape(C, -1)
    inl = weighted_dlt(extrinsics, xy, inlier_weights).reshape(T, J, 3)
    rows.append(summary("weighted DLT, true inliers only", inl, truth, time.perf_counter() - t0, T))
    t0 = time.perf_counter()
    naive = weighted_dlt(extrinsics, xy, kp.confidence.reshape(C, -1)).reshape(T, J, 3)
    rows.append(summary("weighted DLT, all views", naive, truth, time.perf_counter() - t0, T))

    sub = np.linspace(0, T - 1, min(T, args.pose2sim_frames)).round().astype(int)
    t0 = time.perf_counter()
    p2s = run_pose2sim(scene, sub)
    if p2s is not None:
        seconds = time.perf_counter() - t0
        rows.append(summary("Pose2Sim triangulation_from_best_cameras", p2s, truth[sub], seconds, len(sub)))
        rows.append(summary("  ours on the same frames", k3.xyz[sub], truth[sub], ours_s, T))

    sub_a = np.linspace(0, T - 1, min(T, args.anipose_frames)).round().astype(int)
    t0 = time.perf_counter()
    ani = run_aniposelib(scene, sub_a) if len(sub_a) else None
    if ani is not None:
        seconds = time.perf_counter() - t0
        rows.append(summary("aniposelib triangulate_ransac", ani, truth[sub_a], seconds, len(sub_a)))
        rows.append(summary("  ours on the same frames", k3.xyz[sub_a], truth[sub_a], ours_s, T))

    ref = rows[1]["mpjpe"]
    ours = rows[0]
    print(f"{'method':44s} {'MPJPE mm':>9s} {'p95 mm':>8s} {'missing':>8s} {'frames/s':>10s} {'frames':>7s}"
          f" {'err/inlier-DLT':>15s} {'ours faster by':>15s}")
    for r in rows:
        speed = ours["fps"] / r["fps"] if r["fps"] > 0 else float("nan")
        print(f"{r['name']:44s} {r['mpjpe']:9.2f} {r['p95']:8.1f} {100 * r['missing']:7.2f}% {r['fps']:10.1f}"
              f" {r['frames']:7d} {r['mpjpe'] / ref:15.2f} {speed:14.1f}x")
    print(f"ours: noise estimate {diag.noise_px:.2f} px, inlier threshold {diag.threshold_px:.2f} px, "
          f"{int(diag.swapped.sum()) // 2} left/right pairs exchanged")
    ratio = ours["mpjpe"] / ref
    verdict = "PASS" if ratio <= 1.2 else "FAIL"
    print(f"acceptance: ours / inlier-only = {ratio:.3f} (<= 1.2 required): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
