"""Do the measurements' stated sigmas cover their true errors? Virtual-studio takes, keypoints only.

For each take of benchmarks/measurement_takes.py (a random adult body per seed, 4 cameras, MediaPipe keypoints,
triangulation, ``mocap fit``), this measures the fitted body, computes each measurement's one-sigma uncertainty
(reconstruction/body/uncertainty.py) and compares the error against the true body's measurement. It prints,
per measurement, the errors and sigmas over the takes and the fraction of takes whose |error| <= sigma (the
target: at least 2/3 overall), and the same figures overall.

Run: ``.venv/bin/python benchmarks/measurement_coverage.py [--seeds 101 ... 110] [--make]`` (``--make`` builds
missing takes first, about 30 s each on 2 cores; the uncertainty takes about 10 s a take).

With ``--silhouettes`` the same for the takes fitted to their silhouettes too (the detector's masks), with the demo
take's settings (``mocap.demo.DEMO_FIT``: contour, rim, keypoint offsets), each in a copy of the take
(``seed_<N>_silhouettes``, reused once fitted); the sigmas are the fit stage's own (measurements.json), the
silhouettes' information added at ``uncertainty.SILHOUETTE_INFORMATION_SCALE`` (set on seeds 101-104; 105-110 check
it); with ``--full-size`` the takes rendered at 1280x720 (masks 640x360, as the demo's). About 3 minutes a take on 2
cores. ``--scenes`` scores the silhouette scenes of benchmarks/silhouette_scene.py
instead (true masks, keypoints with 10 mm noise and a 20 mm bias each; seeds 40-49 unless ``--seeds``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measurement_takes import make_take, take_dir  # noqa: E402
from mocap_studio.inputs import read_rig  # noqa: E402
from mocap_studio.reconstruction.body.fitting import FitConfig, fit_sequence  # noqa: E402
from mocap_studio.reconstruction.body.io import load_body_npz  # noqa: E402
from mocap_studio.reconstruction.body.measurements import MEASUREMENT_NAMES, measure_body  # noqa: E402
from mocap_studio.reconstruction.body.uncertainty import measurement_uncertainty  # noqa: E402
from mocap_studio.reconstruction.keypoints import load_keypoints3d, load_synchronized_keypoints2d  # noqa: E402
from mocap_studio.session import Session  # noqa: E402
from mocap_studio.stages_body import load_body_model  # noqa: E402


def take_errors(model, root: Path) -> dict:  # noqa: ANN001
    """Fitted minus true measurement (metres) and sigma per measurement for the take in ``root``."""
    fitted, truth = load_body_npz(root / "body.npz"), load_body_npz(root / "truth" / "body.npz")
    kp = load_keypoints3d(root / "keypoints3d.npz")
    t = time.perf_counter()
    unc = measurement_uncertainty(model, fitted.shape, fitted.pose_rotvec, fitted.trans, kp.xyz, kp.skeleton)
    seconds = time.perf_counter() - t
    true = measure_body(model, truth.shape).as_array()
    return {"error": unc.values.as_array() - true, "sigma": unc.sigma, "noise_m": unc.noise_m, "rho": unc.rho,
            "seconds": seconds, "true": true}


def silhouette_take_errors(model, seed: int, full_size: bool = False) -> dict:  # noqa: ANN001
    """As :func:`take_errors` for the take of ``seed`` fitted to its silhouettes too, by the fit stage with the demo's
    settings in a copy of the take; the sigmas the stage wrote to measurements.json."""
    import shutil

    from mocap_studio.demo import DEMO_FIT
    from mocap_studio.reconstruction.body.measurements import read_measurements
    from mocap_studio.stages_body import run_fit

    root = make_take(seed, full_size)
    dst = root.with_name(f"{root.name}_silhouettes")
    if not (dst / "measurements.json").exists():
        partial = dst.with_name(dst.name + ".partial")
        if partial.exists():
            shutil.rmtree(partial)
        shutil.copytree(root, partial)
        run_fit(Session(partial), FitConfig(**DEMO_FIT), overwrite=True)
        if dst.exists():
            shutil.rmtree(dst)
        partial.rename(dst)
    doc = json.loads((dst / "measurements.json").read_text())
    stated = read_measurements(doc)
    values = np.array([stated[n]["value"] for n in MEASUREMENT_NAMES])
    sigma = np.array([stated[n]["sigma"] for n in MEASUREMENT_NAMES], dtype=float)
    true = measure_body(model, load_body_npz(dst / "truth" / "body.npz").shape).as_array()
    unc = doc["uncertainty"]
    return {"error": values - true, "sigma": sigma, "noise_m": unc.get("keypoint_noise_mm", np.nan) / 1000,
            "rho": unc.get("keypoint_noise_autocorrelation", np.nan), "seconds": np.nan, "true": true}


def scene_errors(model, seed: int) -> dict:  # noqa: ANN001
    """As :func:`take_errors` for the silhouette scene of ``seed``, fitted with the demo's silhouette settings."""
    from mocap_studio.demo import DEMO_FIT
    from mocap_studio.reconstruction.body.fit_silhouette import SilhouetteInput
    from silhouette_scene import make_scene

    scene = make_scene(model, seed, frames=SCENE_FRAMES, image_scale=0.5, mask_scale=1.0)
    sil = SilhouetteInput(scene.rig, scene.masks, np.tile(np.arange(SCENE_FRAMES), (len(scene.masks.cameras), 1)))
    fit = fit_sequence(model, scene.keypoints, FitConfig(**DEMO_FIT), frame_rate=scene.fps, silhouettes=sil)
    info = np.asarray(fit.figures["silhouettes"]["shape_information"])
    t = time.perf_counter()
    unc = measurement_uncertainty(model, fit.shape, fit.pose_rotvec, fit.trans, scene.keypoints.xyz,
                                  scene.keypoints.skeleton, silhouette_info=info)
    seconds = time.perf_counter() - t + fit.figures["silhouettes"]["information_seconds"]
    true = measure_body(model, scene.shape).as_array()
    return {"error": unc.values.as_array() - true, "sigma": unc.sigma, "noise_m": unc.noise_m, "rho": unc.rho,
            "seconds": seconds, "true": true}


