"""Render the exported FBX and BVH as Blender imports them (run by Blender's Python: bpy 5.3, Python 3.13).

Usage: python blender_preview_bpy.py take.fbx take.bvh OUT_DIR frame_rate frame [frame ...]

Each file is imported with Blender's own importer. An armature is not visible in a render, so every bone gets
a capsule from its parent's joint to its own, bound to the parent bone alone (vertex group + Armature
modifier): what is drawn is the imported skeleton moving as Blender plays the file. FBX in blue, BVH in
orange beside it (moved 1.3 m to the character's left), a floor at Z = 0, a camera from the character's
front, turned 40 degrees to its right; the FBX's avatar mesh, where it has one, in light blue. One PNG per frame
(OUT_DIR/frame_<n>.png), rendered by Cycles on the CPU (works without a display), plus OUT_DIR/bones.txt
with the head positions of the bones at each frame for each file (name x y z per line, metres).
"""

import math
import sys
from pathlib import Path

# isort: off
import bpy  # first: importing bpy is what makes bmesh and mathutils importable
import bmesh
from mathutils import Matrix, Vector
# isort: on


def import_file(path: str, start: int = 0):  # noqa: ANN201
    """Import a BVH (starting at scene frame ``start``) or an FBX with Blender's importer; returns the new armature."""
    before = set(bpy.context.scene.objects)
    if path.endswith(".bvh"):
        bpy.ops.import_anim.bvh(filepath=path, axis_forward="-Z", axis_up="Y", global_scale=0.01,
                                update_scene_fps=False, frame_start=start, use_fps_scale=False, rotate_mode="NATIVE")
    else:
        bpy.ops.import_scene.fbx(filepath=path)
    new = [o for o in bpy.context.scene.objects if o not in before]
    return next(o for o in new if o.type == "ARMATURE")


def first_frame(arm) -> float:  # noqa: ANN001
    """The first frame of the armature's action (0 without animation)."""
    action = arm.animation_data.action if arm.animation_data else None
    return float(action.frame_range[0]) if action is not None else 0.0


def add_capsules(arm, colour: tuple[float, float, float, float], radius: float = 0.035) -> None:  # noqa: ANN001
    """One mesh: a capsule per bone from head to tail in the rest pose, weighted 1 to that bone."""
    mesh = bpy.data.meshes.new(arm.name + "_capsules")
    obj = bpy.data.objects.new(arm.name + "_capsules", mesh)
    bpy.context.scene.collection.objects.link(obj)
    bm = bmesh.new()
    groups = []
    # the Armature modifier works in the armature's own space: build there, and give the mesh the armature's
    # placement in the world (importers scale and turn the armature object)
    obj.parent = arm
    obj.matrix_parent_inverse = Matrix.Identity(4)
    obj.matrix_basis = Matrix.Identity(4)
    radius = radius / max(arm.matrix_world.to_scale().x, 1e-9)
    for bone in arm.data.bones:
        if bone.parent is None:
            continue
        # from the parent's joint to this bone's joint, moving with the parent: the importers choose the tails
        # of bones themselves, the joints are what the file says
        head, tail = bone.parent.head_local, bone.head_local
        length = (tail - head).length
        if length < 1e-4 * 0.01 / radius:
            continue
        made = bmesh.ops.create_uvsphere(bm, u_segments=10, v_segments=6, radius=radius)
        verts = made["verts"]
        axis = (tail - head).normalized()
        rot = Vector((0, 0, 1)).rotation_difference(axis).to_matrix().to_4x4()
        for v in verts:
            # stretch the sphere along Z into a capsule from head to tail
            z = v.co.z
            v.co.z = z + (length if z > 0 else 0.0)
            v.co = (Matrix.Translation(head) @ rot @ v.co.to_4d()).to_3d()
        groups.append((bone.parent.name, verts))
    bm.verts.index_update()
    index_groups = [(name, [v.index for v in verts]) for name, verts in groups]
    bm.to_mesh(mesh)
    bm.free()
    for name, indices in index_groups:
        group = obj.vertex_groups.get(name) or obj.vertex_groups.new(name=name)
        group.add(indices, 1.0, "REPLACE")
    modifier = obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = arm
    material = bpy.data.materials.new(arm.name + "_colour")
    material.diffuse_color = colour
    material.use_nodes = True
    material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = colour
    mesh.materials.append(material)


def colour_skinned_meshes(arm, colour: tuple[float, float, float, float]) -> None:  # noqa: ANN001
    """Give the meshes the file skins to ``arm`` (the avatar) one light material, so they read as the FBX's."""
    material = bpy.data.materials.new(arm.name + "_mesh")
    material.diffuse_color = colour
    material.use_nodes = True
    material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = colour
    for obj in bpy.context.scene.objects:
        if obj.type == "MESH" and any(m.type == "ARMATURE" and m.object == arm for m in obj.modifiers):
            obj.data.materials.clear()
            obj.data.materials.append(material)


