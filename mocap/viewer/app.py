"""The take viewer in viser: cameras with their pictures, 3D keypoints coloured by quality, the skinned body,
the floor, and a timeline to scrub and play.

:class:`TakeViewer` owns a ``viser.ViserServer`` (viser's web client ships built in its wheel: no internet
needed). Its Python API is what the GUI drives: :meth:`TakeViewer.set_frame` (the timeline slider calls it),
:meth:`TakeViewer.play` / :meth:`TakeViewer.pause`, :attr:`TakeViewer.frame`; :meth:`TakeViewer.stop` shuts the
server down.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from mocap_studio.viewer.take import TakeScene, quality_colours
from scipy.spatial.transform import Rotation

BODY_COLOUR = (120, 170, 230)
"""The body mesh's colour (RGB)."""
FRUSTUM_SCALE_M = 0.35
"""Size of the camera frustums (metres from the centre to the picture)."""


def wxyz(rotmat: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) quaternions, scalar first (viser's order)."""
    return Rotation.from_matrix(rotmat).as_quat(scalar_first=True)


def skeleton_segments(xyz: np.ndarray, edges: np.ndarray, error_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bones of one frame as line segments: (S, 2, 3) points and (S, 2, 3) colours, bones with a missing end
    left out. xyz: (J, 3); edges: (E, 2); error_px: (J,)."""
    if len(edges) == 0:
        return np.zeros((0, 2, 3)), np.zeros((0, 2, 3), np.uint8)
    seg = xyz[edges]
    ok = np.isfinite(seg).all(axis=(1, 2))
    colours = quality_colours(error_px)[edges]
    return seg[ok], colours[ok]


def viewpoint(camera_positions: np.ndarray, centre: np.ndarray, distance_m: float = 5.5,
              height_m: float = 2.6) -> np.ndarray:
    """Where the viewer starts: ``distance_m`` from ``centre`` (3,) across the floor, at the azimuth farthest from
    every camera (C, 3) (so no frustum hides the performer), ``height_m`` up."""
    azimuths = np.radians(np.arange(0.0, 360.0, 5.0))
    if len(camera_positions):
        cams = np.arctan2(camera_positions[:, 1] - centre[1], camera_positions[:, 0] - centre[0])
        gap = np.abs(np.angle(np.exp(1j * (azimuths[:, None] - cams[None])))).min(axis=1)
        a = azimuths[int(np.argmax(gap))]
    else:
        a = np.radians(-60.0)
    return np.array([centre[0] + distance_m * np.cos(a), centre[1] + distance_m * np.sin(a), height_m])


class TakeViewer:
    """A take drawn in a viser server (``host``/``port``; port 0 picks a free one)."""

    def __init__(self, scene: TakeScene, host: str = "127.0.0.1", port: int = 8080, *, label: str = ""):
        import viser

        self.scene = scene
        self.server = viser.ViserServer(host=host, port=port, label=label or f"mocap view: {scene.name}", verbose=False)
        self.frame = -1
        self._lock = threading.Lock()
        self._playing = threading.Event()
        self._closed = threading.Event()
        self._player: threading.Thread | None = None
        self._build()
        self.set_frame(self.first_full_frame())

    def first_full_frame(self) -> int:
        """The first frame with (nearly) every joint triangulated, where the viewer opens (0 without keypoints)."""
        if self.scene.xyz is None:
            return 0
        found = np.isfinite(self.scene.xyz).all(axis=-1).sum(axis=1)
        return int(np.argmax(found >= 0.9 * found.max()))

    @property
    def url(self) -> str:
        """Where a browser opens the viewer."""
        host = self.server.get_host()
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.server.get_port()}/"

    def _build(self) -> None:
        s = self.scene
        sv = self.server
        sv.scene.set_up_direction("+z")
        sv.scene.add_grid("/floor", width=8.0, height=8.0, plane="xy", cell_size=0.5, section_size=1.0)
        self._frustums = {}
        self._pictures: dict[str, int] = {}
        for cam in s.cameras:
            self._pictures[cam.name] = cam.picture_index(float(s.times[0]))
            img = cam.image_at(float(s.times[0]))
            self._frustums[cam.name] = sv.scene.add_camera_frustum(
                f"/cameras/{cam.name}", fov=cam.fov_y, aspect=cam.aspect, scale=FRUSTUM_SCALE_M, color=(40, 40, 40),
                image=img, format="jpeg", wxyz=wxyz(cam.rotmat_c2w), position=cam.position, thickness=0.015)
            sv.scene.add_label(f"/cameras/{cam.name}/label", cam.name)
        self._body = None
        if s.body is not None:
            b = s.body
            self._body = sv.scene.add_mesh_skinned(
                "/body", b.vertices.astype(np.float32), b.faces.astype(np.uint32), bone_wxyzs=wxyz(b.bind_rotmat),
                bone_positions=b.bind_position, skin_weights=b.weights.astype(np.float32), color=BODY_COLOUR,
                opacity=0.55)
        self._joints = self._bones = None
        centre = np.zeros(3)
        if s.xyz is not None:
            finite = s.xyz[np.isfinite(s.xyz).all(axis=-1)]
            centre = finite.mean(axis=0) if len(finite) else centre
        position = viewpoint(np.array([c.position for c in s.cameras]).reshape(-1, 3), centre)
        sv.initial_camera.look_at = (centre[0], centre[1], 0.9)
        sv.initial_camera.position = tuple(position)
        sv.initial_camera.up = (0.0, 0.0, 1.0)
        self._build_gui()

    def _build_gui(self) -> None:
        s = self.scene
        gui = self.server.gui
        gui.add_markdown(f"**{s.name}**: {s.num_frames} frames, {len(s.cameras)} cameras"
                         + ("".join(f"\n\nnot shown: {m}" for m in s.missing)))
        self.timeline = gui.add_slider("frame", min=0, max=max(s.num_frames - 1, 1), step=1, initial_value=0)
        self.time_text = gui.add_text("time (s)", initial_value=f"{s.times[0]:.3f}", disabled=True)
        self.play_box = gui.add_checkbox("play", initial_value=False)
        self.speed = gui.add_slider("speed", min=0.1, max=2.0, step=0.1, initial_value=1.0)
        self.show_body = gui.add_checkbox("body mesh", initial_value=True)
        self.show_pictures = gui.add_checkbox("camera pictures", initial_value=True)
        gui.add_markdown("joint colours: reprojection error, green <= 3 px, red >= 15 px, grey not triangulated")
        self.timeline.on_update(lambda _: self.set_frame(int(self.timeline.value)))
        self.play_box.on_update(lambda _: self.play() if self.play_box.value else self.pause())

        def toggle_body(_) -> None:
            if self._body is not None:
                self._body.visible = bool(self.show_body.value)

        self.show_body.on_update(toggle_body)
        self.show_pictures.on_update(lambda _: self._update_pictures(self.frame, force=True))

    def _update_pictures(self, frame: int, force: bool = False) -> None:
        t = float(self.scene.times[frame])
        for cam in self.scene.cameras:
            index = cam.picture_index(t) if self.show_pictures.value else -1
            if force or index != self._pictures.get(cam.name, -1):
                self._frustums[cam.name].image = cam.images[index] if index >= 0 else None
                self._pictures[cam.name] = index

    def set_frame(self, frame: int) -> None:
        """Show frame ``frame`` (clipped to the timeline): skeleton, joints, body pose, camera pictures."""
        s = self.scene
        frame = int(np.clip(frame, 0, s.num_frames - 1))
        with self._lock:
            if frame == self.frame:
                return
            self.frame = frame
            if s.xyz is not None:
                xyz, err = s.xyz[frame], s.error_px[frame]
                ok = np.isfinite(xyz).all(axis=1)
                self._joints = self.server.scene.add_point_cloud(
                    "/keypoints/joints", xyz[ok].astype(np.float32), quality_colours(err[ok]), point_size=0.05,
                    point_shape="circle", precision="float32")
                seg, col = skeleton_segments(xyz, s.edges, err)
                self._bones = self.server.scene.add_line_segments("/keypoints/bones", seg, col, thickness=0.03)
            if self._body is not None:
                rot, pos = s.body.joint_poses(frame)
                q = wxyz(rot)
                with self.server.atomic():
                    for j, bone in enumerate(self._body.bones):
                        bone.wxyz = q[j]
                        bone.position = pos[j]
            if self.show_pictures.value:
                self._update_pictures(frame)
            self.time_text.value = f"{s.times[frame]:.3f}"
        if int(self.timeline.value) != frame:
            self.timeline.value = frame

    def _play_loop(self) -> None:
        s = self.scene
        start_wall, start_t = time.perf_counter(), float(s.times[max(self.frame, 0)])
        while self._playing.is_set() and not self._closed.is_set():
            t = start_t + (time.perf_counter() - start_wall) * float(self.speed.value)
            if t > s.times[-1]:
                start_wall, start_t, t = time.perf_counter(), float(s.times[0]), float(s.times[0])
            self.set_frame(int(np.clip(np.searchsorted(s.times, t), 0, s.num_frames - 1)))
            time.sleep(1.0 / 30.0)

    def play(self) -> None:
        """Play the take at its own pace (times the speed slider), looping."""
        if self._playing.is_set():
            return
        self._playing.set()
        self._player = threading.Thread(target=self._play_loop, name="mocap-view-play", daemon=True)
        self._player.start()

    def pause(self) -> None:
        """Stop playing (the current frame stays)."""
        self._playing.clear()
        if self._player is not None and self._player is not threading.current_thread():
            self._player.join(timeout=2.0)
        self._player = None

    def stop(self) -> None:
        """Stop playing and shut the server down."""
        self._closed.set()
        self.pause()
        self.server.stop()

    def __enter__(self) -> TakeViewer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
