"""Calibration benchmark: our bundle adjustment beside OpenCV's calibrateMultiview and aniposelib's
calibrate_rows on the same simulated ChArUco detections, in one process.

Scored against the true cameras (reprojection RMS cannot tell these calibrations apart): camera centre
error after aligning the rigs, rotation error, focal length error, and wall time, with ratios to ours.

Two recordings of one 6-camera ring (1280x720, mild distortion, 0.2 px corner noise):
  room:      the board carried through the middle of the room only (small in every image, no close-ups),
             the scene in DESIGN.md's "numbers to beat";
  close-ups: the same plus the board held up close to each camera, as our recording guide asks.

Run: make bench-setup (installs aniposelib beside our OpenCV), then
     .venv/bin/python benchmarks/bench_calibration.py [--views 120]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
import warnings

import cv2
import numpy as np
from mocap_studio.calibration.bundle import BundleConfig  # noqa: E402
from mocap_studio.calibration.calibrate import CalibrationConfig, calibrate_rig  # noqa: E402
from mocap_studio.calibration.camera import Camera, CameraRig  # noqa: E402
from mocap_studio.calibration.compare import compare_rigs  # noqa: E402
from mocap_studio.calibration.observations import BoardObservations  # noqa: E402
from mocap_studio.calibration.simulate import (  # noqa: E402
    close_up_board_poses,
    random_board_poses,
    ring_rig,
    simulate_board_recording,
)

SQUARES = (7, 10)
SQUARE_M = 0.09
MARKER_M = 0.07


def board_points() -> np.ndarray:
    """ChArUco inner corners in OpenCV's (and aniposelib's) id order: row-major from the origin corner."""
    nx, ny = SQUARES
    gx, gy = np.meshgrid(np.arange(1, nx), np.arange(1, ny))
    return np.stack([gx.ravel() * SQUARE_M, gy.ravel() * SQUARE_M, np.zeros(gx.size)], axis=1)


def complete_views(obs: BoardObservations, n_points: int) -> dict[int, dict[int, np.ndarray]]:
    """{view: {camera: (N, 2) corners}} for views a camera saw whole (OpenCV's multiview calibration
    diverges on partial views in 5.1, see DESIGN.md)."""
    out: dict[int, dict[int, np.ndarray]] = {}
    for c in range(obs.n_cameras):
        for v in obs.views_of_camera(c):
            rows = np.flatnonzero((obs.cam == c) & (obs.view == v))
            if len(rows) == n_points:
                out.setdefault(int(v), {})[c] = obs.uv[rows[np.argsort(obs.point[rows])]]
    return out


def run_ours(obs, objp, truth):
    """Calibrate with our pipeline (no world alignment, 4 distortion terms); returns the rig and the seconds taken."""
    t = time.perf_counter()
    res = calibrate_rig(obs, objp, CalibrationConfig(align="none", bundle=BundleConfig(distortion_terms=4)))
    return res.rig, time.perf_counter() - t


def run_opencv(obs, objp, truth, true_intrinsics: bool):
    """Calibrate with OpenCV's multiview calibration on the complete board views (with the true intrinsics
    fixed when ``true_intrinsics``); returns the rig and the seconds taken."""
    views = complete_views(obs, len(objp))
    frames = sorted(views)
    C = obs.n_cameras
    mask = np.zeros((C, len(frames)), np.uint8)
    image_points = [[np.zeros((len(objp), 2), np.float32) for _ in frames] for _ in range(C)]
    for f, v in enumerate(frames):
        for c, uv in views[v].items():
            mask[c, f] = 1
            image_points[c][f] = uv.astype(np.float32)
    t = time.perf_counter()
    if true_intrinsics:
        Ks = [c.K.copy() for c in truth]
        dists = [c.dist.reshape(1, -1).copy() for c in truth]
        flags = cv2.CALIB_USE_INTRINSIC_GUESS
        f_int = np.array([cv2.CALIB_FIX_INTRINSIC] * C, dtype=int)
    else:
        Ks, dists = [], []
        for c in range(C):
            pts = [image_points[c][f] for f in range(len(frames)) if mask[c, f]]
            _, K, d, _, _ = cv2.calibrateCamera([objp.astype(np.float32)] * len(pts), pts, obs.image_sizes[c], None, None,
                                                flags=cv2.CALIB_FIX_K3)
            Ks.append(K)
            dists.append(d.reshape(1, -1))
        flags = cv2.CALIB_USE_INTRINSIC_GUESS
        f_int = np.array([cv2.CALIB_FIX_K3] * C, dtype=int)
    out = cv2.calibrateMultiview(
        [objp.astype(np.float32)] * len(frames), image_points, [tuple(s) for s in obs.image_sizes], mask,
        np.array([cv2.CALIB_MODEL_PINHOLE] * C, np.uint8), Ks, dists, None, None,
        flagsForIntrinsics=f_int, flags=flags)
    elapsed = time.perf_counter() - t
    _, Ks, dists, Rs, Ts = out[:5]
    cams = []
    for c in range(C):
        R = np.asarray(Rs[c], float)
        R = cv2.Rodrigues(R)[0] if R.size == 3 else R.reshape(3, 3)
        cams.append(Camera(obs.camera_names[c], obs.image_sizes[c], np.asarray(Ks[c]), np.asarray(dists[c]).ravel()[:5],
                           R, np.asarray(Ts[c]).ravel()))
    return CameraRig(tuple(cams)), elapsed


def run_aniposelib(obs, objp, truth):
    """Calibrate with aniposelib's ``calibrate_rows`` on the same corners; returns the rig and the seconds taken."""
    from aniposelib.boards import CharucoBoard
    from aniposelib.cameras import CameraGroup

    board = CharucoBoard(SQUARES[0], SQUARES[1], square_length=SQUARE_M, marker_length=MARKER_M, marker_bits=4,
                         dict_size=100)
    # aniposelib puts the origin on the first inner corner: the same board, its frame moved by one square
    assert np.allclose(board.get_object_points() + [SQUARE_M, SQUARE_M, 0], board_points(), atol=1e-9), "layouts differ"
    rows = [[] for _ in range(obs.n_cameras)]
    for c in range(obs.n_cameras):
        for v in obs.views_of_camera(c):
            r = np.flatnonzero((obs.cam == c) & (obs.view == v))
            rows[c].append({"framenum": (0, int(obs.view_frames[v])), "corners": obs.uv[r][:, None].astype(np.float32),
                            "ids": obs.point[r][:, None]})
    group = CameraGroup.from_names(list(obs.camera_names))
    for cam, size in zip(group.cameras, obs.image_sizes, strict=True):
        cam.set_size(size)
    t = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # it prints its cameras
        warnings.simplefilter("ignore")
        group.calibrate_rows(rows, board, verbose=False)
    elapsed = time.perf_counter() - t
    cams = []
    for cam, name, size in zip(group.cameras, obs.camera_names, obs.image_sizes, strict=True):
        d = np.zeros(5)
        dist = np.asarray(cam.get_distortions()).ravel()
        d[: len(dist)] = dist[:5]
        cams.append(Camera.from_rotvec(name, size, cam.get_camera_matrix(), d, cam.get_rotation(), cam.get_translation()))
    return CameraRig(tuple(cams)), elapsed