def facing(arm) -> Vector:  # noqa: ANN001
    """The character's forward direction on the floor, from its hips (left minus right, crossed with up)."""
    def find(side: str):  # noqa: ANN202
        for pb in arm.pose.bones:
            n = pb.name.lower()
            if side in n and any(k in n for k in ("upleg", "thigh", "hip")):
                return arm.matrix_world @ pb.head
        return None

    left, right = find("left"), find("right")
    if left is None or right is None:
        return Vector((0.0, -1.0, 0.0))
    forward = (left - right).cross(Vector((0.0, 0.0, 1.0)))
    forward.z = 0.0
    return forward.normalized() if forward.length > 1e-6 else Vector((0.0, -1.0, 0.0))


def scene_setup(centre: Vector, size: float, forward: Vector) -> None:
    """Cycles on the CPU, a light background, a floor and a sun, and a camera framing ``centre`` (``size`` across) from the
    front-right of a character facing ``forward``."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 12
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = 560, 480
    scene.render.image_settings.file_format = "PNG"
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.75, 0.78, 0.82, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.8
    scene.world = world
    bpy.ops.mesh.primitive_plane_add(size=max(8.0, 4 * size), location=(centre.x, centre.y, 0.0))
    floor = bpy.context.active_object
    grey = bpy.data.materials.new("floor")
    grey.use_nodes = True
    grey.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.55, 0.55, 0.55, 1.0)
    floor.data.materials.append(grey)
    sun = bpy.data.lights.new("sun", "SUN")
    sun.energy = 3.0
    sun_obj = bpy.data.objects.new("sun", sun)
    sun_obj.rotation_euler = (math.radians(40), 0.0, math.radians(-30))
    scene.collection.objects.link(sun_obj)
    cam = bpy.data.cameras.new("camera")
    cam.lens = 35
    cam_obj = bpy.data.objects.new("camera", cam)
    scene.collection.objects.link(cam_obj)
    # from the front, 40 degrees round to the character's right, a little from above
    side = Matrix.Rotation(math.radians(-40.0), 3, "Z") @ forward
    eye = centre + Vector((side.x, side.y, 0.35)).normalized() * (1.6 * size + 1.0)
    cam_obj.location = eye
    cam_obj.rotation_euler = (centre - eye).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam_obj


def main() -> None:
    """Import both files, render the requested frames and write the bones' head positions (arguments: see the
    module docstring)."""
    fbx, bvh, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    rate = float(sys.argv[4])
    frames = [int(f) for f in sys.argv[5:]]
    out.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = max(1, round(rate))
    scene.render.fps_base = scene.render.fps / rate
    first = import_file(fbx)
    arms = [first, import_file(bvh, start=int(first_frame(first)))]  # both files' first frame on one scene frame
    scene.frame_set(int(first_frame(arms[0])) + frames[0])
    forward = facing(arms[0])
    arms[1].location += Vector((0.0, 0.0, 1.0)).cross(forward) * 1.3  # beside it, on the character's left
    bpy.context.view_layer.update()
    colour_skinned_meshes(arms[0], (0.6, 0.72, 0.95, 1.0))
    add_capsules(arms[0], (0.15, 0.35, 0.85, 1.0))
    add_capsules(arms[1], (0.9, 0.45, 0.1, 1.0))
    # frame the characters over the chosen frames
    points = []
    lines = []
    for f in frames:
        for k, arm in enumerate(arms):
            scene.frame_set(int(first_frame(arm)) + f)
            for pb in arm.pose.bones:
                p = arm.matrix_world @ pb.head
                points.append(p)
                lines.append(f"{f} {'fbx' if k == 0 else 'bvh'} {pb.name} {p.x:.5f} {p.y:.5f} {p.z:.5f}")
    lo = Vector((min(p.x for p in points), min(p.y for p in points), 0.0))
    hi = Vector((max(p.x for p in points), max(p.y for p in points), max(p.z for p in points)))
    centre = (lo + hi) / 2
    scene_setup(centre, max(hi.x - lo.x, hi.y - lo.y, hi.z - lo.z, 1.0), forward)
    (out / "bones.txt").write_text("\n".join(lines) + "\n")
    for f in frames:
        scene.frame_set(int(first_frame(arms[0])) + f)
        scene.render.filepath = str(out / f"frame_{f:05d}.png")
        bpy.ops.render.render(write_still=True)


if __name__ == "__main__":
    main()
