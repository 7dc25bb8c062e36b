"""``mocap view SESSION``: an interactive 3D view of a finished take in the browser (served locally by viser)."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mocap view``."""
    p = sub.add_parser(
        "view", help="interactive 3D view of a take in the browser: cameras, 3D keypoints, body mesh, timeline",
        description="Serve an interactive 3D view of a finished take on this machine (no internet needed: viser's "
        "web client ships in its Python package): the cameras as frustums with their video frames, the 3D keypoints "
        "coloured by their reprojection error, the fitted body mesh (the export's skinned GLB) animated, the floor, "
        "and a timeline to scrub and play. Open the printed address in a browser; Ctrl-C stops the server.",
    )
    p.add_argument("session", help="session folder (needs calibration.toml; keypoints3d.npz and the export's GLB "
                   "are shown when present)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only; "
                   "0.0.0.0 for the network)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--pictures", type=int, default=24, help="video frames kept per camera for the frustums (default 24, "
                   "0 for none)")
    p.add_argument("--play", action="store_true", help="start playing at once")
    p.add_argument("--seconds", type=float, default=None, help="stop serving after this many seconds (default: "
                   "until Ctrl-C)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mocap view``."""
    from mocap_studio.viewer.app import TakeViewer
    from mocap_studio.viewer.take import load_take

    if args.pictures < 0:
        raise ValueError(f"--pictures must be 0 or more, got {args.pictures}")
    scene = load_take(args.session, max_pictures=args.pictures)
    viewer = TakeViewer(scene, host=args.host, port=args.port)
    try:
        print(f"mocap view: {scene.name} ({scene.num_frames} frames) at {viewer.url}  (Ctrl-C to stop)", flush=True)
        for m in scene.missing:
            print(f"  not shown: {m}")
        if args.play:
            viewer.play_box.value = True
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        viewer.stop()
    return 0
