"""Check that the peer tools installed by `make bench-setup` work beside our OpenCV, and which of their
functions run on plain arrays. Prints one line per check; exits non-zero if the environment is unsafe
(plain opencv-python, numpy >= 2.5, a torch other than 2.13.0) or a peer cannot be imported.

Usage: .venv/bin/python benchmarks/check_peers.py
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mocap_studio.calibration.camera import Camera, CameraRig, look_at  # noqa: E402
from mocap_studio.calibration.formats import read_toml, write_calibration  # noqa: E402

log = logging.getLogger("check_peers")
RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, fn: Callable[[], str]) -> None:
    """Run one check and record its outcome (detail and seconds, or the exception and where it was raised) in RESULTS."""
    t0 = time.perf_counter()
    try:
        detail = fn()
        RESULTS.append((name, True, f"{detail} ({time.perf_counter() - t0:.2f} s)"))
    except Exception as e:  # noqa: BLE001 - the point is to report any failure of a peer
        last = traceback.extract_tb(e.__traceback__)[-1]
        RESULTS.append((name, False, f"{type(e).__name__}: {e} [{Path(last.filename).name}:{last.lineno}]"))


def environment() -> list[str]:
    """Problems that make the environment unsafe for the project (plain OpenCV installed, cv2, numpy or torch moved)."""
    problems = []
    dists = {d.metadata["Name"].lower() for d in md.distributions()}
    for plain in ("opencv-python", "opencv-python-headless", "opencv-contrib-python-headless"):
        if plain in dists:
            problems.append(f"{plain} is installed: it overwrites opencv-contrib-python's cv2")
    import cv2

    if not cv2.__version__.startswith("5.1") or not hasattr(cv2.aruco, "CharucoDetector"):
        problems.append(f"cv2 is {cv2.__version__} without aruco.CharucoDetector: contrib 5.1 was replaced")
    if tuple(int(x) for x in np.__version__.split(".")[:2]) >= (2, 5):
        problems.append(f"numpy {np.__version__} (the project needs < 2.5)")
    if "torch" in dists and not md.version("torch").startswith("2.13.0"):
        problems.append(f"torch {md.version('torch')} (must stay 2.13.0 or absent)")
    log.info(
        "cv2 %s, numpy %s, torch %s",
        cv2.__version__,
        np.__version__,
        md.version("torch") if "torch" in dists else "absent",
    )
    return problems


def synthetic_rig(n: int = 6) -> CameraRig:
    """``n`` distorted 1280x720 cameras on a 3 m circle, 1.6 m high, looking at a point 1 m above the centre."""
    rng = np.random.default_rng(0)
    cams = []
    for i in range(n):
        a = 2 * np.pi * i / n
        R, t = look_at(np.array([3 * np.cos(a), 3 * np.sin(a), 1.6]), np.array([0, 0, 1.0]))
        K = np.array([[1000.0, 0, 640], [0, 1000, 360], [0, 0, 1]])
        cams.append(Camera(f"cam_{i + 1}", (1280, 720), K, rng.normal(0, 0.02, 5), R, t))
    return CameraRig(tuple(cams))


def aniposelib_checks(rig: CameraRig, pts: np.ndarray, uv: np.ndarray) -> None:
    """Check the aniposelib functions we benchmark against our projection and noise-free points (N, 3), pixels (C, N, 2)."""
    import aniposelib
    from aniposelib.boards import CharucoBoard
    from aniposelib.cameras import Camera as ACamera
    from aniposelib.cameras import CameraGroup

    group = CameraGroup(
        [ACamera(matrix=c.K, dist=c.dist, size=c.size, rvec=c.rotvec, tvec=c.t, name=c.name) for c in rig]
    )

    def project():
        diff = np.nanmax(np.abs(group.project(pts) - uv))
        assert diff < 1e-6, diff
        return f"matches our projection to {diff:.1e} px"

    def triangulate():
        err = np.linalg.norm(group.triangulate(uv) - pts, axis=-1).max()
        assert err < 1e-6, err
        return f"noise-free max error {err:.1e} m (jax)"

    def triangulate_fast():
        err = np.linalg.norm(group.triangulate(uv, fast=True) - pts, axis=-1).max()
        assert err < 1e-6, err
        return f"noise-free max error {err:.1e} m (cv2.triangulatePoints)"

    noisy = uv + np.random.default_rng(1).normal(0, 1.0, uv.shape)

    def triangulate_ransac():
        out = group.triangulate_ransac(noisy[:, :50], min_cams=2, progress=False)
        p3d = out[0] if isinstance(out, tuple) else out
        err = np.linalg.norm(p3d - pts[:50], axis=-1)
        return f"1 px noise: mean error {1000 * np.nanmean(err):.1f} mm"

    def reprojection_error():
        e = group.reprojection_error(group.triangulate(noisy), noisy, mean=True)
        return f"mean {np.mean(e):.2f} px at 1 px noise"

    def bundle_adjust_iter():
        g = group.copy()
        rng = np.random.default_rng(2)
        for c in g.cameras[1:]:
            c.set_rotation(c.get_rotation() + rng.normal(0, 0.01, 3))
            c.set_translation(c.get_translation() + rng.normal(0, 0.02, 3))
        err = g.bundle_adjust_iter(noisy, n_iters=3, n_samp_iter=200, n_samp_full=500, verbose=False)
        return f"final error {err:.2f} px"

    def dump_load_interop():
        with tempfile.TemporaryDirectory() as d:
            group.dump(Path(d) / "a.toml")
            ours = read_toml(Path(d) / "a.toml")
            diff = max(np.nanmax(np.abs(ours[n].project(pts) - rig[n].project(pts))) for n in rig.names)
            write_calibration(rig, Path(d) / "b.toml")
            back = CameraGroup.load(str(Path(d) / "b.toml"))
            diff2 = np.nanmax(np.abs(back.project(pts) - uv))
        assert diff < 1e-6 and diff2 < 1e-6, (diff, diff2)
        return f"their dump -> our reader {diff:.1e} px; our writer -> their load {diff2:.1e} px"

    board = CharucoBoard(5, 7, square_length=0.04, marker_length=0.03, marker_bits=4, dict_size=50)

    def charuco_detect():
        image = board.draw((1000, 1400))
        image = np.pad(image, 100, constant_values=255)
        corners, ids = board.detect_image(image)
        assert ids is not None and len(ids) == 24, ids
        return f"{len(ids)} of 24 corners on a drawn board (CharucoDetector)"

    def calibrate_rows():
        # board corners projected into each camera (detection bypassed): tests the calibration logic
        objp = board.get_object_points()
        all_rows = [[] for _ in rig.cameras]
        rng = np.random.default_rng(3)
        for f in range(20):
            R_b = Camera.from_rotvec("b", (1, 1), np.eye(3), np.zeros(5), rng.normal(0, 0.4, 3), [0, 0, 0]).R
            world = (objp - objp.mean(0)) @ R_b.T + [rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), 1.0]
            for ci, cam in enumerate(rig):
                p = cam.project(world)
                ok = cam.in_image(p) & (cam.to_camera(world)[:, 2] > 0)
                facing = (R_b[:, 2] @ (cam.center - world.mean(0))) > 0  # a board is seen from the front
                if ok.all() and facing:
                    p = p + rng.normal(0, 0.3, p.shape)
                    all_rows[ci].append(
                        {
                            "framenum": (0, f),
                            "corners": p[:, None].astype("float32"),
                            "ids": np.arange(len(p))[:, None],
                        }
                    )
        g = CameraGroup.from_names(list(rig.names))
        for c, ref in zip(g.cameras, rig.cameras, strict=True):
            c.set_size(ref.size)
        err = g.calibrate_rows(all_rows, board, verbose=False)
        return f"error {err:.2f} px over {sum(map(len, all_rows))} views"

    log.info("aniposelib %s", md.version("aniposelib"))
    for fn in (
        project,
        triangulate,
        triangulate_fast,
        triangulate_ransac,
        reprojection_error,
        bundle_adjust_iter,
        dump_load_interop,
        charuco_detect,
        calibrate_rows,
    ):
        check(f"aniposelib {fn.__name__}", fn)
    del aniposelib


def pose2sim_checks(rig: CameraRig, pts: np.ndarray, uv: np.ndarray) -> None:
    """Check the Pose2Sim functions we benchmark on our calibration.toml and noise-free points (N, 3), pixels (C, N, 2)."""
    from Pose2Sim.common import computeP, retrieve_calib_params, weighted_triangulation
    from Pose2Sim.triangulation import triangulation_from_best_cameras

    with tempfile.TemporaryDirectory() as d:
        path = write_calibration(rig, Path(d) / "calibration.toml")
        P = computeP(path)  # rtoml.load reads a str as TOML text: give a Path
        calib = retrieve_calib_params(path)
    ideal = np.stack([c.undistort_pixels(u) for c, u in zip(rig.cameras, uv, strict=True)])

    def compute_p():
        err = max(np.abs(p - c.projection_matrix).max() for p, c in zip(P, rig.cameras, strict=True))
        assert err < 1e-9 and len(calib["K"]) == len(rig)
        return f"reads our calibration.toml in our camera order; P equal to {err:.0e}"

    def weighted():
        q = np.array(
            [
                weighted_triangulation(P, ideal[:, j, 0], ideal[:, j, 1], np.ones(len(rig)))[:3]
                for j in range(ideal.shape[1])
            ]
        )
        err = np.linalg.norm(q - pts, axis=-1).max()
        assert err < 1e-6, err
        return f"noise-free max error {err:.1e} m"

    def best_cameras():
        rng = np.random.default_rng(4)
        obs = ideal + rng.normal(0, 2.0, ideal.shape)
        bad = rng.random(obs.shape[:2]) < 0.1
        obs[bad] += rng.normal(0, 80, (bad.sum(), 2))
        config = {
            "triangulation": {"reproj_error_threshold_triangulation": 15, "min_cameras_for_triangulation": 2}
        }
        t0 = time.perf_counter()
        errs = []
        for j in range(100):
            coords = (obs[:, j, 0], obs[:, j, 1], np.ones(len(rig)))
            Q, _, _, _ = triangulation_from_best_cameras(config, coords, coords, P, calib)
            errs.append(np.linalg.norm(np.asarray(Q, float) - pts[j]))
        rate = 100 / (time.perf_counter() - t0)
        return f"2 px noise, 10 % outliers: mean {1000 * np.nanmean(errs):.1f} mm, {rate:.0f} points/s"

    log.info("Pose2Sim %s", md.version("pose2sim"))
    for fn in (compute_p, weighted, best_cameras):
        check(f"Pose2Sim {fn.__name__}", fn)


def main() -> int:
    """Command line: refuse an unsafe environment and run every peer check; returns 1 on a problem or a failed import."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    problems = environment()
    for p in problems:
        log.error("UNSAFE: %s", p)
    rig = synthetic_rig()
    pts = np.random.default_rng(5).uniform([-0.5, -0.5, 0.5], [0.5, 0.5, 1.5], (200, 3))
    uv = rig.project(pts)
    imports_ok = True
    for name, fn in (("aniposelib", aniposelib_checks), ("Pose2Sim", pose2sim_checks)):
        try:
            fn(rig, pts, uv)
        except ImportError as e:
            imports_ok = False
            RESULTS.append((f"{name} import", False, f"{type(e).__name__}: {e}"))
    for name, ok, detail in RESULTS:
        log.info("%-4s %-32s %s", "ok" if ok else "FAIL", name, detail)
    return 1 if problems or not imports_ok else 0


if __name__ == "__main__":
    sys.exit(main())
