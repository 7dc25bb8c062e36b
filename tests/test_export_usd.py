"""USD/USDZ: read back through pxr.UsdSkel, joint by joint, and the mesh skinned by UsdSkel itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mocap_studio.export.mesh import capsule_mesh, skin
from mocap_studio.export.motion import Z_UP_TO_Y_UP
from mocap_studio.export.synthetic import synthetic_walk
from mocap_studio.export.usd import read_usd_joint_positions, write_usd
from pxr import Usd, UsdGeom, UsdSkel


@pytest.mark.parametrize("suffix", [".usda", ".usdc", ".usdz"])
def test_usd_joint_positions_match_motion(tmp_path: Path, suffix: str) -> None:
    m = synthetic_walk(40)
    path = write_usd(tmp_path / f"walk{suffix}", m, capsule_mesh(m))
    names, pos, fps = read_usd_joint_positions(path)
    assert names == list(m.joint_names)
    assert fps == pytest.approx(60.0)
    err_mm = 1000 * np.abs(pos - m.world_positions_m() @ Z_UP_TO_Y_UP.T).max()
    assert err_mm < 0.01


def test_usd_stage_states_axes_units_and_skins_the_mesh(tmp_path: Path) -> None:
    m = synthetic_walk(12)
    mesh = capsule_mesh(m)
    stage = Usd.Stage.Open(str(write_usd(tmp_path / "w.usda", m, mesh)))
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    cache = UsdSkel.Cache()
    root = UsdSkel.Root(stage.GetPrimAtPath("/Character"))
    cache.Populate(root, Usd.PrimDefaultPredicate)
    bindings = cache.ComputeSkelBindings(root, Usd.PrimDefaultPredicate)
    assert len(bindings) == 1 and len(bindings[0].GetSkinningTargets()) == 1
    skel_query = cache.GetSkelQuery(bindings[0].GetSkeleton())
    skinning = bindings[0].GetSkinningTargets()[0]
    points = UsdGeom.Mesh(stage.GetPrimAtPath("/Character/Body")).GetPointsAttr().Get()
    frame = 7
    xforms = skel_query.ComputeSkinningTransforms(frame)
    posed = np.array(points)
    assert skinning.ComputeSkinnedPoints(xforms, points, frame)
    posed = np.array(points)
    expect = skin(mesh, m, np.array([frame]))[0] @ Z_UP_TO_Y_UP.T
    assert np.abs(posed - expect).max() < 1e-5


def test_usd_refuses_bad_suffix_and_nan(tmp_path: Path) -> None:
    m = synthetic_walk(5)
    with pytest.raises(ValueError, match="usdz"):
        write_usd(tmp_path / "w.abc", m)
    rot = m.local_rotmat.copy()
    rot[1] = np.nan
    with pytest.raises(ValueError, match="frames 1"):
        write_usd(tmp_path / "w.usdz", m.with_rotations(rot))
    assert not any(tmp_path.iterdir())
