"""The layout holds: imports point one way (checked over the import graph, not by eye), the installed import
names are unique to the project, and a user's own ``configs/`` or ``export/`` package never shadows ours."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOT_PACKAGE = "mocap_studio"
# folder -> its import name (pyproject's [tool.setuptools.package-dir])
FOLDERS = {
    "mocap": ROOT_PACKAGE, "common": f"{ROOT_PACKAGE}.common", "capture": f"{ROOT_PACKAGE}.capture",
    "calibration": f"{ROOT_PACKAGE}.calibration", "reconstruction": f"{ROOT_PACKAGE}.reconstruction",
    "export": f"{ROOT_PACKAGE}.export", "configs": f"{ROOT_PACKAGE}.configs", "tools": f"{ROOT_PACKAGE}.tools",
}
STAGES = ("common", "capture", "calibration", "reconstruction", "export", "configs")
# what each floor may import (besides itself); the front end ("front") and tools sit on top and import anything
ALLOWED = {
    "common": set(),
    "configs": set(),
    "capture": {"common"},
    "calibration": {"common", "capture"},
    "reconstruction": {"common", "capture", "calibration"},
    "export": {"common", "capture", "calibration", "reconstruction", "configs"},
}
GENERIC = {"calibration", "capture", "reconstruction", "export", "configs", "common", "tools", "mocap"}


def _layer(module: str) -> str | None:
    """The floor of an import name: a stage package, "tools", "front" (the root package's own modules), or None."""
    parts = module.split(".")
    if parts[0] != ROOT_PACKAGE:
        return None
    if len(parts) > 1 and parts[1] in (*STAGES, "tools"):
        return parts[1]
    return "front"


def _modules() -> dict[str, Path]:
    """Every module of the package: import name -> file."""
    out = {}
    for folder, name in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([name, *parts])] = path
    return out


def _imports(path: Path, module: str, top_level_only: bool = False) -> list[tuple[str, int]]:
    """(imported module name, line) for every import in ``path``; relative imports resolved against ``module``."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            # `from pkg import submodule` imports pkg.submodule
            found += [(f"{name}.{a.name}", node.lineno) for a in node.names]
    return found


MODULES = _modules()


def test_every_folder_module_is_found():
    assert f"{ROOT_PACKAGE}.common.fileio" in MODULES and f"{ROOT_PACKAGE}.studio.studio" in MODULES
    assert len(MODULES) > 100


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) in STAGES))
def test_stage_imports_point_down(module):
    """No stage module imports the front end, the studio, tools, or a floor above its own."""
    layer = _layer(module)
    known = set(MODULES)
    bad = []
    for name, line in _imports(MODULES[module], module):
        target = _layer(name)
        if target is None or target == layer:
            continue
        if target not in ALLOWED[layer] and (name in known or name.rpartition(".")[0] in known):
            bad.append(f"line {line}: {name} ({target})")
    assert not bad, f"{MODULES[module].relative_to(ROOT)} ({layer}) imports upward: {bad}"


def test_nothing_imports_a_generic_top_level_name():
    """Every import of our code goes through the root package; a bare `configs` or `export` would be the user's."""
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for module, path in MODULES.items()
        for name, line in _imports(path, module)
        if name.split(".")[0] in GENERIC
    ]
    for path in sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]):
        bad += [f"{path.relative_to(ROOT)}:{line}: {name}" for name, line in _imports(path, "tests.x")
                if name.split(".")[0] in GENERIC]
    assert not bad, "imports by a generic top-level name:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules():
    """Module-level imports form no loop (a lazy import inside a function is not counted)."""
    graph = {m: {n for n, _ in _imports(p, m, top_level_only=True) if n in MODULES and n != m}
             for m, p in MODULES.items()}
    # a package's __init__ importing its own submodules is the usual re-export, not a loop
    for m in graph:
        graph[m] = {n for n in graph[m] if not n.startswith(m + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import loops:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_installed_top_level_names_are_unique_to_the_project():
    dist = importlib.metadata.distribution("mocap-studio")
    names = {top for top, dists in importlib.metadata.packages_distributions().items() if dist.name in dists}
    names = {n for n in names if not n.startswith("__editable__")}
    assert names == {ROOT_PACKAGE}, names
    assert not names & GENERIC
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"mocap": f"{ROOT_PACKAGE}.cli:main"}


def test_users_own_configs_and_export_packages_do_not_shadow_ours(tmp_path):
    """From a working directory holding its own `configs`, `export`, `calibration` and `common` packages (as
    thousands of repositories do), ours still load from this project and theirs stay theirs."""
    for name in ("configs", "export", "calibration", "common", "capture"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"USERS = {name!r}\n")
    (tmp_path / "export" / "bvh.py").write_text("raise ImportError('the user export.bvh was imported')\n")
    (tmp_path / "configs" / "boards").mkdir()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import configs, export
        from {ROOT_PACKAGE}.calibration.boards import list_presets, load_board
        from {ROOT_PACKAGE}.export.bvh import write_bvh
        import {ROOT_PACKAGE}.export.bvh as ours
        import {ROOT_PACKAGE}.configs as our_configs
        assert configs.USERS == "configs" and export.USERS == "export", "the user's packages are theirs"
        assert ours.__file__.startswith({str(ROOT)!r}), ours.__file__
        assert our_configs.__file__.startswith({str(ROOT)!r}), our_configs.__file__
        presets = list_presets()
        assert presets, "no board presets found"
        load_board(presets[0])
        print("ok", len(presets))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project built as a wheel (as `pip install .` would install it), without build isolation."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{done.stderr[-3000:]}")
    (out / "build.log").write_text(done.stderr)
    return next(out.glob("*.whl"))


def test_the_wheel_installs_one_root_package_with_its_data(wheel):
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {ROOT_PACKAGE}
    for needed in ("configs/boards/charuco_5x7_dict4x4_100.toml", "configs/retarget/mixamo.toml",
                   "configs/rigs/ring4.toml", "reconstruction/assets/pose_landmarker_full.task",
                   "reconstruction/body/data/anny_landmarks.npz", "studio/studio.py", "cli.py"):
        assert f"{ROOT_PACKAGE}/{needed}" in names, f"the wheel lacks {needed}"
    # a folder of data files not listed in [tool.setuptools] packages ships today with a warning that it will not
    absent = [line for line in (wheel.parent / "build.log").read_text().splitlines() if "absent from the" in line]
    assert not absent, "list these in pyproject's packages:\n" + "\n".join(absent)


def test_the_installed_wheel_finds_its_presets_beside_a_users_packages(wheel, tmp_path):
    """Installed from the wheel (not this checkout), in a folder holding the user's own `configs` and
    `export`: presets and rigs load from the installed package."""
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    work = tmp_path / "work"
    for name in ("configs", "export"):
        (work / name).mkdir(parents=True)
        (work / name / "__init__.py").write_text(f"USERS = {name!r}\n")
    script = textwrap.dedent(f"""
        import {ROOT_PACKAGE}, configs
        from {ROOT_PACKAGE}.calibration.boards import list_presets
        from {ROOT_PACKAGE}.studio.rigs import rig_presets
        assert {ROOT_PACKAGE}.__file__.startswith({str(target)!r}), {ROOT_PACKAGE}.__file__
        assert configs.USERS == "configs"
        assert list_presets() and rig_presets(), "presets missing from the installed package"
        print("ok")
    """)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{target}:{work}", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
