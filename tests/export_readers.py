"""Independent readers for the export tests, installed on first use into the git-ignored ``.cache/``.

- the Khronos glTF validator (npm ``gltf-validator``, version pinned in ``tests/tools/package.json``),
  installed with npm into ``.cache/test-tools/node_modules``;
- Blender as a module (``bpy``, pinned in ``tests/blender_check/requirements.txt``) in an isolated Python 3.13
  virtual environment ``.cache/blender-venv`` (bpy 5.3 needs Python 3.13; the project runs on 3.11).

Each helper returns None with a reason when its tool cannot be had, so tests skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
TOOLS = Path(__file__).resolve().parent / "tools"
BLENDER_CHECK = Path(__file__).resolve().parent / "blender_check"
PYTHON313_CANDIDATES = [
    os.environ.get("MOCAP_PYTHON313", ""),
    "/root/.pyenv/versions/3.13.0/bin/python3.13",
    shutil.which("python3.13") or "",
]


def gltf_validator() -> tuple[Path | None, str]:
    """(node_modules folder holding gltf-validator, "") or (None, why it is missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None, "node/npm not installed: the Khronos glTF validator cannot run"
    version = json.loads((TOOLS / "package.json").read_text())["dependencies"]["gltf-validator"]
    prefix = CACHE / "test-tools"
    modules = prefix / "node_modules"
    installed = modules / "gltf-validator" / "package.json"
    if installed.exists() and json.loads(installed.read_text()).get("version") == version:
        return modules, ""
    prefix.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), f"gltf-validator@{version}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 or not installed.exists():
        return None, f"npm could not install gltf-validator@{version}: {proc.stderr.strip()[-300:]}"
    return modules, ""


def validate_gltf(paths: list[Path]) -> list[dict]:
    """Run the validator on each file; one report per file (numErrors, numWarnings, messages)."""
    modules, why = gltf_validator()
    if modules is None:
        raise RuntimeError(why)
    proc = subprocess.run(
        ["node", str(TOOLS / "gltf_validate.mjs"), str(modules), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(proc.stdout)


def python313() -> Path | None:
    for cand in PYTHON313_CANDIDATES:
        if cand and Path(cand).exists():
            return Path(cand)
    return None


def blender_python() -> tuple[Path | None, str]:
    """(python of the isolated bpy venv, "") or (None, why). Creates the venv on first use (~1 GB)."""
    if os.environ.get("MOCAP_SKIP_BLENDER"):
        return None, "MOCAP_SKIP_BLENDER is set"
    py = python313()
    if py is None:
        return None, "Python 3.13 not found (bpy 5.3 needs it; set MOCAP_PYTHON313=/path/to/python3.13)"
    venv = CACHE / "blender-venv"
    vpy = venv / "bin" / "python"
    requirement = (BLENDER_CHECK / "requirements.txt").read_text().split()[0]
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text() == requirement:
        return vpy, ""
    if not vpy.exists():
        subprocess.run([str(py), "-m", "venv", str(venv)], check=True, timeout=300)
    proc = subprocess.run(
        [str(vpy), "-m", "pip", "install", "--quiet", requirement],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        return None, f"pip could not install {requirement} for Python 3.13: {proc.stderr.strip()[-300:]}"
    stamp.write_text(requirement)
    return vpy, ""
