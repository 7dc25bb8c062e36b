"""Time Blender's own exporters (bpy 5.3, run in the isolated .cache/blender-venv) on a motion we wrote.

Usage: python blender_export.py input.fbx out_folder frame_rate n_frames
Prints one JSON line: {format: [seconds, bytes]} for bvh, fbx, glb, usdz. The input is imported first
(our FBX, skeleton + skinned mesh + animation), so Blender exports the same motion; import time is not
counted.
"""

import json
import sys
import time
from pathlib import Path

import bpy


def main() -> None:
    """Import the FBX, time each Blender exporter on it and print the JSON line (arguments: see the module docstring)."""
    src, out, rate, n_frames = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = round(rate)
    bpy.ops.import_scene.fbx(filepath=src)
    scene.frame_start, scene.frame_end = 1, n_frames
    arm = next(o for o in scene.objects if o.type == "ARMATURE")
    bpy.context.view_layer.objects.active = arm
    arm.select_set(True)
    exporters = {
        "bvh": lambda p: bpy.ops.export_anim.bvh(filepath=p, frame_start=1, frame_end=n_frames),
        "fbx": lambda p: bpy.ops.export_scene.fbx(filepath=p, bake_anim=True),
        "glb": lambda p: bpy.ops.export_scene.gltf(filepath=p, export_format="GLB"),
        "usdz": lambda p: bpy.ops.wm.usd_export(filepath=p, export_animation=True),
    }
    result = {}
    for fmt, export in exporters.items():
        path = str(out / f"blender.{fmt}")
        start = time.perf_counter()
        export(path)
        result[fmt] = [time.perf_counter() - start, Path(path).stat().st_size]
    print(json.dumps(result))


main()