SCENE_FRAMES = 40


def jackknife_sigma(model, root: Path, blocks: int) -> np.ndarray:  # noqa: ANN001
    """(M,) the resampling route: jackknife over ``blocks`` contiguous blocks of frames, each left out in turn (its
    keypoints, 3D and 2D, made missing) and the take fitted again with the stage's settings; metres."""
    session = Session(root)
    kp = load_keypoints3d(root / "keypoints3d.npz")
    kp2 = load_synchronized_keypoints2d(session.keypoints2d_synced_path).keypoints
    rig = read_rig(session, fit_to_recordings=True)
    rate = session.config().frame_rate or None
    values = []
    for i, frames in enumerate(np.array_split(np.arange(kp.num_frames), blocks)):
        xyz, xy, conf = kp.xyz.copy(), kp2.xy.copy(), kp2.confidence.copy()
        xyz[frames], xy[:, frames], conf[:, frames] = np.nan, np.nan, 0.0
        fit = fit_sequence(model, replace(kp, xyz=xyz), FitConfig(), frame_rate=rate, rig=rig,
                           keypoints2d=replace(kp2, xy=xy, confidence=conf))
        values.append(measure_body(model, fit.shape).as_array())
        print(f"  jackknife {i + 1}/{blocks}", flush=True)
    values = np.array(values)
    return np.sqrt((blocks - 1) / blocks * ((values - values.mean(0)) ** 2).sum(0))


