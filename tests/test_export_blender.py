"""Blender 5.3 (bpy, isolated Python 3.13 venv) imports our BVH, FBX and GLB: every joint on every frame
matches the Motion within 0.1 mm, and the FBX/GLB meshes are skinned to the armature. The avatar (Anny's mesh on
the Mixamo rig) imports from GLB, FBX and USDZ as an armature with the mesh skinned to it, and Blender deforms
it as the body model (measured: every vertex within 0.0006 mm of our skinning at 3 frames).

``make test`` and ``make blender-check`` set MOCAP_BLENDER_CHECK=1: the first run creates
``.cache/blender-venv`` (~1 GB, about 45 s); a bare ``pytest`` runs it only once that venv exists. Skips with
the reason when Python 3.13 or bpy is unavailable.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from export_readers import BLENDER_CHECK, CACHE, blender_python
from mocap_studio.export.avatar import body_avatar
from mocap_studio.export.bvh import write_bvh
from mocap_studio.export.fbx import write_fbx
from mocap_studio.export.gltf import write_glb
from mocap_studio.export.mesh import capsule_mesh, skin
from mocap_studio.export.retarget import RetargetConfig, retarget
from mocap_studio.export.rig import load_rig
from mocap_studio.export.synthetic import synthetic_walk
from mocap_studio.export.usd import write_usd
from scipy.spatial import cKDTree
from test_export_avatar import make_anny_take

ENABLED = os.environ.get("MOCAP_BLENDER_CHECK") == "1" or (CACHE / "blender-venv" / ".installed").exists()
pytestmark = pytest.mark.skipif(
    not ENABLED, reason="Blender check: run `make test` or `make blender-check` (sets MOCAP_BLENDER_CHECK=1)"
)


@pytest.fixture(scope="module")
def blender() -> Path:
    py, why = blender_python()
    if py is None:
        pytest.skip(why)
    return py


@pytest.mark.parametrize("fmt", ["bvh", "fbx", "glb"])
def test_blender_imports_match_motion(tmp_path: Path, blender: Path, fmt: str) -> None:
    m = synthetic_walk(40)
    mesh = capsule_mesh(m)
    path = tmp_path / f"walk.{fmt}"
    {
        "bvh": lambda: write_bvh(path, m),
        "fbx": lambda: write_fbx(path, m, mesh),
        "glb": lambda: write_glb(path, m, mesh),
    }[fmt]()
    out = tmp_path / "blender.npz"
    subprocess.run(
        [
            str(blender),
            str(BLENDER_CHECK / "check.py"),
            str(path),
            str(out),
            str(m.num_frames),
            str(m.frame_rate),
        ],
        check=True,
        timeout=600,
        capture_output=True,
    )
    data = np.load(out)
    names = list(data["names"])
    assert sorted(names) == sorted(m.joint_names)
    pos = data["positions"][:, [names.index(n) for n in m.joint_names]]
    err_mm = 1000 * np.abs(pos - m.world_positions_m()).max()
    assert err_mm < 0.1, f"Blender's {fmt} import is {err_mm:.4f} mm off"
    if fmt in ("fbx", "glb"):
        assert int(data["skinned"]) == 1


@pytest.fixture(scope="module")
def anny_take():  # noqa: ANN201
    return make_anny_take()


@pytest.mark.parametrize("fmt", ["glb", "fbx", "usdz"])
def test_blender_deforms_the_avatar_as_the_body_model(tmp_path: Path, blender: Path, anny_take, fmt: str) -> None:
    """The avatar on the Mixamo rig (test_export_avatar's Anny take), imported by Blender's own importers: an
    armature with the mesh skinned to it, which Blender deforms as :func:`skin` does (0.1 mm) and so as close to
    the body model's own vertices as the avatar is (median 1.5 mm, 95th percentile 12 mm, without leg IK)."""
    model, shape, pose, trans, motion, rig, mesh = anny_take
    avatar = body_avatar(motion, rig, mesh, load_rig("mixamo"))
    anim = retarget(motion, rig, avatar.rig, RetargetConfig(leg_ik=False, pin_feet=False))
    frames = np.array([0, anim.num_frames // 2, anim.num_frames - 1])
    path = {"glb": write_glb, "fbx": write_fbx, "usdz": write_usd}[fmt](tmp_path / f"take.mixamo.{fmt}", anim, avatar.mesh)
    out = tmp_path / "blender.npz"
    subprocess.run([str(blender), str(BLENDER_CHECK / "check.py"), str(path), str(out), str(anim.num_frames),
                    str(anim.frame_rate), *map(str, frames)], check=True, timeout=600, capture_output=True)
    data = np.load(out)
    assert int(data["skinned"]) == 1 and len(data["names"]) == len(anim.joint_names)
    dist, match = cKDTree(avatar.mesh.vertices_m).query(data["mesh_rest"])  # importers may reorder vertices
    assert len(match) == avatar.mesh.num_vertices and dist.max() < 1e-5
    assert float(data["mesh_smooth"]) == 1.0  # the file's vertex normals: smooth, not faceted
    posed = data["mesh_posed"]
    assert np.abs(posed - skin(avatar.mesh, anim, frames)[:, match]).max() < 1e-4
    truth = np.asarray(model.evaluate(shape, pose[frames], trans[frames]).vertices)[:, match]
    offset = (truth - posed).reshape(-1, 3).mean(0)  # the floor retargeting puts at Z = 0
    err_mm = 1000 * np.linalg.norm(posed + offset - truth, axis=-1)
    assert np.median(err_mm) < 1.5 and np.percentile(err_mm, 95) < 12.0, np.percentile(err_mm, [50, 95, 100])
