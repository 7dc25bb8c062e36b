"""Time and file size per export format for a one-minute 60 fps clip (SMPL-24 skeleton, capsule body mesh).

Run: .venv/bin/python benchmarks/bench_export.py   (Blender's own exporters beside ours: not yet wired in)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from export.bvh import write_bvh
from export.fbx import write_fbx
from export.gltf import write_glb
from export.mesh import capsule_mesh
from export.synthetic import synthetic_walk
from export.usd import write_usd


def main() -> None:
    motion = synthetic_walk(3600, 60.0)
    mesh = capsule_mesh(motion)
    writers = {
        "bvh": lambda p: write_bvh(p, motion),
        "fbx": lambda p: write_fbx(p, motion, mesh),
        "glb": lambda p: write_glb(p, motion, mesh),
        "usdc": lambda p: write_usd(p, motion, mesh),
        "usdz": lambda p: write_usd(p, motion, mesh),
    }
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'format':8s} {'seconds':>8s} {'MB':>8s}")
        for fmt, write in writers.items():
            path = Path(folder) / f"clip.{fmt}"
            start = time.perf_counter()
            write(path)
            seconds = time.perf_counter() - start
            print(f"{fmt:8s} {seconds:8.3f} {path.stat().st_size / 1e6:8.2f}")


if __name__ == "__main__":
    main()
