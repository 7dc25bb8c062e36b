"""Pictures of an exported take as Blender imports it: the FBX and the BVH side by side at a few frames.

Blender (bpy 5.3, pinned in ``blender_requirements.txt``) lives in its own Python 3.13 venv in the project
cache (``.cache/blender-venv``, built by ``make demo``, ``make blender-check`` or ``make test``, or
``python -m mocap_studio.export.blender_preview --install``); it never enters the project's venv. When it is absent the preview
is skipped with that reason. The picture is what an animator would check first: both files import, the
character stands on the floor, faces forward, and moves as the performer did. The head positions of every
bone that Blender reports for the two files are compared too (they must agree: same retargeted motion).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).with_name("blender_preview_bpy.py")


@dataclass(frozen=True)
class Preview:
    """What :func:`render_preview` made: the picture, the frames shown, the FBX/BVH bone difference and the time taken."""

    picture: Path
    """One PNG: the chosen frames left to right."""
    frames: tuple[int, ...]
    fbx_bvh_difference_mm: float
    """Largest difference between the bone positions Blender imports from the FBX and from the BVH."""
    seconds: float


class PreviewUnavailable(RuntimeError):
    """Blender is not installed in the project cache (the message says how to install it)."""


REQUIREMENT_FILE = Path(__file__).with_name("blender_requirements.txt")
PYTHON313_CANDIDATES = ("/root/.pyenv/versions/3.13.0/bin/python3.13", "python3.13")


def _venv() -> Path:
    from mocap_studio.common.cache import project_cache_dir

    return project_cache_dir() / "blender-venv"


def find_python313() -> Path | None:
    """bpy 5.3 needs Python 3.13: ``$MOCAP_PYTHON313``, pyenv's, or ``python3.13`` on the PATH."""
    for candidate in (os.environ.get("MOCAP_PYTHON313", ""), *PYTHON313_CANDIDATES):
        found = shutil.which(candidate) if candidate and "/" not in candidate else candidate
        if found and Path(found).exists():
            return Path(found)
    return None


def blender_python(install: bool = False) -> Path:
    """The Python of the isolated Blender venv (``.cache/blender-venv``); with ``install``, create it first
    (about 1 GB and 45 s, once). Raises :class:`PreviewUnavailable` saying why Blender cannot be had."""
    if os.environ.get("MOCAP_SKIP_BLENDER"):
        raise PreviewUnavailable("MOCAP_SKIP_BLENDER is set")
    venv = _venv()
    python, stamp = venv / "bin" / "python", venv / ".installed"
    requirement = REQUIREMENT_FILE.read_text().split()[0]

    def installed() -> bool:
        return stamp.exists() and stamp.read_text() == requirement and python.exists()

    if installed():
        return python
    if not install:
        raise PreviewUnavailable(f"Blender is not installed in {venv}; `make blender-check` installs it (~1 GB, once)")
    py313 = find_python313()
    if py313 is None:
        raise PreviewUnavailable("Python 3.13 not found (bpy 5.3 needs it; set MOCAP_PYTHON313=/path/to/python3.13)")
    from mocap_studio.common.cache import file_lock

    # two processes at once (make test's workers): one installs, the other waits
    with file_lock("blender-venv", f"Blender: another process is installing it into {venv}; waiting"):
        if installed():  # installed by the process this one waited for
            return python
        if not python.exists():
            subprocess.run([str(py313), "-m", "venv", str(venv)], check=True, timeout=300)
        proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", requirement],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise PreviewUnavailable(f"pip could not install {requirement} for Python 3.13: {proc.stderr.strip()[-300:]}")
        stamp.write_text(requirement)
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

    from mocap_studio.common.fileio import atomic_path
    from PIL import Image

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


def main() -> int:
    """``python -m mocap_studio.export.blender_preview --install``: set up Blender in the project cache (make demo does)."""
    if sys.argv[1:] != ["--install"]:
        print("usage: python -m mocap_studio.export.blender_preview --install", file=sys.stderr)
        return 2
    print(f"Blender (bpy) for the export previews and checks in {_venv()} (about 1 GB, once)")
    try:
        print(f"ready: {blender_python(install=True)}")
    except PreviewUnavailable as e:
        print(f"no Blender: {e}", file=sys.stderr)
        return 1
    return 0


__all__ = ["Preview", "PreviewUnavailable", "blender_python", "find_python313", "render_preview"]

if __name__ == "__main__":
    sys.exit(main())
