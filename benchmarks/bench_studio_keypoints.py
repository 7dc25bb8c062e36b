"""2D detection + sync + triangulation on a virtual studio take, scored against the studio's truth.

Synthesizes a take (ring of 4 cameras at 1280x720, 30 fps, cameras out of sync, dropped frames), uses the
true calibration, runs `mocap sync` (audio), `mocap detect` (MediaPipe) and `mocap triangulate`, and prints
the error of the body joints per joint and over time, plus detection speed.

The take is seed 0 (`--seed`); the seeds that trained the body model's landmark definitions
(reconstruction/body/data/anny_landmarks_learned.json) are other seeds, so this take is held out.
With `--reuse DIR` an already processed take is scored again, its truth landmarks recomputed from
`truth/body.npz` with the current definitions (reconstruction/body/data/anny_landmarks.npz).

Run: .venv/bin/python benchmarks/bench_studio_keypoints.py [--seconds 3] [--out /tmp/studio_take]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from mocap_studio.cli import main as mocap  # noqa: E402
from mocap_studio.reconstruction.keypoints import Keypoints3D, load_keypoints3d  # noqa: E402
from mocap_studio.reconstruction.skeletons import get_format  # noqa: E402
from mocap_studio.studio.studio import StudioConfig, synthesize  # noqa: E402

BODY = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")


def _truth(root: Path, landmarks: Path | None = None) -> Keypoints3D:
    """BlazePose-33 truth of the take from its true body motion and the landmark definitions in
    ``landmarks`` (default: the current ones)."""
    from mocap_studio.reconstruction.body.anny_model import AnnyBody
    from mocap_studio.reconstruction.body.io import load_body_npz

    motion = load_body_npz(root / "truth" / "body.npz")
    stored = load_keypoints3d(root / "truth" / "keypoints3d_blazepose33.npz")
    body = AnnyBody() if landmarks is None else AnnyBody(landmarks_path=landmarks)
    xyz = body.keypoints(motion.shape, motion.pose_rotvec, motion.trans, "blazepose33")
    return Keypoints3D(
        xyz, stored.error, stored.cameras_used, stored.camera_names, stored.skeleton, frame_times=stored.frame_times
    )


def main() -> int:
    """Command line: synthesize a studio take (or reuse one), run the keypoint stages and score them against the truth."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--motion", default="squat,jumping_jack")
    parser.add_argument("--seed", type=int, default=0, help="the take's seed (body shape, motion variations)")
    parser.add_argument("--out", type=Path, help="keep the take here (default: a temporary folder)")
    parser.add_argument("--reuse", type=Path, help="score this processed take again (no synthesis, no stages)")
    parser.add_argument("--landmarks", type=Path, help="score against these landmark definitions (an anny_landmarks.npz)")
    args = parser.parse_args()
    if args.reuse:
        root = args.reuse
        if not (root / "keypoints3d.npz").exists():
            raise SystemExit(f"{root}: no keypoints3d.npz to score; run without --reuse first")
    else:
        root = args.out or Path(tempfile.mkdtemp(prefix="studio_take_"))
        if root.exists():
            shutil.rmtree(root)
        t = time.perf_counter()
        synthesize(
            root,
            StudioConfig(
                rig="ring4",
                motions=tuple(args.motion.split(",")),
                seconds=args.seconds,
                seed=args.seed,
                calibration_views=0,
                close_ups_per_camera=0,
                floor_frames=1,
            ),
        )
        print(f"synthesized {root} in {time.perf_counter() - t:.1f} s")
        shutil.copy(root / "truth" / "calibration.toml", root / "calibration.toml")
        for step in (["sync", str(root)], ["detect", str(root)], ["triangulate", str(root)]):
            t = time.perf_counter()
            assert mocap(step) == 0, step
            print(f"mocap {step[0]}: {time.perf_counter() - t:.1f} s")
    est = load_keypoints3d(root / "keypoints3d.npz")
    truth = _truth(root, args.landmarks)
    names = get_format("blazepose33").joints
    body = [i for i, n in enumerate(names) if any(b in n for b in BODY)]
    at = np.stack(
        [
            np.stack([np.interp(est.frame_times, truth.frame_times, truth.xyz[:, j, k]) for k in range(3)], -1)
            for j in range(truth.xyz.shape[1])
        ],
        1,
    )
    err = np.linalg.norm(est.xyz - at, axis=-1)
    bias = np.nanmean(est.xyz - at, axis=0)
    unbiased = np.linalg.norm(est.xyz - at - bias, axis=-1)
    print(
        f"\nMPJPE over the 12 body joints: {1000 * np.nanmean(err[:, body]):.1f} mm "
        f"(all 33 landmarks {1000 * np.nanmean(err):.1f} mm); after removing each joint's constant offset "
        f"(landmark definition: detector vs body model) {1000 * np.nanmean(unbiased[:, body]):.1f} mm"
    )
    for i in body:
        print(f"  {names[i]:>15}: {1000 * np.nanmean(err[:, i]):5.1f} mm (constant offset {1000 * np.linalg.norm(bias[i]):4.1f})")
    per_frame = 1000 * np.nanmean(err[:, body], axis=1)
    print("per frame (mm):", " ".join(f"{v:.0f}" for v in per_frame))
    # the cameras start and stop at different times (sync offsets): near the ends fewer cameras record
    timing = json.loads((root / "truth" / "timing.json").read_text())["cameras"]
    first = max(c["offset_s"] + c["frame_times_s"][0] for c in timing.values())
    last = min(c["offset_s"] + c["frame_times_s"][-1] for c in timing.values())
    every = (est.frame_times >= first - 1e-6) & (est.frame_times <= last + 1e-6)
    print(
        f"frames every camera records: {1000 * np.nanmean(err[every][:, body]):.1f} mm ({every.sum()} frames); "
        f"frames fewer cameras record: {1000 * np.nanmean(err[~every][:, body]):.1f} mm ({(~every).sum()} frames)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
