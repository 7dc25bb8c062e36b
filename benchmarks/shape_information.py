"""How well can any fitter know a body's height and girths from noisy 3D keypoints? The Cramér-Rao bound.

For issue 3's synthetic takes (Anny, 200 frames at 60 fps, BlazePose-33 keypoints, Gaussian noise per axis)
this computes the Fisher information of the shape parameters at the truth, with every frame's pose an
unknown (nuisance) parameter eliminated by a Schur complement (reconstruction/body/uncertainty.py's
``shape_information``, the same that states the measurements' uncertainty), and maps its inverse through the derivatives
of the measurements (height, girths) with respect to the shape. No unbiased estimator has a smaller standard
deviation; a prior can only do better for the bodies it happens to favour. The same bound with the poses
known exactly shows where the information goes: into telling shape from pose.

Run: ``.venv/bin/python benchmarks/shape_information.py [--seeds 3 5 7 9] [--noise-mm 10]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from body_fixtures import plausible_motion  # noqa: E402
from mocap_studio.reconstruction.body.anny_model import AnnyBody  # noqa: E402
from mocap_studio.reconstruction.body.measurements import MEASUREMENT_NAMES  # noqa: E402
from mocap_studio.reconstruction.body.uncertainty import KeypointNoise, measurement_jacobian, shape_information  # noqa: E402
from mocap_studio.reconstruction.skeletons import get_format  # noqa: E402

MEASURES = ("height", "chest_circumference", "waist_circumference", "hip_circumference", "thigh_circumference",
            "neck_circumference")


def bound(model: AnnyBody, seed: int, noise_m: float, frames: int = 200, fps: float = 60.0) -> dict[str, np.ndarray]:
    """Standard deviations (metres) of the measurements: with the poses unknown, and with them known."""
    rng = np.random.default_rng(seed)
    shape = model.random_shape(rng)  # as tests/test_body_fitting.py's _take draws it
    pose, trans, _ = plausible_motion(model, shape, frames, fps, seed)
    K = len(get_format("blazepose33").joints)
    noise = KeypointNoise(np.full(K, noise_m), np.zeros(K), np.full(K, frames))
    info = shape_information(model, shape, pose, trans, "blazepose33", noise, np.ones((frames, K), bool), ridge=1e-15)
    g, _ = measurement_jacobian(model, shape)
    rows = [MEASUREMENT_NAMES.index(n) for n in MEASURES]
    out = {}
    for label, fisher in (("poses_unknown", info.info), ("poses_known", info.info_poses_known)):
        cov = np.linalg.inv(fisher)
        out[label] = np.sqrt(np.diag(g[rows] @ cov @ g[rows].T))
    return out


def main() -> None:
    """Command line: print the Cramer-Rao standard deviations of the measurements for each seed (poses unknown and known)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 7, 9])
    ap.add_argument("--noise-mm", type=float, default=10.0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = AnnyBody()
    print(f"Cramer-Rao standard deviations (mm), {args.noise_mm:g} mm noise per axis, 200 frames; "
          f"columns: {', '.join(MEASURES)}")
    for seed in args.seeds:
        sd = bound(model, seed, args.noise_mm / 1000)
        for label, v in sd.items():
            print(f"seed {seed:3d} {label:13s} " + "  ".join(f"{1000 * x:7.1f}" for x in v))


if __name__ == "__main__":
    main()
