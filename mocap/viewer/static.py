"""The take's 3D scene as one static page that plays in a browser from disk (``file://``), no server, no network.

:func:`write_static_scene` writes ``report/scene3d.html``: the body mesh (the export's skinned GLB, as the viewer
reads it), the 3D keypoints coloured by quality, the cameras and the floor, with play / pause, a timeline and an
orbiting camera. Everything the page needs is inside it: the scene as base64 arrays in a JSON block and a small
WebGL2 player (linear blend skinning on the CPU, about 1 ms a frame for a 14k-vertex body). The take report shows
it in an ``iframe`` beside its own (script-free) page.

The page exposes ``window.scene3d``: ``setTime(seconds)``, ``play()``, ``pause()``, and ``frame`` / ``time`` /
``drawn`` (frames drawn) for tests.
"""

from __future__ import annotations

import base64
import json
from importlib import resources
from pathlib import Path

import numpy as np
from mocap_studio.common.fileio import atomic_path
from mocap_studio.viewer.take import TakeScene, quality_colours

PAGE_TEMPLATE = "scene3d.html"
"""The page (HTML, CSS and the WebGL2 player), shipped beside this module; ``__DATA__`` takes the scene."""
INFLUENCES = 4
"""Joint influences per vertex kept in the page (glTF's limit)."""


def _b64(arr: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype=dtype).tobytes()).decode("ascii")


def frustum_corners(cam, depth_m: float = 0.35) -> np.ndarray:  # noqa: ANN001 - a CameraView
    """(4, 3) world corners of a camera's picture plane ``depth_m`` in front of it (OpenCV axes: z forward)."""
    half_h = np.tan(cam.fov_y / 2.0) * depth_m
    half_w = half_h * cam.aspect
    local = np.array([[-half_w, -half_h, depth_m], [half_w, -half_h, depth_m], [half_w, half_h, depth_m],
                      [-half_w, half_h, depth_m]])
    return local @ cam.rotmat_c2w.T + cam.position


def scene_payload(scene: TakeScene) -> dict:
    """The page's data: plain JSON with base64 little-endian arrays."""
    T = scene.num_frames
    data: dict = {"name": scene.name, "times": np.round(scene.times, 5).tolist(), "missing": list(scene.missing)}
    centre = np.array([0.0, 0.0, 0.9])
    if scene.xyz is not None:
        xyz = np.asarray(scene.xyz, dtype=float)
        finite = xyz[np.isfinite(xyz).all(axis=-1)]
        if len(finite):
            centre = np.array([*finite[:, :2].mean(axis=0), 0.9])
        data["keypoints"] = {"joints": xyz.shape[1], "xyz": _b64(xyz, "<f4"),
                             "colours": _b64(quality_colours(scene.error_px), "u1"),
                             "edges": np.asarray(scene.edges, dtype=int).tolist()}
    if scene.body is not None:
        b = scene.body
        top = np.argsort(-b.weights, axis=1)[:, :INFLUENCES]
        w = np.take_along_axis(b.weights, top, axis=1)
        w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
        skin = np.empty((T, len(b.parents), 3, 4), dtype=np.float32)
        inv_rot = np.transpose(b.bind_rotmat, (0, 2, 1))
        for f in range(T):
            g_rot, g_pos = b.joint_poses(min(f, b.num_frames - 1))
            s_rot = g_rot @ inv_rot
            skin[f, :, :, :3] = s_rot
            skin[f, :, :, 3] = g_pos - np.einsum("bij,bj->bi", s_rot, b.bind_position)
        data["body"] = {"vertices": _b64(b.vertices, "<f4"), "faces": _b64(b.faces, "<u4"),
                        "joints": _b64(top, "<u2"), "weights": _b64(w, "<f4"), "bones": len(b.parents),
                        "skin": _b64(skin, "<f4")}
    data["cameras"] = [{"name": c.name, "position": np.round(c.position, 4).tolist(),
                        "corners": np.round(frustum_corners(c), 4).tolist()} for c in scene.cameras]
    data["centre"] = centre.round(4).tolist()
    return data


def static_scene_html(scene: TakeScene) -> str:
    """The whole page as text."""
    payload = json.dumps(scene_payload(scene), separators=(",", ":")).replace("</", "<\\/")
    template = (resources.files("mocap_studio.viewer") / PAGE_TEMPLATE).read_text(encoding="utf-8")
    return template.replace("__TITLE__", f"3D: {scene.name}").replace("__DATA__", payload)


def write_static_scene(scene: TakeScene, path: str | Path) -> Path:
    """Write the static 3D page to ``path`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(static_scene_html(scene), encoding="utf-8")
    return path
