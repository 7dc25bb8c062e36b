"""A small virtual-studio scene for the silhouette shape fit (tests and benchmarks): a random Anny body performs
the studio's exercises (or turns in an A-pose: the scan), filmed by a studio rig preset at a reduced size;
the true masks come from the studio's renderer (open3d ray casting), cached under .cache/silhouette_scenes/.

Keypoints: the model's own BlazePose-33 keypoints of the true motion with noise and a per-keypoint bias (a
detector places joints where its training put them, not where the model does), so the keypoint-only shape is
off as a real take's is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
from mocap_studio.common.cache import project_cache_dir
from mocap_studio.reconstruction.keypoints import Keypoints3D
from mocap_studio.reconstruction.silhouettes import MaskPacker, MaskSet, downsample_mask, mask_size
from mocap_studio.studio.render import BodyRenderer, region_colours
from mocap_studio.studio.studio import StudioConfig, make_performance, studio_rig


@dataclass
class Scene:
    """What a fit needs and the truth: shape (S,), pose (T, J, 3), trans (T, 3), keypoints, rig, masks."""

    shape: np.ndarray
    pose: np.ndarray
    trans: np.ndarray
    keypoints: Keypoints3D
    rig: object
    masks: MaskSet
    fps: float


def make_scene(body, seed: int, frames: int = 40, fps: float = 15.0, image_scale: float = 0.25,  # noqa: ANN001
               mask_scale: float = 1.0, scan: bool = False, noise_m: float = 0.01, bias_m: float = 0.02,
               rig: str = "ring4") -> Scene:
    """The scene of ``seed`` (body, motion, keypoint noise and bias); masks at ``mask_scale`` of images at
    ``image_scale`` of the rig preset's size."""
    rng = np.random.default_rng(seed)
    shape = body.random_shape(rng)
    cfg = replace(StudioConfig(rig=rig, seed=seed, scale=image_scale, frames=frames, frame_rate=fps, in_sync=True,
                               audio=False, claps=0),
                  motions=("scan",) if scan else ("squat", "arm_circles"), seconds=frames / fps)
    srig = studio_rig(cfg)
    perf = make_performance(body, shape, cfg, srig)
    times = np.arange(frames) / fps
    pose, trans = perf.sample(times)
    out = body.evaluate(shape, pose, trans)
    masks = _cached_masks(body, shape, out.vertices, srig, seed, mask_scale, scan, image_scale, fps)
    clean = body.keypoints(shape, pose, trans, "blazepose33")
    K = clean.shape[1]
    bias = rng.normal(0, bias_m / np.sqrt(3), (K, 3))
    xyz = clean + bias + rng.normal(0, noise_m / np.sqrt(3), clean.shape)
    valid = np.isfinite(xyz).all(-1)
    C = len(srig.rig.names)
    kp = Keypoints3D(xyz, np.where(valid, noise_m, np.nan), np.broadcast_to(valid[..., None], valid.shape + (C,)).copy(),
                     tuple(srig.rig.names), "blazepose33", times)
    return Scene(shape, pose, trans, kp, srig.rig, masks, fps)


def _cached_masks(body, shape, vertices, srig, seed, mask_scale, scan, image_scale, fps) -> MaskSet:  # noqa: ANN001
    # keyed by the meshes themselves too: the same seed renders another motion once the studio's motions change
    # (masks of the old motion were once read back for the new one's keypoints)
    mesh = hashlib.sha1(np.round(np.asarray(vertices, float), 5).tobytes()).hexdigest()[:12]
    key = (f"seed{seed}_T{len(vertices)}_img{image_scale:g}_m{mask_scale:g}_fps{fps:g}{'_scan' if scan else ''}"
           f"_{srig.name}_{mesh}")
    path = project_cache_dir() / "silhouette_scenes" / f"{key}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return MaskSet.load(path)
    colours = region_colours(body.joint_names, body.skinning_weights(), body.rest_mesh(shape))
    cams = srig.rig
    C, T = len(cams.names), len(vertices)
    packer, sizes = None, []
    for c, cam in enumerate(cams):
        renderer = BodyRenderer(cam, body.faces, colours)
        w, h = cam.size
        size = mask_size(w, h, mask_scale)
        sizes.append((w, h))
        packer = packer or MaskPacker((C, T), size)
        for t, v in enumerate(vertices):
            packer.add((c, t), downsample_mask(renderer.render(v)[1], size))
    ms = MaskSet(tuple(cams.names), packer.build(), np.ones((C, T), bool), np.tile(np.arange(T) / fps, (C, 1)),
                 mask_scale, np.asarray(sizes))
    ms.save(path)
    return ms
