"""Small virtual-studio takes for the viewer and live tests (shared, built once per test module)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest


def rig_toml(name: str, cameras: int, size: tuple[int, int], frame_rate: float, focal_px: float) -> str:
    """A ring rig of ``cameras`` cameras, all in sync except for small offsets."""
    cams = "".join(f'[[cameras]]\nname = "cam_{i + 1}"\noffset_s = {0.011 * i:.3f}\n' for i in range(cameras))
    return f"""name = "{name}"
description = "{cameras} cameras on a ring (viewer tests)"
[layout]
kind = "ring"
radius_m = 4.0
height_m = 2.2
start_deg = 20.0
span_deg = 360.0
look_at_m = [0.0, 0.0, 1.0]
[defaults]
size = [{size[0]}, {size[1]}]
frame_rate = {frame_rate}
focal_px = {focal_px}
distortion = [0.0, 0.0, 0.0, 0.0, 0.0]
{cams}"""


def small_take(base: Path, *, cameras: int = 3, size: tuple[int, int] = (320, 180), seconds: float = 2.0,
               frame_rate: float = 20.0, focal_px: float = 250.0, motions: tuple[str, ...] = ("jumping_jack",),
               glb: bool = True, seed: int = 5):
    """Render a short take; the true calibration as its calibration.toml, the true 3D keypoints as its
    keypoints3d.npz (per-joint error a known ramp), the true body fitted and exported as a skinned GLB."""
    pytest.importorskip("open3d")
    from mocap_studio.reconstruction.keypoints import Keypoints3D, load_keypoints3d
    from mocap_studio.session import Session
    from mocap_studio.stages_synth import run_synth
    from mocap_studio.studio import StudioConfig

    base.mkdir(parents=True, exist_ok=True)
    (base / "rig.toml").write_text(rig_toml(f"viewer_test{cameras}", cameras, size, frame_rate, focal_px))
    config = StudioConfig(rig=str(base / "rig.toml"), motions=motions, seconds=seconds, seed=seed, calibration_views=2,
                          close_ups_per_camera=1, floor_frames=1, claps=1)
    synth = run_synth(base / "take", config)
    session = Session(synth.session_dir)
    shutil.copy(synth.truth_dir / "calibration.toml", session.calibration_path)
    truth = load_keypoints3d(synth.truth_dir / "keypoints3d_blazepose33.npz")
    T, J = truth.xyz.shape[:2]
    error = np.tile(np.linspace(1.0, 20.0, J), (T, 1))  # every colour of the quality scale
    Keypoints3D(truth.xyz, error, np.ones((T, J, cameras), bool), truth.camera_names if len(truth.camera_names) == cameras
                else tuple(f"cam_{i + 1}" for i in range(cameras)), "blazepose33", truth.frame_times).save(
        session.keypoints3d_path)
    if glb:
        anny = pytest.importorskip("mocap_studio.reconstruction.body.anny_model")
        if not anny.anny_cache_ready():
            pytest.skip("the Anny body model cache is not built (see reconstruction/body/cache.py)")
        from mocap_studio.stages_export import ExportConfig, run_export

        shutil.copy(synth.truth_dir / "body.npz", session.body_path)
        run_export(session, ExportConfig(formats=("glb",)))
    return synth, session
