"""The detect stage's masks (masks.npz) against a virtual-studio take's true ones (truth/masks.npz): IoU per camera
(median and 5th percentile over the frames where both have a mask), frames the detector missed, the file size.

Run: ``.venv/bin/python benchmarks/bench_masks.py SESSION [SESSION ...]`` (takes made by ``mocap synth``, then
``mocap detect``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from mocap_studio.reconstruction.silhouettes import MaskSet, downsample_mask, mask_iou


def compare(session: Path) -> dict[str, dict[str, float]]:
    """Per camera: IoU median and p5 (at the coarser of the two masks' sizes), the share of true-mask frames without
    a detected mask, and the bytes per mask."""
    found = MaskSet.load(session / "masks.npz")
    truth = MaskSet.load(session / "truth" / "masks.npz")
    out = {}
    for c, name in enumerate(truth.cameras):
        if name not in found.cameras:
            continue
        f = found.camera_index(name)
        rows = found.nearest_frames(name, truth.frame_times[c])
        ious, missed = [], 0
        for t in np.flatnonzero(truth.present[c]):
            i = rows[t]
            if i < 0 or not found.present[f, i]:
                missed += 1
                continue
            size = min(truth.size, found.size)  # compared at the coarser of the two
            ious.append(mask_iou(downsample_mask(found.mask(f, i), size), downsample_mask(truth.mask(c, t), size)))
        out[name] = {"iou_median": float(np.median(ious)) if ious else float("nan"),
                     "iou_p5": float(np.percentile(ious, 5)) if ious else float("nan"),
                     "missed": missed / max(int(truth.present[c].sum()), 1)}
    size = (session / "masks.npz").stat().st_size
    out["file"] = {"bytes_per_mask": size / max(int(found.present.sum()), 1), "size": list(found.size)}
    return out


def main() -> None:
    """Command line: one line per session and camera."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", type=Path, nargs="+")
    args = ap.parse_args()
    for s in args.sessions:
        res = compare(s)
        file = res.pop("file")
        for cam, r in res.items():
            print(f"{s.name} {cam}: IoU median {r['iou_median']:.3f}, p5 {r['iou_p5']:.3f}, missed {100 * r['missed']:.1f} %")
        print(f"{s.name}: masks {file['size'][1]}x{file['size'][0]}, {file['bytes_per_mask']:.0f} bytes per mask in masks.npz")


if __name__ == "__main__":
    main()
