"""Training material for learning the body model's detector landmarks: virtual studio takes, detected and
triangulated by the pipeline, paired with the true body mesh at the same instants.

For each (seed, exercises) take this renders a ring4 take (true calibration), runs ``mocap sync``,
``mocap detect`` and ``mocap triangulate`` exactly as a user would, and stores the triangulated BlazePose-33
points beside the true posed mesh at the triangulated frame times. ``reconstruction.body.learn_landmarks``
fits the landmark definitions to these samples. It lives here because it needs the studio and the front end;
no stage imports it.

Run: ``python -m mocap_studio.tools.landmark_takes WORK --seeds 101 102 ...`` (one take per seed; the
exercises cycle through :data:`TRAINING_MOTIONS`). Each take's samples go to ``WORK/seed<N>.npz``:
``targets`` (T, 33, 3) metres, triangulated; ``vertices`` (T, V, 3) float32 true mesh; ``times`` (T,);
``seed``, ``motions``, ``shape``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TRAINING_MOTIONS = (
    ("lunge", "arm_circles"),
    ("squat", "jumping_jack"),
    ("walk_on_the_spot", "squat"),
    ("jumping_jack", "lunge"),
    ("arm_circles", "walk_on_the_spot"),
    ("squat", "arm_circles"),
)
"""Exercise pairs, assigned to the takes in turn."""


def motions_for(index: int) -> tuple[str, ...]:
    """The exercise pair of the take at ``index`` (cycling through :data:`TRAINING_MOTIONS`)."""
    return TRAINING_MOTIONS[index % len(TRAINING_MOTIONS)]


def make_take_samples(work: Path, seed: int, motions: tuple[str, ...], seconds: float, keep: bool = False) -> Path:
    """Render, detect and triangulate one take; write ``work/seed<seed>.npz`` (see the module docstring).
    The take's folder ``work/take_seed<seed>`` is removed unless ``keep``."""
    from mocap_studio.cli import main as mocap
    from mocap_studio.common.fileio import save_npz_atomic
    from mocap_studio.reconstruction.keypoints import load_keypoints3d
    from mocap_studio.studio.studio import StudioConfig, synthesize

    out = work / f"seed{seed}.npz"
    root = work / f"take_seed{seed}"
    if root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()
    take = synthesize(
        root,
        StudioConfig(
            rig="ring4", motions=motions, seconds=seconds, seed=seed, calibration_views=0, close_ups_per_camera=0, floor_frames=1
        ),
    )
    shutil.copy(take.truth_dir / "calibration.toml", root / "calibration.toml")
    for step in ("sync", "detect", "triangulate"):
        if mocap([step, str(root)]) != 0:
            raise RuntimeError(f"{root}: mocap {step} failed for the training take of seed {seed}")
    est = load_keypoints3d(root / "keypoints3d.npz")
    if est.skeleton != "blazepose33":
        raise RuntimeError(f"{root / 'keypoints3d.npz'}: skeleton {est.skeleton}, expected blazepose33")
    from mocap_studio.reconstruction.body.anny_model import AnnyBody

    body = AnnyBody(landmarks_path=None)
    pose, trans = take.performance.sample(est.frame_times)
    verts = body.evaluate(take.performance.shape, pose, trans).vertices.astype(np.float32)
    save_npz_atomic(
        out,
        targets=est.xyz.astype(np.float64),
        vertices=verts,
        times=np.asarray(est.frame_times),
        seed=np.array(seed),
        motions=np.array(motions, dtype=str),
        shape=take.performance.shape,
        seconds=np.array(seconds),
    )
    if not keep:
        shutil.rmtree(root)
    log.info("seed %d (%s): %d frames in %.0f s -> %s", seed, "+".join(motions), len(verts), time.perf_counter() - t0, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: render and triangulate one take per seed and store its samples (see the module docstring); returns the
    exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="folder for the takes and their samples")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--keep", action="store_true", help="keep each take's session folder")
    parser.add_argument("--first-motion", type=int, default=0, help="index into TRAINING_MOTIONS of the first take")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    for k, seed in enumerate(args.seeds):
        if (args.work / f"seed{seed}.npz").exists():
            log.info("seed %d: samples exist, kept", seed)
            continue
        make_take_samples(args.work, seed, motions_for(args.first_motion + k), args.seconds, args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
