"""The report's 3D scene: ``report/scene3d.html`` (the animated body, keypoints and cameras, played from disk by a
small WebGL page, see :mod:`mocap_studio.viewer.static`), shown in the report in an ``iframe`` beside the
report's own script-free page, with the command that opens the interactive viewer."""

from __future__ import annotations

import logging
from pathlib import Path

from mocap_studio.report import html as H
from mocap_studio.session import Session

log = logging.getLogger(__name__)

SCENE_FILE = "scene3d.html"
"""The static 3D page's name in report/."""


def scene3d_path(session: Session) -> Path:
    """Where the static 3D page goes."""
    return session.report_dir / SCENE_FILE


def write_scene3d(session: Session) -> tuple[list[str], Path | None]:
    """Write report/scene3d.html when the export holds a skinned, animated GLB; return the report's HTML for it
    (the iframe and links, or a note saying how to get it) and the file written (None if none)."""
    from mocap_studio.viewer.skinned import SkinnedClipError
    from mocap_studio.viewer.static import write_static_scene
    from mocap_studio.viewer.take import body_glb_path, load_take

    viewer = f"<p>Interactive viewer (cameras with their pictures, timeline): <code>mocap view {H.esc(session.root)}</code>" \
             " and open the address it prints.</p>"
    if body_glb_path(session) is None:
        return [H.missing("no animated 3D body: the export wrote no skinned GLB (run `mocap export` with the glb format "
                          "and a rig)"), viewer], None
    path = scene3d_path(session)
    try:
        scene = load_take(session, max_pictures=0)
        write_static_scene(scene, path)
    except (OSError, ValueError, SkinnedClipError) as e:
        log.warning("report: no 3D scene (%s)", e)
        return [H.error(f"the 3D scene could not be written: {e}"), viewer], None
    parts = ["<h3>In 3D</h3>",
             f'<iframe id="scene3d" src="{SCENE_FILE}" title="the take in 3D" loading="eager" '
             'style="width:100%;height:480px;border:1px solid #ccc;border-radius:4px"></iframe>',
             f'<p>The body (the exported avatar), the 3D keypoints coloured by reprojection error and the cameras: drag '
             f'to turn, wheel to zoom. <a href="{SCENE_FILE}">Open on its own page</a>.</p>', viewer]
    return parts, path
