"""Pictures of an exported take as Blender imports it: the FBX and the BVH side by side at a few frames.

Blender (bpy 5.3) lives in its own Python 3.13 venv in the project cache (``.cache/blender-venv``, built by
``make blender-check`` or ``make test``); it never enters the project's venv. When it is absent the preview
is skipped with that reason. The picture is what an animator would check first: both files import, the
character stands on the floor, faces forward, and moves as the performer did. The head positions of every
bone that Blender reports for the two files are compared too (they must agree: same retargeted motion).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).with_name("blender_preview_bpy.py")


@dataclass(frozen=True)
class Preview:
    picture: Path
    """One PNG: the chosen frames left to right."""
    frames: tuple[int, ...]
    fbx_bvh_difference_mm: float
    """Largest difference between the bone positions Blender imports from the FBX and from the BVH."""
    seconds: float


class PreviewUnavailable(RuntimeError):
    """Blender is not installed in the project cache (the message says how to install it)."""


def blender_python() -> Path:
    from reconstruction.body.cache import project_cache_dir

    venv = project_cache_dir() / "blender-venv"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists() or not python.exists():
        raise PreviewUnavailable(f"Blender is not installed in {venv}; `make blender-check` installs it (~1 GB, once)")
    return python


def _bone_difference_mm(path: Path) -> float:
    rows: dict[tuple[str, str], np.ndarray] = {}
    for line in path.read_text().splitlines():
        parts = line.split(" ")  # frame kind name... x y z
        frame, kind, name = parts[0], parts[1], " ".join(parts[2:-3])
        rows[(kind, f"{frame} {name}")] = np.array([float(v) for v in parts[-3:]])
    keys = sorted(k for kind, k in rows if kind == "fbx" and ("bvh", k) in rows)
    if not keys:
        raise RuntimeError(f"{path}: Blender reported no bone in both files")
    diff = np.stack([rows[("bvh", k)] - rows[("fbx", k)] for k in keys])
    return float(1000 * np.abs(diff - np.median(diff, axis=0)).max())  # the BVH stands 1.3 m aside


def render_preview(fbx: Path, bvh: Path, out: Path, frame_rate: float, frames: list[int],
                   timeout_s: float = 600.0) -> Preview:
    """Render ``frames`` of ``fbx`` and ``bvh`` as Blender imports them into the PNG ``out``."""
    import time

    from PIL import Image

    from capture.fileio import atomic_path

    python = blender_python()
    work = out.parent / f".{out.stem}_frames"
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run([str(python), str(SCRIPT), str(fbx), str(bvh), str(work), str(frame_rate),
                           *[str(int(f)) for f in frames]], capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"Blender could not import or render {fbx.name} / {bvh.name}: {proc.stderr.strip()[-600:]}")
    images = [Image.open(work / f"frame_{int(f):05d}.png").convert("RGB") for f in frames]
    strip = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)), "white")
    x = 0
    for image in images:
        strip.paste(image, (x, 0))
        x += image.width
    with atomic_path(out) as tmp:
        strip.save(tmp)
    difference = _bone_difference_mm(work / "bones.txt")
    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    return Preview(out, tuple(int(f) for f in frames), difference, time.perf_counter() - start)


__all__ = ["Preview", "PreviewUnavailable", "blender_python", "render_preview"]
