"""Time and file size per export format for a one-minute 60 fps clip (SMPL-24 skeleton, capsule body mesh),
beside Blender's own exporters on the same motion (bpy 5.3 in the isolated ``.cache/blender-venv`` made by
``make blender-check``; skipped with the reason when it is absent).

Run: .venv/bin/python benchmarks/bench_export.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mocap_studio.export.bvh import write_bvh
from mocap_studio.export.c3d import write_c3d
from mocap_studio.export.fbx import write_fbx
from mocap_studio.export.gltf import write_glb
from mocap_studio.export.mesh import capsule_mesh
from mocap_studio.export.synthetic import synthetic_walk
from mocap_studio.export.trc import write_trc
from mocap_studio.export.usd import write_usd

ROOT = Path(__file__).resolve().parents[1]
BLENDER_PY = ROOT / ".cache" / "blender-venv" / "bin" / "python"


def blender_times(fbx: Path, folder: Path, rate: float, n_frames: int) -> dict[str, list[float]] | str:
    """Blender's exporters on our FBX's motion: {format: [seconds, bytes]}, or why they did not run."""
    if not (BLENDER_PY.parent.parent / ".installed").exists():
        return "no .cache/blender-venv (run `make blender-check` first)"
    proc = subprocess.run(
        [str(BLENDER_PY), str(ROOT / "benchmarks" / "blender_export.py"), str(fbx), str(folder), str(rate),
         str(n_frames)],
        capture_output=True, text=True, timeout=1800,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return f"Blender failed: {proc.stderr.strip()[-400:]}"
    return json.loads(lines[-1])


def main() -> None:
    """Write one minute at 60 fps in every format, time Blender's exporters on the same motion and print sizes and times."""
    rate, n_frames = 60.0, 3600
    motion = synthetic_walk(n_frames, rate)
    mesh = capsule_mesh(motion)
    points = motion.world_positions_m()
    writers = {
        "bvh": lambda p: write_bvh(p, motion),
        "fbx": lambda p: write_fbx(p, motion, mesh),
        "glb": lambda p: write_glb(p, motion, mesh),
        "usdc": lambda p: write_usd(p, motion, mesh),
        "usdz": lambda p: write_usd(p, motion, mesh),
        "trc": lambda p: write_trc(p, points, motion.joint_names, rate),
        "c3d": lambda p: write_c3d(p, points, motion.joint_names, rate),
    }
    ours: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for fmt, write in writers.items():
            path = folder / f"clip.{fmt}"
            start = time.perf_counter()
            write(path)
            ours[fmt] = (time.perf_counter() - start, path.stat().st_size)
        blender = blender_times(folder / "clip.fbx", folder, rate, n_frames)
    print(f"one minute at 60 fps: {motion.num_joints} joints, {mesh.num_vertices} mesh vertices")
    print(f"{'format':7s} {'ours s':>8s} {'ours MB':>8s} {'Blender s':>10s} {'Blender MB':>11s} {'time x':>7s} {'size x':>7s}")
    for fmt, (sec, size) in ours.items():
        row = f"{fmt:7s} {sec:8.3f} {size / 1e6:8.2f}"
        if isinstance(blender, dict) and fmt in blender:
            b_sec, b_size = blender[fmt]
            row += f" {b_sec:10.3f} {b_size / 1e6:11.2f} {b_sec / sec:7.1f} {b_size / size:7.2f}"
        print(row)
    if isinstance(blender, str):
        print(f"Blender: {blender}", file=sys.stderr)
    else:
        print("time x / size x: Blender's seconds and bytes over ours (above 1: ours is faster / smaller)")


if __name__ == "__main__":
    main()
