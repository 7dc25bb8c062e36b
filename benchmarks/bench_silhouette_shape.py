"""Body shape from silhouettes against keypoints alone, on virtual-studio scenes (benchmarks/silhouette_scene.py):
a random Anny body, 4 cameras (ring4), the studio renderer's true masks, keypoints with 10 mm noise and a
20 mm bias per keypoint (as a detector's). Prints per seed the errors of height, the five girths and the
per-vertex error of the fitted take, keypoints-only and with silhouettes, and each fit's seconds.

Run: ``.venv/bin/python benchmarks/bench_silhouette_shape.py [--seeds 21 22 23] [--scan] [--frames 40]``
(tuning used seeds 11 and 12 only; every other seed is held out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mocap_studio.demo import to_truth_world  # noqa: E402
from mocap_studio.reconstruction.body.anny_model import AnnyBody  # noqa: E402
from mocap_studio.reconstruction.body.fit_silhouette import SilhouetteInput  # noqa: E402
from mocap_studio.reconstruction.body.fitting import FitConfig, fit_sequence  # noqa: E402
from mocap_studio.reconstruction.body.io import load_body_npz  # noqa: E402
from mocap_studio.reconstruction.body.measurements import measure_body  # noqa: E402
from mocap_studio.session import Session  # noqa: E402
from silhouette_scene import make_scene  # noqa: E402

MEASURES = ("height", "chest_circumference", "waist_circumference", "hip_circumference", "thigh_circumference",
            "neck_circumference")
LABELS = ("height", "chest", "waist", "hip", "thigh", "neck")


def scores(model, scene, motion) -> dict:  # noqa: ANN001
    """Errors (mm, fitted minus true) of the measurements and the mean per-vertex error of the take."""
    mt, mf = measure_body(model, scene.shape), measure_body(model, motion.shape)
    vt = model.evaluate(scene.shape, scene.pose, scene.trans).vertices
    vf = model.evaluate(motion.shape, motion.pose_rotvec, motion.trans).vertices
    out = {lab: 1000 * (getattr(mf, m) - getattr(mt, m)) for lab, m in zip(LABELS, MEASURES, strict=True)}
    out["pve"] = 1000 * float(np.linalg.norm(vt - vf, axis=-1).mean())
    return out


def run(model, seed: int, frames: int, scan: bool, image_scale: float, mask_scale: float,  # noqa: ANN001
        overrides: dict | None = None) -> dict:
    """Both fits of one seed's scene: {"keypoints": scores, "silhouettes": scores, seconds of each}; ``overrides``:
    FitConfig fields to set (name -> value)."""
    scene = make_scene(model, seed, frames=frames, image_scale=image_scale, mask_scale=mask_scale, scan=scan)
    cfg = FitConfig(silhouettes=True, scan=scan, **(overrides or {}))
    out = {}
    t0 = time.perf_counter()
    kp_only = fit_sequence(model, scene.keypoints, dataclasses.replace(cfg, silhouettes=False), frame_rate=scene.fps)
    out["keypoints"] = {**scores(model, scene, kp_only), "seconds": time.perf_counter() - t0}
    sil = SilhouetteInput(scene.rig, scene.masks, np.tile(np.arange(frames), (len(scene.masks.cameras), 1)))
    t0 = time.perf_counter()
    with_sil = fit_sequence(model, scene.keypoints, cfg, frame_rate=scene.fps, silhouettes=sil)
    out["silhouettes"] = {**scores(model, scene, with_sil), "seconds": time.perf_counter() - t0,
                          "silhouette_seconds": with_sil.figures["silhouettes"].get("seconds"),
                          "silhouette_loss": with_sil.figures["silhouettes"].get("loss"),
                          "keypoint_offsets_mm_rms": with_sil.figures["silhouettes"].get("keypoint_offsets_mm_rms")}
    return out


def score_session(model, session: Path) -> dict:  # noqa: ANN001
    """A virtual-studio session's fitted body.npz against its truth/body.npz: the measurement errors (mm) and the
    mean per-vertex error over the frames both have (nearest frame times within 2 ms)."""
    truth = load_body_npz(session / "truth" / "body.npz")
    fit = load_body_npz(session / "body.npz")
    mt, mf = measure_body(model, truth.shape), measure_body(model, fit.shape)
    out = {lab: 1000 * (getattr(mf, m) - getattr(mt, m)) for lab, m in zip(LABELS, MEASURES, strict=True)}
    idx = np.clip(np.searchsorted(truth.frame_times, fit.frame_times), 0, len(truth.frame_times) - 1)
    ok = np.abs(truth.frame_times[idx] - fit.frame_times) < 2e-3
    vt = model.evaluate(truth.shape, truth.pose_rotvec[idx[ok]], truth.trans[idx[ok]]).vertices
    R, t = to_truth_world(Session(session))  # an estimated calibration's world, onto the truth's
    vf = model.evaluate(fit.shape, fit.pose_rotvec[ok], fit.trans[ok]).vertices @ R.T + t
    out["pve"] = 1000 * float(np.linalg.norm(vt - vf, axis=-1).mean())
    report = json.loads((session / "report" / "fit.json").read_text()) if (session / "report" / "fit.json").exists() else {}
    out["seconds"] = float(report.get("seconds", float("nan")))
    return out


def main() -> None:
    """Command line: the table of errors per seed and the worst over seeds."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23, 24, 25])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--scan", action="store_true", help="an A-pose turning take instead of squats and arm circles")
    ap.add_argument("--image-scale", type=float, default=0.5, help="of the ring4 preset's 1280x720")
    ap.add_argument("--mask-scale", type=float, default=1.0, help="mask pixels per image pixel")
    ap.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                    help="FitConfig fields to set for both fits, e.g. silhouette_pose_sigma_rad=0.5")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--sessions", type=Path, nargs="+", help="score these fitted virtual-studio sessions instead "
                    "(body.npz against truth/body.npz; e.g. `mocap synth --scan` then `mocap run`)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = AnnyBody()
    if args.sessions:
        for s in args.sessions:
            r = score_session(model, s)
            print(f"{s.name}: " + ", ".join(f"{k} {v:+.1f}" for k, v in r.items()))
        return
    fields = {f.name: f.type for f in dataclasses.fields(FitConfig)}
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in fields:
            ap.error(f"--set {item}: FitConfig has no field {name!r}")
        overrides[name] = {"bool": lambda v: v.lower() in ("1", "true", "yes"), "int": int, "float": float}.get(
            str(fields[name]), str)(value)
    rows = {}
    print("errors in mm (fitted - true); pve: mean per-vertex error of the take; s: seconds of the whole fit")
    print(f"{'seed':>4} {'fit':12s} " + " ".join(f"{lab:>7s}" for lab in (*LABELS, "pve")) + "       s")
    for seed in args.seeds:
        res = run(model, seed, args.frames, args.scan, args.image_scale, args.mask_scale, overrides)
        rows[seed] = res
        for kind, r in res.items():
            print(f"{seed:4d} {kind:12s} " + " ".join(f"{r[k]:7.1f}" for k in (*LABELS, "pve")) + f" {r['seconds']:7.1f}",
                  flush=True)
    for kind in ("keypoints", "silhouettes"):
        worst = {k: max(abs(rows[s][kind][k]) for s in rows) for k in (*LABELS, "pve")}
        print(f"worst {kind:11s} " + " ".join(f"{worst[k]:7.1f}" for k in (*LABELS, "pve")))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
