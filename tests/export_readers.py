"""Independent readers for the export tests, installed on first use into the git-ignored ``.cache/``.

- the Khronos glTF validator (npm ``gltf-validator``, version pinned in ``tests/tools/package.json``),
  installed with npm into ``.cache/test-tools/node_modules``;
- Blender as a module (``bpy``, pinned in ``export/blender_requirements.txt``) in an isolated Python 3.13
  virtual environment ``.cache/blender-venv`` (bpy 5.3 needs Python 3.13; the project runs on 3.11), set up
  by :func:`export.blender_preview.blender_python`.

Each helper returns None with a reason when its tool cannot be had, so tests skip and say why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
TOOLS = Path(__file__).resolve().parent / "tools"
BLENDER_CHECK = Path(__file__).resolve().parent / "blender_check"


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


def blender_python() -> tuple[Path | None, str]:
    """(python of the isolated bpy venv, "") or (None, why). Creates the venv on first use (~1 GB)."""
    from mocap_studio.export.blender_preview import PreviewUnavailable
    from mocap_studio.export.blender_preview import blender_python as install

    try:
        return install(install=True), ""
    except PreviewUnavailable as e:
        return None, str(e)
