"""How well can any fitter know a body's height and girths from noisy 3D keypoints? The Cramér-Rao bound.

For issue 3's synthetic takes (Anny, 200 frames at 60 fps, BlazePose-33 keypoints, Gaussian noise per axis)
this computes the Fisher information of the shape parameters at the truth, with every frame's pose an
unknown (nuisance) parameter eliminated by a Schur complement, and maps its inverse through the derivatives
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
from mocap_studio.reconstruction.body import fit_skeleton as F  # noqa: E402
from mocap_studio.reconstruction.body.anny_model import AnnyBody  # noqa: E402
from mocap_studio.reconstruction.body.measurements import measure_body  # noqa: E402
from mocap_studio.reconstruction.body.torch_rotations import rotvec_to_rotmat  # noqa: E402

MEASURES = ("height", "chest_circumference", "waist_circumference", "hip_circumference", "thigh_circumference",
            "neck_circumference")


def bound(model: AnnyBody, seed: int, noise_m: float, frames: int = 200, fps: float = 60.0) -> dict[str, np.ndarray]:
    """Standard deviations (metres) of the measurements: with the poses unknown, and with them known."""
    from torch.func import jacfwd

    rng = np.random.default_rng(seed)
    shape = model.random_shape(rng)  # as tests/test_body_fitting.py's _take draws it
    pose, trans, _ = plausible_motion(model, shape, frames, fps, seed)
    red, basis = F._fit_setup(model, "blazepose33")
    s = torch.as_tensor(shape, dtype=F.DT)

    def coeff(x: torch.Tensor) -> torch.Tensor:
        return model.blend_coefficients(x.to(model.dtype)).to(F.DT)

    rest = F._rest(basis, coeff(s))
    rot = rotvec_to_rotmat(torch.as_tensor(pose[:, red.free.numpy()], dtype=F.DT))
    with torch.no_grad():
        posed = F._forward(model, red, rest, rot, torch.as_tensor(trans, dtype=F.DT))
        K = basis.P0.shape[0] - len(red.sole_ids)
        dc = jacfwd(coeff)(s)
        dP = torch.einsum("cs,ckjd->skjd", dc, basis.Pc)
        dJ = torch.einsum("cs,cjd->sjd", dc, basis.Jc)
        a = F._pose_jacobian(red, rest, posed)[:, :K].reshape(frames, 3 * K, -1) / noise_m
        b = F._shape_jacobian(red, rest, posed, dP, dJ)[:, :K].reshape(frames, 3 * K, -1) / noise_m
        i_ff, i_fs = a.transpose(1, 2) @ a, a.transpose(1, 2) @ b
        i_ss = (b.transpose(1, 2) @ b).sum(0)
        eye = 1e-9 * torch.eye(i_ff.shape[-1], dtype=F.DT)
        schur = i_ss - (i_fs.transpose(1, 2) @ torch.linalg.solve(i_ff + eye, i_fs)).sum(0)
    eps = 1e-3
    g = np.zeros((len(MEASURES), len(shape)))
    for i in range(len(shape)):
        up, down = shape.copy(), shape.copy()
        up[i] += eps
        down[i] -= eps
        mu, md = measure_body(model, up), measure_body(model, down)
        g[:, i] = [(getattr(mu, n) - getattr(md, n)) / (2 * eps) for n in MEASURES]
    out = {}
    for label, info in (("poses_unknown", schur), ("poses_known", i_ss)):
        cov = torch.linalg.inv(info).numpy()
        out[label] = np.sqrt(np.diag(g @ cov @ g.T))
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
