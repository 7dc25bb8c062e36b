"""The live preview in the viewer: the cameras with their newest frames and 2D keypoints, the 3D skeleton as it
is triangulated, and the frame rates and latency (``mocap live``)."""

from __future__ import annotations

import threading
import time

import numpy as np
from mocap_studio.calibration.camera import CameraRig
from mocap_studio.capture.frames import Frame
from mocap_studio.viewer.app import FRUSTUM_SCALE_M, skeleton_segments, viewpoint, wxyz
from mocap_studio.viewer.live import Detection, LivePipeline, Skeleton
from mocap_studio.viewer.take import camera_views, quality_colours

PICTURE_WIDTH = 192
"""Width (px) of the camera pictures sent to the viewer."""
PICTURE_HZ = 4.0
"""How often each camera's picture (with its 2D keypoints drawn) is refreshed."""


class LiveViewer:
    """A viser server showing a :class:`LivePipeline` (wire :meth:`on_detection` and :meth:`on_skeleton` into it)."""

    def __init__(self, rig: CameraRig, cameras: list[str], skeleton: str = "blazepose33", host: str = "127.0.0.1",
                 port: int = 8080):
        import viser
        from mocap_studio.reconstruction.skeletons import get_format

        fmt = get_format(skeleton)
        self.edges = np.array([(p, j) for j, p in enumerate(fmt.parents) if p >= 0], dtype=int)
        self.server = viser.ViserServer(host=host, port=port, label="mocap live", verbose=False)
        sv = self.server
        sv.scene.set_up_direction("+z")
        sv.scene.add_grid("/floor", width=8.0, height=8.0, plane="xy", cell_size=0.5, section_size=1.0)
        self.views = {v.name: v for v in camera_views(rig) if v.name in cameras}
        self.frustums = {}
        for name, v in self.views.items():
            self.frustums[name] = sv.scene.add_camera_frustum(
                f"/cameras/{name}", fov=v.fov_y, aspect=v.aspect, scale=FRUSTUM_SCALE_M, color=(40, 40, 40),
                wxyz=wxyz(v.rotmat_c2w), position=v.position, thickness=0.015)
            sv.scene.add_label(f"/cameras/{name}/label", name)
        sv.initial_camera.position = tuple(viewpoint(np.array([v.position for v in self.views.values()]), np.zeros(3)))
        sv.initial_camera.look_at = (0.0, 0.0, 0.9)
        sv.initial_camera.up = (0.0, 0.0, 1.0)
        self.status = sv.gui.add_markdown("waiting for frames")
        self.show_pictures = sv.gui.add_checkbox("camera pictures", initial_value=True)
        self._picture_due = {c: 0.0 for c in cameras}
        self._lock = threading.Lock()
        self._status_due = 0.0
        self.pipeline: LivePipeline | None = None
        self.updates = 0

    @property
    def url(self) -> str:
        """Where a browser opens the preview."""
        host = self.server.get_host()
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.server.get_port()}/"

    def on_detection(self, det: Detection, frame: Frame) -> None:
        """Show the camera's frame with its 2D keypoints (at most :data:`PICTURE_HZ` a second)."""
        import cv2

        now = time.monotonic()
        if not self.show_pictures.value or now < self._picture_due.get(det.camera, np.inf):
            return
        self._picture_due[det.camera] = now + 1.0 / PICTURE_HZ
        img = frame.image
        scale = PICTURE_WIDTH / img.shape[1]
        small = cv2.resize(img, (PICTURE_WIDTH, max(1, round(img.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        uv = det.xy * scale
        for a, b in self.edges:
            if np.isfinite(uv[[a, b]]).all() and min(det.confidence[a], det.confidence[b]) > 0.3:
                cv2.line(small, tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int)), (0, 220, 255), 1,
                         cv2.LINE_AA)
        self.frustums[det.camera].image = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)

    def on_skeleton(self, sk: Skeleton) -> None:
        """Draw the 3D skeleton; refresh the figures twice a second."""
        ok = np.isfinite(sk.xyz).all(axis=1)
        with self._lock:
            with self.server.atomic():
                self.server.scene.add_point_cloud("/live/joints", sk.xyz[ok].astype(np.float32),
                                                  quality_colours(sk.error_px[ok]), point_size=0.05,
                                                  point_shape="circle", precision="float32")
                seg, col = skeleton_segments(sk.xyz, self.edges, sk.error_px)
                self.server.scene.add_line_segments("/live/bones", seg, col, thickness=0.03)
            self.updates += 1
            now = time.monotonic()
            if self.pipeline is not None and now >= self._status_due:
                self._status_due = now + 0.5
                self.status.content = status_text(self.pipeline.figures())

    def stop(self) -> None:
        """Shut the server down."""
        self.server.stop()


def status_text(figures: dict) -> str:
    """The preview's figures as markdown."""
    lines = [f"**{c}**: {f['fps']:.1f} frames/s detected of {f['frames']} delivered" for c, f in figures["cameras"].items()]
    lat = figures.get("latency_ms")
    if lat:
        lines.append(f"latency (frame time stamp to 3D on screen): median {lat['median']:.0f} ms, 90 % {lat['p90']:.0f} ms")
    return "\n\n".join(lines)