def main() -> int:
    """Command line: print coverage of the stated sigmas over the takes."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(101, 111)))
    ap.add_argument("--make", action="store_true", help="build takes that are missing")
    ap.add_argument("--json", type=Path, help="also write the per-take figures here")
    ap.add_argument("--jackknife", type=int, default=0, help="also the resampling route: leave out each of N blocks of "
                    "frames and fit again (N fits a take); its sigmas are scored alongside")
    ap.add_argument("--silhouettes", action="store_true", help="the takes fitted to their silhouettes too, with the "
                    "demo's settings")
    ap.add_argument("--full-size", action="store_true", help="the takes rendered at full size (1280x720, masks "
                    "640x360, as the demo)")
    ap.add_argument("--scenes", action="store_true", help="the silhouette scenes (true masks) fitted with the demo's "
                    "settings (seeds 40-49 unless --seeds)")
    args = ap.parse_args()
    if (args.silhouettes or args.scenes) and args.jackknife:
        ap.error("--jackknife refits keypoint-only takes; it goes with neither --silhouettes nor --scenes")
    torch.set_num_threads(2)
    model = load_body_model("anny")
    rows = []
    seeds = list(range(40, 50)) if args.scenes and "--seeds" not in sys.argv else args.seeds
    for seed in seeds:
        if args.silhouettes or args.scenes:
            r = scene_errors(model, seed) if args.scenes else silhouette_take_errors(model, seed, args.full_size)
            rows.append((seed, r))
            print(f"seed {seed}: " + ", ".join(f"{n.split('_')[0]} {1000 * abs(e):.1f}/{1000 * s:.1f}" for n, e, s in
                                               zip(MEASUREMENT_NAMES, r["error"], r["sigma"], strict=True)), flush=True)
            continue
        root = make_take(seed, args.full_size) if args.make else take_dir(seed, args.full_size)
        if not (root / "body.npz").exists():
            print(f"seed {seed}: no take at {root} (run with --make)")
            continue
        r = take_errors(model, root)
        if args.jackknife:
            r["sigma_jackknife"] = jackknife_sigma(model, root, args.jackknife)
        rows.append((seed, r))
        print(f"seed {seed}: noise {1000 * r['noise_m']:.1f} mm, rho {r['rho']:.2f}, {r['seconds']:.1f} s; |error|/sigma mm: "
              + ", ".join(f"{n.split('_')[0]} {1000 * abs(e):.0f}/{1000 * s:.0f}"
                          for n, e, s in zip(MEASUREMENT_NAMES, r["error"], r["sigma"], strict=True)), flush=True)
    if not rows:
        return 1
    err = np.array([r["error"] for _, r in rows])
    sig = np.array([r["sigma"] for _, r in rows])
    inside = np.abs(err) <= sig
    print(f"\n{len(rows)} takes (seeds {', '.join(str(s) for s, _ in rows)}): |error| <= sigma for "
          f"{inside.mean():.0%} of measurements (target >= 67 %); within 2 sigma {(np.abs(err) <= 2 * sig).mean():.0%}")
    print(f"{'measurement':22s} {'covered':>8s} {'mean |err| mm':>14s} {'max |err| mm':>13s} {'median sigma mm':>16s}")
    for i, n in enumerate(MEASUREMENT_NAMES):
        e = 1000 * np.abs(err[:, i])
        print(f"{n:22s} {inside[:, i].mean():8.0%} {e.mean():14.1f} {e.max():13.1f} {1000 * np.median(sig[:, i]):16.1f}")
    if args.jackknife:
        jk = np.array([r["sigma_jackknife"] for _, r in rows])
        inside_jk = np.abs(err) <= jk
        print(f"\nresampling route (jackknife over {args.jackknife} blocks of frames): |error| <= sigma for "
              f"{inside_jk.mean():.0%}")
        for i, n in enumerate(MEASUREMENT_NAMES):
            print(f"{n:22s} {inside_jk[:, i].mean():8.0%} median sigma {1000 * np.median(jk[:, i]):7.1f} mm")
    if args.json:
        args.json.write_text(json.dumps({str(s): {k: np.asarray(v).tolist() for k, v in r.items()} for s, r in rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
