"""Read an FBX file with ufbx and dump what the export tests compare, as an npz.

Usage: python ufbx_read.py file.fbx out.npz frame_rate n_frames

Runs in its own process: ufbx 0.0.5's Python objects can crash the interpreter when garbage-collected after
their scene, so the tests never hold them. Output keys: joint names, world positions (T, J, 3) in file units
chained from ufbx's evaluated local transforms, world rotations (T, J, 3, 3), settings, the mesh, clusters.
"""

import gc
import os
import sys

import numpy as np
import ufbx


def quat_to_rotmat(q) -> np.ndarray:
    w, x, y, z = q.w, q.x, q.y, q.z
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix(m) -> np.ndarray:
    out = np.eye(4)
    for k, col in enumerate((m.c0, m.c1, m.c2, m.c3)):
        out[:3, k] = tuple(col)
    return out


def main() -> None:
    gc.disable()  # the cyclic collector crashes on ufbx 0.0.5 wrappers; this process is short-lived
    path, out_path, frame_rate, n_frames = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    scene = ufbx.load_file(path)
    # ufbx 0.0.5 wrappers must outlive their use: take the animation first, then keep every node wrapper
    anim = scene.anim_stacks[0].anim
    all_nodes = list(scene.nodes)
    bones = [n for n in all_nodes if n.attrib_type == ufbx.ElementType.BONE]
    names = [n.name for n in bones]
    pos = np.zeros((n_frames, len(bones), 3))
    rot = np.zeros((n_frames, len(bones), 3, 3))
    for t in range(n_frames):
        cache = {}

        def world(node, t=t, cache=cache):
            if node.element_id not in cache:
                tr = ufbx.evaluate_transform(anim, node, t / frame_rate)
                r, p = quat_to_rotmat(tr.rotation), np.array(tuple(tr.translation))
                parent = node.parent
                if parent is not None and not parent.is_root:
                    pr, pp = world(parent)
                    r, p = pr @ r, pp + pr @ p
                cache[node.element_id] = (r, p)
            return cache[node.element_id]

        for j, node in enumerate(bones):
            rot[t, j], pos[t, j] = world(node)
    data = {
        "names": np.array(names),
        "positions": pos,
        "rotations": rot,
        "unit_meters": scene.settings.unit_meters,
        "up_axis": int(scene.settings.axes.up),
        "frames_per_second": scene.settings.frames_per_second,
        "num_anim_stacks": len(scene.anim_stacks),
        "num_bind_poses": sum(1 for p in scene.poses if p.is_bind_pose),
    }
    meshes = list(scene.meshes)
    if meshes:
        mesh = meshes[0]
        data["mesh_vertices"] = np.array([tuple(v) for v in mesh.vertices])
        data["mesh_num_triangles"] = mesh.num_triangles
        data["num_skin_deformers"] = len(mesh.skin_deformers)
        if len(mesh.skin_deformers):
            deformers = list(mesh.skin_deformers)
            clusters = list(deformers[0].clusters)
            data["cluster_bones"] = np.array([c.bone_node.name for c in clusters])
            data["cluster_geometry_to_bone"] = np.array([matrix(c.geometry_to_bone) for c in clusters])
            weights = np.zeros((len(mesh.vertices), len(clusters)))
            for k, c in enumerate(clusters):
                weights[np.array(list(c.vertices), int), k] = np.array(list(c.weights))
            data["cluster_weights"] = weights
    np.savez(out_path, **data)
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (see the module docstring)


if __name__ == "__main__":
    main()
