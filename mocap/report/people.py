"""The take report's "People" section for a several-people take (``people.json``): who is who, and one line per
person with a link to that person's own report (``people/<id>/report/index.html``).

The picture of who is who: the frame of the first camera in which the most people are seen, every person's 2D
keypoints drawn over it in a colour of their own with their id at the head, beside a top view of every person's
path over the floor (the middle of the hips, from each person's keypoints3d.npz), in the same colours.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
from mocap_studio.report import html as H
from mocap_studio.session import PersonSession, Session

log = logging.getLogger(__name__)

COLOURS = ((0.12, 0.47, 0.71), (0.84, 0.15, 0.16), (0.17, 0.63, 0.17), (1.0, 0.5, 0.05), (0.58, 0.4, 0.74),
           (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.5, 0.5, 0.5))
"""RGB per person, in id order (repeated past eight)."""


def _bgr(i: int) -> tuple[int, int, int]:
    r, g, b = COLOURS[i % len(COLOURS)]
    return int(255 * b), int(255 * g), int(255 * r)


def _frame_with_people(session: Session, people: tuple[PersonSession, ...]) -> bytes | None:
    """A JPEG of the first camera's frame that shows the most people, their keypoints and ids drawn over it."""
    import cv2
    from mocap_studio.capture.frames import open_frames
    from mocap_studio.reconstruction.keypoints import Keypoints2D

    kps = [Keypoints2D.load(p.keypoints2d_path) for p in people if p.keypoints2d_path.exists()]
    if not kps:
        return None
    camera = kps[0].camera_names[0]
    source = session.performance_sources().get(camera)
    if source is None:
        return None
    seen = np.stack([np.isfinite(k.xy[0]).all(-1).sum(-1) >= 5 for k in kps])  # (N, T)
    frame = int(np.argmax(seen.sum(0)))
    image = next((f.image for f in open_frames(source) if f.index == frame), None)
    if image is None:
        return None
    scale = min(1.0, 960 / image.shape[1])
    image = cv2.resize(image, None, fx=scale, fy=scale) if scale < 1 else image.copy()
    for i, (person, kp) in enumerate(zip(people, kps, strict=True)):
        xy = kp.xy[0, frame] * scale
        good = np.isfinite(xy).all(-1)
        for x, y in xy[good]:
            cv2.circle(image, (int(x), int(y)), 3, _bgr(i), -1, cv2.LINE_AA)
        if good.any():
            top = xy[good][np.argmin(xy[good, 1])]
            cv2.putText(image, person.person_id, (int(top[0]) - 10, max(15, int(top[1]) - 12)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.7, _bgr(i), 2, cv2.LINE_AA)
    from mocap_studio.report.plots import image_jpeg

    return image_jpeg(image)


def _paths(people: tuple[PersonSession, ...]) -> bytes | None:
    """Top view of every person's path (mid-hips over the floor), in the people's colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mocap_studio.reconstruction.keypoints import Keypoints3D
    from mocap_studio.report.plots import _png

    fig, ax = plt.subplots(figsize=(5.0, 5.0))
    drawn = False
    for i, person in enumerate(people):
        if not person.keypoints3d_path.exists():
            continue
        k3 = Keypoints3D.load(person.keypoints3d_path)
        joints = k3.format.joints
        hips = [joints.index(j) for j in ("left_hip", "right_hip") if j in joints]
        if not hips:
            continue
        pts = k3.xyz[:, hips, :2]
        if not np.isfinite(pts).any():
            continue
        counted = np.isfinite(pts).all(-1).sum(1)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            xy = np.where(counted > 0, np.nansum(pts, axis=1) / np.maximum(counted, 1), np.nan)
        ax.plot(xy[:, 0], xy[:, 1], color=COLOURS[i % len(COLOURS)], label=person.person_id)
        first = np.flatnonzero(np.isfinite(xy).all(-1))
        if len(first):
            ax.plot(*xy[first[0]], "o", color=COLOURS[i % len(COLOURS)])
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title("paths over the floor (dot: first frame)")
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def _row(person: PersonSession, listed: dict[str, Any]) -> list[object]:
    tri = person.read_stage_report("triangulate") or {}
    fit = person.read_stage_report("fit") or {}
    figures = tri.get("figures", {})
    height = None
    measurements = person.root / "measurements.json"
    if measurements.exists():
        try:
            height = json.loads(measurements.read_text())["measurements"]["height"]["value"]
        except (json.JSONDecodeError, KeyError, TypeError):
            height = None
    return [person.person_id, listed.get("frames_seen_by_two_cameras"), figures.get("fraction_triangulated"),
            figures.get("mean_reprojection_error_px"), height, "yes" if fit else "no"]


def _link(session: Session, target) -> str:
    """``target``'s address relative to ``session``'s report page (``report/index.html``), with forward slashes."""
    return os.path.relpath(target, session.report_dir).replace(os.sep, "/")


def section_person(session: Session) -> H.Section | None:
    """A person's own report (``people/<id>/report/``): whose it is, with a link back to the take's report; None
    for a take's report."""
    if not isinstance(session, PersonSession):
        return None
    # linked even before the take's page exists: `mocap run` writes the people's pages first, then the take's
    back = f'<a href="{H.esc(_link(session, session.take.report_dir / "index.html"))}">the take\'s report</a>'
    return H.Section("person", f"Person {session.person_id}").add(
        f"<p>Person {H.esc(session.person_id)} of the take {H.esc(str(session.take.root))}, one of the people followed "
        f"over it; who is who, and the others, are in {back}.</p>")


def section_people(session: Session) -> H.Section | None:
    """The People section, or None for a single-performer take (no ``people.json``)."""
    if isinstance(session, PersonSession) or not session.people_path.exists():
        return None
    s = H.Section("people", "People")
    try:
        listed = {p["id"]: p for p in json.loads(session.people_path.read_text())["people"]}
        people = session.people()
    except (ValueError, KeyError, TypeError) as e:
        return s.add(H.error(f"{session.people_path}: {e}"))
    s.add(f"<p>{len(people)} people followed over the take, each reconstructed in a folder of their own "
          "(people/&lt;id&gt;/, with its own report); the take's own results above are the performer's (p0).</p>")
    rows = [_row(p, listed.get(p.person_id, {})) for p in people]
    s.add(H.table(["person", "frames found (2+ cameras)", "joints triangulated", "reprojection error (px)",
                   "height (m)", "body fitted"], rows))
    # the page is report/index.html: a person's own report is ../people/<id>/report/index.html from it
    links = [f'<a href="{H.esc(_link(session, p.report_dir / "index.html"))}">{H.esc(p.person_id)}</a>'
             for p in people if (p.report_dir / "index.html").exists()]
    if links:
        s.add(f"<p>Each person's own report: {', '.join(links)}.</p>")
    for part, make in (("who is who", lambda: _frame_with_people(session, people)), ("paths", lambda: _paths(people))):
        try:
            data = make()
        except (OSError, ValueError, RuntimeError) as e:
            log.warning("report: the people's %s picture could not be drawn: %s", part, e)
            s.add(H.error(f"{part}: {e}"))
            continue
        if data is not None:
            mime = "image/jpeg" if part == "who is who" else "image/png"
            s.add(H.image(data, part, f"people-{part.replace(' ', '-')}", mime=mime))
    return s


__all__ = ["COLOURS", "section_people"]
