"""Import a file with Blender (bpy 5.3, in the isolated Python 3.13 venv) and dump what the tests compare.

Usage: python check.py file.(bvh|fbx|glb|usdz) out.npz n_frames frame_rate [mesh_frame ...]

Writes: names (bone names), positions (T, J, 3) bone head world positions in Blender's world (Z up, metres
after the importers' own unit/axis conversion), skinned (1 when a mesh has an Armature modifier whose
object is the imported armature and vertex groups named after bones). With mesh frames: mesh_rest (V, 3) the
skinned mesh's undeformed vertices and mesh_posed (N, V, 3) its vertices as Blender deforms them at those
frames, both in Blender's world (the importers may reorder vertices: match them by rest position); mesh_smooth
the fraction of faces Blender shades smooth (the file's normals read).
"""

import sys

import bpy
import numpy as np


def main() -> None:
    path, out, n_frames, frame_rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    mesh_frames = [int(f) for f in sys.argv[5:]]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = max(1, round(frame_rate))  # the motion's rate, so frame i is key i
    scene.render.fps_base = scene.render.fps / frame_rate
    ext = path.rsplit(".", 1)[-1].lower()
    if ext == "bvh":
        bpy.ops.import_anim.bvh(
            filepath=path,
            axis_forward="-Z",
            axis_up="Y",
            global_scale=0.01,
            update_scene_fps=False,
            frame_start=0,
            use_fps_scale=False,
            rotate_mode="NATIVE",
        )
    elif ext == "fbx":
        bpy.ops.import_scene.fbx(filepath=path)
    elif ext in ("glb", "gltf"):
        bpy.ops.import_scene.gltf(filepath=path)
    elif ext in ("usd", "usda", "usdc", "usdz"):
        bpy.ops.wm.usd_import(filepath=path)
    else:
        raise SystemExit(f"unsupported file {path}")
    arm = next(o for o in scene.objects if o.type == "ARMATURE")
    names = [b.name for b in arm.data.bones]
    pos = np.zeros((n_frames, len(names), 3))
    fps = scene.render.fps / scene.render.fps_base  # an importer may have set the file's rate
    action = arm.animation_data.action if arm.animation_data else None
    first = float(action.frame_range[0]) if action is not None else 0.0  # importers start at frame 0 or 1
    def go_to(t: int) -> None:
        frame = first + t / frame_rate * fps
        scene.frame_set(int(np.floor(frame)), subframe=float(frame - np.floor(frame)))

    for t in range(n_frames):
        go_to(t)
        mw = np.array(arm.matrix_world)
        for j, name in enumerate(names):
            head = np.array(list(arm.pose.bones[name].head) + [1.0])
            pos[t, j] = (mw @ head)[:3]
    skinned = 0
    for obj in scene.objects:
        if obj.type == "MESH":
            mods = [m for m in obj.modifiers if m.type == "ARMATURE" and m.object == arm]
            groups = {g.name for g in obj.vertex_groups}
            if mods and groups & set(names):
                skinned = 1
    data = {"names": np.array(names), "positions": pos, "skinned": skinned}
    body = next((o for o in scene.objects if o.type == "MESH" and any(m.type == "ARMATURE" for m in o.modifiers)), None)
    if mesh_frames and body is not None:
        mw = np.array(body.matrix_world)
        rest = np.array([list(v.co) + [1.0] for v in body.data.vertices]) @ mw.T
        data["mesh_rest"] = rest[:, :3]
        data["mesh_smooth"] = float(np.mean([p.use_smooth for p in body.data.polygons]))  # the file's normals read
        posed = []
        for t in mesh_frames:
            go_to(t)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            evaluated = body.evaluated_get(depsgraph)
            mesh = evaluated.to_mesh()
            mw = np.array(evaluated.matrix_world)
            posed.append((np.array([list(v.co) + [1.0] for v in mesh.vertices]) @ mw.T)[:, :3])
            evaluated.to_mesh_clear()
        data["mesh_posed"] = np.array(posed)
    np.savez(out, **data)


if __name__ == "__main__":
    main()