def main() -> int:
    """Command line: simulate the board recordings, calibrate with every method and print errors and times against ours."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=120, help="board poses carried through the room")
    parser.add_argument("--cameras", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    objp = board_points()
    truth = ring_rig(args.cameras, seed=args.seed)
    room = random_board_poses(args.views, seed=args.seed + 1)
    scenes = {
        "room": room,
        "close-ups": np.concatenate([close_up_board_poses(truth, 10, (SQUARES[0] * SQUARE_M, SQUARES[1] * SQUARE_M),
                                                          seed=args.seed + 3), room]),
    }
    methods = [("ours", run_ours), ("opencv multiview", lambda o, p, t: run_opencv(o, p, t, False)),
               ("opencv multiview, true K", lambda o, p, t: run_opencv(o, p, t, True)),
               ("aniposelib calibrate_rows", run_aniposelib)]
    print(f"{args.cameras} cameras 1280x720, ChArUco {SQUARES[0]}x{SQUARES[1]} squares of {SQUARE_M * 100:.0f} cm, "
          "0.2 px noise")
    for scene, poses in scenes.items():
        obs = simulate_board_recording(truth, objp, poses, noise_px=0.2, seed=args.seed + 2)
        print(f"\nscene '{scene}': {obs.n_views} board poses, {len(obs.cam)} corner detections")
        print(f"{'method':<28}{'centre mm':>11}{'max mm':>9}{'rot deg':>9}{'focal %':>9}{'time s':>8}"
              f"{'err/ours':>10}{'time/ours':>10}")
        base = None
        for name, fn in methods:
            try:
                rig, seconds = fn(obs, objp, truth)
                cmp = compare_rigs(rig, truth)
            except Exception as e:  # a peer failing is a result to report, not a crash
                print(f"{name:<28} failed: {type(e).__name__}: {str(e)[:80]}")
                continue
            s = cmp.summary()
            if base is None:
                base = (s["centre_error_mean_mm"], seconds)
            print(f"{name:<28}{s['centre_error_mean_mm']:>11.2f}{s['centre_error_max_mm']:>9.2f}"
                  f"{s['rotation_error_mean_deg']:>9.3f}{s['focal_error_max_percent']:>9.3f}{seconds:>8.2f}"
                  f"{s['centre_error_mean_mm'] / base[0]:>10.1f}{seconds / base[1]:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
