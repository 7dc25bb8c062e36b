"""Virtual-studio takes for the measurement-uncertainty study, cached under ``.cache/measurement_takes/``.

Each take: a random adult body (``seed``), ring of 4 cameras at half size (``--full-size``: 1280x720, as the demo;
the detect stage keeps masks at half the image's size), 60 frames at 30 fps of squat and jumping jack, in sync,
true calibration; then ``mocap detect``, ``mocap triangulate`` and ``mocap fit`` with the session's defaults. A
take whose fit exists is reused (delete its folder to redo it).

Run: ``.venv/bin/python benchmarks/measurement_takes.py --seeds 101 102 ... [--full-size]`` (about 2-4 minutes a
take on 2 cores, half size or full); :mod:`benchmarks.measurement_coverage` reads the takes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from mocap_studio.cli import main as mocap
from mocap_studio.common.cache import project_cache_dir
from mocap_studio.studio.studio import StudioConfig, synthesize

TAKES_DIR = project_cache_dir() / "measurement_takes"
"""Where the takes live: one folder per seed, ``seed_<N>``."""
FRAMES = 60


def take_dir(seed: int, full_size: bool = False) -> Path:
    """The folder of the take with ``seed`` (``full_size``: rendered at the rig's full size)."""
    return TAKES_DIR / f"seed_{seed}{'_full' if full_size else ''}"


def make_take(seed: int, full_size: bool = False) -> Path:
    """Synthesize and process the take with ``seed`` unless its body.npz exists; returns its folder."""
    root = take_dir(seed, full_size)
    if (root / "body.npz").exists():
        return root
    t0 = time.perf_counter()
    if not (root / "keypoints3d.npz").exists():
        partial = root.with_name(root.name + ".partial")
        if partial.exists():
            shutil.rmtree(partial)
        synthesize(partial, StudioConfig(rig="ring4", motions=("squat", "jumping_jack"), frames=FRAMES, frame_rate=30.0,
                                         seed=seed, scale=1.0 if full_size else 0.5, in_sync=True, audio=False, claps=0,
                                         calibration_views=0, close_ups_per_camera=0, floor_frames=1))
        shutil.copy(partial / "truth" / "calibration.toml", partial / "calibration.toml")
        for step in (["sync", "--none"], ["detect"], ["triangulate"]):
            if mocap([step[0], str(partial), *step[1:]]) != 0:
                raise SystemExit(f"mocap {step} {partial} failed")
        if root.exists():
            shutil.rmtree(root)
        partial.rename(root)
    if mocap(["fit", str(root)]) != 0:
        raise SystemExit(f"mocap fit {root} failed")
    print(f"seed {seed}: {root} in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def main() -> int:
    """Command line: build the takes of the given seeds."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(101, 111)))
    ap.add_argument("--full-size", action="store_true", help="render at the rig's full size (1280x720)")
    args = ap.parse_args()
    for seed in args.seeds:
        make_take(seed, args.full_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
