"""Virtual studio rendering speed: frames per second at 1280x720 (open3d RaycastingScene on the CPU).

Renders the Anny body (27,420 triangles) doing squats in front of a ring4 camera over the textured floor,
and times the per-frame work: the body model's forward pass, the ray cast and shading, and the H.264 encode.
Run: .venv/bin/python benchmarks/bench_render.py [--frames 60] [--supersample 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from mocap_studio.capture.video_writer import VideoWriter  # noqa: E402
from mocap_studio.reconstruction.body.anny_model import AnnyBody  # noqa: E402
from mocap_studio.studio import StudioConfig, load_rig_preset  # noqa: E402
from mocap_studio.studio.render import BodyRenderer, region_colours  # noqa: E402
from mocap_studio.studio.studio import make_performance  # noqa: E402


def main() -> int:
    """Command line: time posing, rendering and encoding ``--frames`` frames of one studio camera."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--supersample", type=int, default=1)
    args = parser.parse_args()
    rig = load_rig_preset("ring4")
    cam = rig.cameras[0]
    body = AnnyBody()
    shape = body.default_shape()
    config = StudioConfig(seconds=args.frames / cam.frame_rate + 0.1)
    perf = make_performance(body, shape, config, rig)
    times = np.arange(args.frames) / cam.frame_rate
    t0 = time.perf_counter()
    pose, trans = perf.sample(times)
    verts = body.evaluate(shape, pose, trans).vertices
    t_body = time.perf_counter() - t0
    renderer = BodyRenderer(cam.camera, body.faces, region_colours(body.joint_names, body.skinning_weights(),
                                                                    body.rest_mesh(shape)), supersample=args.supersample)
    renderer.render(verts[0])  # warm up
    t_render = t_encode = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        writer = VideoWriter(Path(tmp) / "bench.mp4", cam.frame_rate, crf=14)
        for k, t in enumerate(times):
            t0 = time.perf_counter()
            image, _ = renderer.render(verts[k])
            t1 = time.perf_counter()
            writer.write(image, float(t))
            t_encode += time.perf_counter() - t1
            t_render += t1 - t0
        writer.close()
    n = args.frames
    w, h = cam.camera.size
    print(f"{w}x{h}, supersample {args.supersample}, {n} frames, Anny {len(body.faces)} triangles")
    print(f"  body model (pose sample + forward): {n / t_body:8.1f} frames/s")
    print(f"  ray cast + shading:                 {n / t_render:8.1f} frames/s")
    print(f"  H.264 encode:                       {n / t_encode:8.1f} frames/s")
    print(f"  end to end:                         {n / (t_body + t_render + t_encode):8.1f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
