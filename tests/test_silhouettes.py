"""Silhouettes: the masks file, distance fields, MediaPipe's masks against the virtual studio's true ones, and the
shape fit with silhouettes against the truth (benchmarks/silhouette_scene.py's scenes, masks cached under .cache)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mocap_studio.reconstruction.body.anny_model import AnnyBody
from mocap_studio.reconstruction.body.fit_silhouette import (
    NEAR_OUTLINE_PX,
    SilhouetteInput,
    SilhouetteTerm,
    pick_frames,
    surface_sample,
)
from mocap_studio.reconstruction.body.fitting import FitConfig, fit_sequence
from mocap_studio.reconstruction.body.io import vertex_normals
from mocap_studio.reconstruction.body.measurements import MEASUREMENT_NAMES, measure_body
from mocap_studio.reconstruction.body.uncertainty import measurement_uncertainty, restart_valleys, valley_spread
from mocap_studio.reconstruction.silhouettes import (
    MEDIAPIPE_OUTLINE_ALLOWANCE_PX,
    OUTLINE_PARTS,
    MaskError,
    MaskPacker,
    MaskSet,
    contour_distance,
    contour_points,
    downsample_mask,
    edge_points,
    image_to_mask,
    mask_iou,
    outline_offset,
    outside_distance,
    unblurred_contour,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from silhouette_scene import make_scene  # noqa: E402

GIRTHS = ("chest_circumference", "waist_circumference", "hip_circumference", "thigh_circumference", "neck_circumference")


@pytest.fixture(scope="module")
def anny() -> AnnyBody:
    torch.set_num_threads(1)
    return AnnyBody()


def _disk(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return (x - cx) ** 2 + (y - cy) ** 2 <= r**2


def test_masks_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    masks = np.zeros((2, 3, 37, 53), bool)
    masks[..., 5:30, 11:40] = rng.random((2, 3, 25, 29)) > 0.5  # box widths and areas not multiples of 8
    masks[1, 2] = False
    masks[1, 2, 36, 52] = True  # a one-pixel mask in the corner
    present = np.array([[True, False, True], [True, True, True]])
    masks[0, 1] = False
    times = np.array([[0.0, 0.1, 0.2], [0.05, 0.15, 0.25]])
    allowance = (-0.1, 0.0, 0.05, 0.1, 4.0, 0.0, -0.05, 0.25)
    ms = MaskSet.from_masks(("cam_1", "cam_2"), masks, present, times, 0.25, np.array([[212, 148], [212, 148]]), 0.006,
                            allowance)
    path = ms.save(tmp_path / "masks.npz")
    back = MaskSet.load(path)
    assert back.cameras == ms.cameras and back.scale == 0.25 and back.size == (37, 53) and back.blur == 0.006
    assert back.outline_allowance == allowance
    for c, t in np.ndindex(2, 3):
        assert np.array_equal(back.mask(c, t), masks[c, t]), (c, t)
    assert np.array_equal(back.present, present)
    assert back.nonempty.tolist() == [[True, False, True], [True, True, True]]
    assert back.packed.boxes[1, 2].tolist() == [52, 36, 53, 37] and back.packed.boxes[0, 1].tolist() == [0, 0, 0, 0]
    assert path.stat().st_size < masks.size / 8 + 4000  # bit-packed
    assert back.nearest_frames("cam_2", np.array([0.04, 0.16, 0.5])).tolist() == [0, 1, -1]
    with pytest.raises(MaskError, match="no masks for camera 'cam_9'"):
        back.camera_index("cam_9")
    with pytest.raises(MaskError, match="masks must have shape"):
        MaskSet.from_masks(("a",), masks[0], present, times, 0.25, np.zeros((2, 2)))
    with pytest.raises(MaskError, match="blur must be in"):
        MaskSet.from_masks(("cam_1", "cam_2"), masks, present, times, 0.25, np.zeros((2, 2)), 6.0)  # pixels, not a fraction
    with pytest.raises(MaskError, match="outline_allowance must give 8 values .* head, neck, trunk"):
        MaskSet.from_masks(("cam_1", "cam_2"), masks, present, times, 0.25, np.zeros((2, 2)), 0.006, (0.2, 0.1))
    # exact masks (the studio's truth) carry no allowance
    assert MaskSet.load(MaskSet.from_masks(("cam_1", "cam_2"), masks, present, times, 0.25, np.zeros((2, 2))).save(
        tmp_path / "exact.npz")).outline_allowance == ()
    # written before the allowance was: a blur meant MediaPipe's masks, and they get MediaPipe's allowance
    with np.load(path) as npz:
        data = {k: v for k, v in npz.items() if k != "outline_allowance"}
    np.savez(tmp_path / "older.npz", **data)
    assert MaskSet.load(tmp_path / "older.npz").outline_allowance == MEDIAPIPE_OUTLINE_ALLOWANCE_PX
    np.savez(tmp_path / "older_exact.npz", **{**data, "blur": np.float64(0.0)})
    assert MaskSet.load(tmp_path / "older_exact.npz").outline_allowance == ()
    np.savez(tmp_path / "bad.npz", cameras=np.array(["a"]))
    with pytest.raises(MaskError, match="bad.npz"):
        MaskSet.load(tmp_path / "bad.npz")
    # a box that the bits cannot hold: the file named, and what to do
    with np.load(path) as npz:
        data = dict(npz)
    data["bits"] = data["bits"][:-3]
    np.savez(tmp_path / "short.npz", **data)
    with pytest.raises(MaskError, match="short.npz: mask .* outside the .* bytes.*write it again"):
        MaskSet.load(tmp_path / "short.npz")


def test_masks_written_whole_before_the_boxes_still_load(tmp_path):
    """A masks.npz of the earlier format (every mask whole, bit-packed) reads as the same masks."""
    rng = np.random.default_rng(1)
    masks = rng.random((2, 2, 9, 13)) > 0.7
    bits = np.packbits(masks.reshape(2, 2, -1), axis=-1)
    np.savez(tmp_path / "old.npz", cameras=np.array(["a", "b"]), frame_times=np.zeros((2, 2)),
             present=np.ones((2, 2), bool), size=np.array([9, 13]), scale=np.float64(0.5),
             image_size=np.array([[26, 18], [26, 18]]), bits=bits)
    back = MaskSet.load(tmp_path / "old.npz")
    assert all(np.array_equal(back.mask(c, t), masks[c, t]) for c, t in np.ndindex(2, 2))
    assert back.blur == 0.0 and back.outline_allowance == ()  # written before the blur was: taken as exact


def test_packed_masks_hold_a_person_in_a_fraction_of_the_bytes():
    """A body's mask at 1280x720 kept as its box: the same pixels back, in a fifth of the bytes of the whole mask
    bit-packed (a person in a studio frame covers a tenth to a fifth of it)."""
    mask = np.zeros((720, 1280), bool)
    yy, xx = np.mgrid[:720, :1280]
    mask[((xx - 600) / 110.0) ** 2 + ((yy - 380) / 300.0) ** 2 <= 1] = True  # 221 x 601 px
    packer = MaskPacker((2,), mask.shape)
    packer.add((1,), mask)
    packed = packer.build()
    assert np.array_equal(packed.mask((1,)), mask) and not packed.mask((0,)).any()
    assert packed.nonempty.tolist() == [False, True]
    x0, y0, pixels = packed.crop((1,))
    assert (x0, y0) == (490, 80) and pixels.shape == (601, 221)
    assert packed.nbytes < mask.size / 8 / 5, packed.nbytes
    with pytest.raises(MaskError, match=r"mask \(0,\) has size \(10, 10\), the others \(720, 1280\)"):
        packer.add((0,), np.zeros((10, 10), bool))


def test_outline_and_distances():
    mask = _disk(60, 80, 40.0, 30.0, 20.0)
    edges = edge_points(mask)
    r = np.hypot(edges[:, 0] - 40, edges[:, 1] - 30)
    assert r.min() >= 18.9 and r.max() <= 20.01
    dist = outside_distance(mask)
    assert dist[30, 40] == 0 and abs(dist[30, 70] - 10.0) < 0.6  # 30 px from the centre: 10 px outside
    small = downsample_mask(mask, (30, 40))
    assert mask_iou(small, _disk(30, 40, 19.75, 14.75, 10.0)) > 0.9
    cut = np.zeros((20, 20), bool)
    cut[:, :10] = True  # a body cut by the frame: no outline on the image border
    assert (edge_points(cut)[:, 0] == 9).all()


def test_outline_offset_of_a_mask_too_wide_or_too_narrow():
    """A disc's mask against true circles 0.3 px outside and inside it, and one far off: the mean offset is the
    radius difference within 0.05 px (negative where the mask is wider than the truth), points beyond 3 px NaN."""
    rng = np.random.default_rng(5)
    for shift in (0.3, -0.3):
        got = []
        for _ in range(10):
            cx, cy, r = 40 + rng.random(), 30 + rng.random(), 10 + 8 * rng.random()
            ang = np.linspace(0, 2 * np.pi, 200, endpoint=False)
            circle = np.stack([cx + (r + shift) * np.cos(ang), cy + (r + shift) * np.sin(ang)], 1)
            got.append(np.mean(outline_offset(_disk(60, 80, cx, cy, r), circle)))
        assert np.mean(got) == pytest.approx(shift, abs=0.05), got
    assert np.isnan(outline_offset(_disk(60, 80, 40, 30, 10), np.array([[40.0, 30 + 10 + 5]]))).all()


def test_contour_halfway_between_pixel_centres():
    """Discs at sub-pixel centres and radii, a pixel in where the disc covers its centre: the outline points and the
    signed field's zero lie on the true circle (within 0.05 px on average), where the inside pixels' centres lie
    half a pixel inside it (the convention :func:`contour_distance` corrects)."""
    rng = np.random.default_rng(3)
    mean_contour, mean_centres, zero = [], [], []
    for _ in range(20):
        cx, cy, r = 40 + rng.random(), 30 + rng.random(), 8 + 12 * rng.random()
        mask = _disk(60, 80, cx, cy, r)
        pts = contour_points(mask)
        mean_contour.append(np.hypot(pts[:, 0] - cx, pts[:, 1] - cy).mean() - r)
        edges = edge_points(mask)
        mean_centres.append(np.hypot(edges[:, 0] - cx, edges[:, 1] - cy).mean() - r)
        # the field's zero along 64 rays from the centre (bilinear, as the fit reads it)
        from scipy.ndimage import map_coordinates

        field = contour_distance(mask)
        ang = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        radii = np.linspace(r - 3, r + 3, 601)
        xs, ys = cx + np.cos(ang)[:, None] * radii, cy + np.sin(ang)[:, None] * radii
        vals = map_coordinates(field, [ys.ravel(), xs.ravel()], order=1).reshape(xs.shape)
        zero.append(np.mean([radii[np.flatnonzero(v > 0)[0]] for v in vals]) - r)
    assert abs(np.mean(mean_contour)) < 0.05 and abs(np.mean(zero)) < 0.05, (mean_contour, zero)
    assert np.mean(mean_centres) < -0.4, mean_centres  # the inside centres' outline: half a pixel in
    field = contour_distance(_disk(60, 80, 40.0, 30.0, 20.0))
    assert field[30, 40] == pytest.approx(-19.5, abs=0.6) and field[30, 70] == pytest.approx(9.5, abs=0.6)
    cut = np.zeros((20, 20), bool)
    cut[:, :10] = True  # a body cut by the frame: no outline on the image border
    assert (contour_points(cut)[:, 0] == 9.5).all() and len(contour_points(cut)) == 18


def _silhouette_bias_mm(model, scene, contour: bool, gap: float, noise_rad: float = 0.0,  # noqa: ANN001
                        rim_cos: float = 0.0) -> float:
    """Where the silhouette cost of the true body against its true masks (6 frames x 4 cameras) is least over an
    offset of the surface along its normals (mm; 0: unbiased), in its true poses or with every joint but the root
    turned by ``noise_rad`` of noise (a pose a little off, as the refinement leaves it)."""
    frames = np.linspace(0, scene.pose.shape[0] - 1, 6).round().astype(int)
    cfg = FitConfig(silhouettes=True)
    C = len(scene.masks.cameras)
    pose = scene.pose[frames].copy()
    pose[:, 1:] += np.random.default_rng(0).normal(0, noise_rad, pose[:, 1:].shape)
    ids = surface_sample(model, model.default_shape(), cfg.silhouette_spacing_m)
    term = SilhouetteTerm(model, pose, scene.trans[frames],
                          [[scene.masks.mask(c, t) for c in range(C)] for t in frames], scene.rig, scene.masks.cameras,
                          scene.masks.scale, ids, cfg.silhouette_tau_px, contour)
    gaps = term.gaps(scene.trans[frames], gap * cfg.silhouette_spacing_m)
    verts = model.evaluate(scene.shape, pose, scene.trans[frames]).vertices
    normals = np.stack([vertex_normals(v, np.asarray(model.faces))[ids] for v in verts])
    pts, nt = verts[:, ids], torch.as_tensor(normals)
    eps = np.arange(-8, 8.01, 0.5)
    cost = np.array([float(term.loss_torch(torch.as_tensor(pts + e / 1000 * normals), gaps, nt,
                                           rim_cos)) for e in eps])
    k = int(np.clip(cost.argmin(), 2, len(eps) - 3))
    a, b, _ = np.polyfit(eps[k - 2 : k + 3], cost[k - 2 : k + 3], 2)
    return float(-b / (2 * a))


def test_silhouette_cost_is_least_at_the_true_body(anny):
    """The half-pixel bias, measured: the true body in its true poses against its true masks (held-out seed 31,
    640x360, 8.4 mm a mask pixel at the body, 6 frames). With the outline at the inside pixels' centres the cost is
    least with the surface 2 mm inside the truth (a girth some 13 mm short); on the contour (``silhouette_contour``,
    gap 0.5) within a millimetre of it. Measured: -2.00 mm and +0.73 mm; on tuning seeds 11 and 12 (10 frames)
    -2.47 / -2.24 and -0.02 / +0.35 mm, the gap chosen there."""
    scene = make_scene(anny, 31, frames=20, fps=10.0, image_scale=0.5, mask_scale=1.0)
    assert _silhouette_bias_mm(anny, scene, contour=False, gap=0.25) < -1.5
    assert abs(_silhouette_bias_mm(anny, scene, contour=True, gap=0.5)) < 1.0


def test_rim_keeps_a_body_posed_a_little_off_from_growing(anny):
    """The model -> mask distances of every surface point (most of them inside the mask) against those of the
    model's rim (``silhouette_rim_cos``): the true body with every joint turned by 0.01 rad of noise, against its
    true masks (held-out seed 31). Every point: the cost is least with the surface several millimetres outside the
    truth (a girth some 25 mm too large); the rim: within 1.5 mm, and unbiased in the true poses. Measured: +5.1 and
    +0.5 mm, in the true poses -0.0 mm (tuning seed 11, 10 frames: +4.0 and +0.6 mm)."""
    scene = make_scene(anny, 31, frames=20, fps=10.0, image_scale=0.5, mask_scale=1.0)
    assert _silhouette_bias_mm(anny, scene, contour=True, gap=0.5, noise_rad=0.01) > 2.5
    assert abs(_silhouette_bias_mm(anny, scene, contour=True, gap=0.25, noise_rad=0.01, rim_cos=0.2)) < 1.5
    assert abs(_silhouette_bias_mm(anny, scene, contour=True, gap=0.25, rim_cos=0.2)) < 1.0


def test_batched_distances_match_the_per_view_ones(anny):
    """The refinement's distances, computed for every view at once in torch (:meth:`SilhouetteTerm.distances`), are
    the per-view ones the starts' coarse cost computes in numpy (:meth:`SilhouetteTerm.residuals`: map_coordinates
    and a k-d tree per view) for a body posed a little off its true masks (held-out seed 31, 6 frames x 4 cameras):
    each view's own frame, camera and outline, to a millionth of a mask pixel."""
    scene = make_scene(anny, 31, frames=20, fps=10.0, image_scale=0.5, mask_scale=1.0)
    frames = np.linspace(0, scene.pose.shape[0] - 1, 6).round().astype(int)
    cfg, C = FitConfig(silhouettes=True), len(scene.masks.cameras)
    pose = scene.pose[frames] + np.random.default_rng(1).normal(0, 0.03, scene.pose[frames].shape)
    ids = surface_sample(anny, anny.default_shape(), cfg.silhouette_spacing_m)
    for contour in (False, True):
        term = SilhouetteTerm(anny, pose, scene.trans[frames],
                              [[scene.masks.mask(c, t) if (c + t) % 5 else None for c in range(C)] for t in frames],
                              scene.rig, scene.masks.cameras, scene.masks.scale, ids, cfg.silhouette_tau_px, contour)
        assert term.num_views == sum(1 for t in frames for c in range(C) if (c + t) % 5)  # masks left out: no view
        reference = term.residuals(scene.shape)
        batched, _ = term.distances(torch.as_tensor(term.posed_points(scene.shape)), [0.0] * term.num_views)
        for (d_out, d_in), (ref_out, ref_in) in zip(batched, reference, strict=True):
            inside = d_out.numpy()[d_out.numpy() > 0]
            assert np.allclose(np.sort(inside), np.sort(ref_out[ref_out > 0]), atol=1e-6)
            assert len(d_in) == len(ref_in) and np.allclose(d_in.numpy(), ref_in, atol=1e-6)
        assert sum(float((r[1] < NEAR_OUTLINE_PX).mean()) for r in reference) > 0.5 * term.num_views  # outlines found


def test_the_rim_cost_is_smooth_in_the_pose(anny):
    """The rim (``silhouette_rim_cos``) is a smooth weight in the refinement's cost (``fit_silhouette.rim_weights``):
    the true body (held-out seed 31, 6 frames x 4 cameras) turned 2 degrees about the vertical in 200 steps, points
    and normals, costs a smooth curve (second differences within 4x their median; measured 2x), where the rim taken
    point by point (:meth:`SilhouetteTerm.distances`, as the information matrix holds it) jumps (measured 16x) and
    stalled L-BFGS' line search: take 101 refitted with 0.5 mm of keypoint noise stopped after 245-409 of its 700
    iterations, girths up to 19 mm apart; take 104's two refits now 0.2-1.0 mm apart."""
    from scipy.spatial.transform import Rotation

    scene = make_scene(anny, 31, frames=20, fps=10.0, image_scale=0.5, mask_scale=1.0)
    frames = np.linspace(0, scene.pose.shape[0] - 1, 6).round().astype(int)
    cfg, C = FitConfig(silhouettes=True), len(scene.masks.cameras)
    ids = surface_sample(anny, anny.default_shape(), cfg.silhouette_spacing_m)
    term = SilhouetteTerm(anny, scene.pose[frames], scene.trans[frames],
                          [[scene.masks.mask(c, t) for c in range(C)] for t in frames], scene.rig, scene.masks.cameras,
                          scene.masks.scale, ids, cfg.silhouette_tau_px, True)
    verts = anny.evaluate(scene.shape, scene.pose[frames], scene.trans[frames]).vertices
    pts = verts[:, ids]
    normals = np.stack([vertex_normals(v, np.asarray(anny.faces))[ids] for v in verts])
    gaps = term.gaps(scene.trans[frames], 0.5 * cfg.silhouette_spacing_m)
    tau2, centre = cfg.silhouette_tau_px**2, pts.mean(1, keepdims=True)
    smooth, hard = [], []
    for angle in np.linspace(0.0, np.radians(2.0), 201):
        R = Rotation.from_rotvec([0.0, 0.0, angle]).as_matrix()
        p, n = torch.as_tensor((pts - centre) @ R.T + centre), torch.as_tensor(normals @ R.T)
        smooth.append(float(term.loss_torch(p, gaps, n, 0.2)))
        hard.append(sum(float(torch.log1p(a**2 / tau2).mean() + torch.log1p(b**2 / tau2).mean())
                        for a, b in term.distances(p, gaps, n, 0.2)[0]))
    jumps = {k: float(np.abs(np.diff(v, 2)).max() / np.median(np.abs(np.diff(v, 2))))
             for k, v in (("smooth", smooth), ("hard", hard))}
    assert jumps["smooth"] < 4.0 and jumps["hard"] > 8.0, jumps
    assert np.ptp(smooth) > 0.5  # the turn is seen


def test_pick_frames_every_camera_seeing():
    seen = np.ones((3, 50), bool)
    seen[1, 10:20] = False
    picked = pick_frames(seen, np.ones(50, bool), 8)
    assert len(picked) == 8 and not np.isin(picked, np.arange(10, 20)).any()
    assert picked.min() == 0 and picked.max() == 49


def test_mediapipe_masks_against_the_truth(anny):
    """The detect stage's masks (MediaPipe's pose landmarker's segmentation) against the studio renderer's true
    masks, at half the size of 640x360 images (four cameras, four frames): IoU measured 0.90-0.97; and where their
    edge lies, the mean signed offset of their contour at the true outline (every outline point within 3 px).
    Measured on this scene (seed 11) and on seed 31: -0.074 / -0.063 px at ``mask_threshold`` 0.5 (the masks too
    wide), +0.067 / +0.056 at 0.6, -0.001 / -0.001 at 0.55, the default."""
    from mocap_studio.reconstruction.detect2d import DetectionConfig, PoseLandmarker
    from mocap_studio.studio.render import BodyRenderer, region_colours

    scene = make_scene(anny, 11, frames=40, image_scale=0.5, mask_scale=1.0)
    config = DetectionConfig(num_poses=1, mask_scale=0.5)
    colours = region_colours(anny.joint_names, anny.skinning_weights(), anny.rest_mesh(scene.shape))
    ious, offsets = [], []
    with PoseLandmarker(config, video=False) as landmarker:
        for c, name in enumerate(scene.masks.cameras):
            renderer = BodyRenderer(scene.rig[name], anny.faces, colours)
            for t in (0, 10, 20, 30):
                verts = anny.evaluate(scene.shape, scene.pose[t : t + 1], scene.trans[t : t + 1]).vertices[0]
                image, truth = renderer.render(verts)
                landmarker.detect(image)
                assert landmarker.last_masks is not None
                found = landmarker.last_masks[0]
                ious.append(mask_iou(found, downsample_mask(truth, found.shape)))
                assert mask_iou(downsample_mask(scene.masks.mask(c, t), found.shape), found) > 0.85
                # the true outline, found at the image's size, in the mask's pixels
                offsets.append(outline_offset(found, image_to_mask(contour_points(truth), found.shape[0] / truth.shape[0])))
    assert min(ious) > 0.85 and np.mean(ious) > 0.92, ious
    offset = np.concatenate(offsets)
    assert np.isnan(offset).mean() < 0.02  # the outline within 3 pixels of the mask's edge
    assert abs(np.nanmean(offset)) < 0.035, np.nanmean(offset)


def test_mediapipe_blurs_the_outline_and_the_fit_undoes_it(anny):
    """MediaPipe's full-size masks against the true ones of 1280x720 renders (four cameras, four frames): they match
    the true outline blurred by a Gaussian of ``MEDIAPIPE_MASK_BLUR`` times the person's size and thresholded (the
    sigma that matches best: 0.006 here, 0.0063 on two studio takes), so convex parts of the outline (the head's top,
    hands, the soles) come out inside the true one and concave ones (armpits, crotch) outside: each true contour
    point's offset in MediaPipe's contour field, by how convex the true outline is there (the true mask blurred by
    that sigma, at the point: under 0.45 convex, over 0.55 concave). :func:`unblurred_contour` takes at least a
    fifth of either off (measured here: -0.69 -> -0.49 px and +0.83 -> +0.48 px; on studio take 122 -0.50 -> -0.29
    and +0.51 -> +0.31). And a disk of radius
    30 px blurred (sigma 3 and 5 px) and thresholded: 0.13 / 0.40 px too small, its radius given back to within a
    third of that (first order: measured 0.03 / 0.12 px)."""
    import cv2
    from mocap_studio.reconstruction.detect2d import MEDIAPIPE_MASK_BLUR, DetectionConfig, PoseLandmarker
    from mocap_studio.studio.render import BodyRenderer, region_colours
    from scipy.ndimage import map_coordinates

    disk = _disk(300, 300, 150, 150, 30)
    for sigma in (3.0, 5.0):
        blurred = cv2.GaussianBlur(disk.astype(np.float32), (0, 0), sigma) >= 0.5
        cols = np.flatnonzero(blurred.any(0))
        radius = [np.linalg.norm(unblurred_contour(m, b)[1] - 150, axis=1).mean()
                  for m, b in ((disk, 0.0), (blurred, 0.0), (blurred, sigma / (cols[-1] - cols[0] + 1)))]
        assert radius[0] - radius[1] > 0.1 and abs(radius[2] - radius[0]) < 0.3 * (radius[0] - radius[1]), radius
    field, points = unblurred_contour(disk, 0.0)
    assert np.array_equal(field, contour_distance(disk)) and np.array_equal(points, contour_points(disk))

    scene = make_scene(anny, 11, frames=40, image_scale=1.0, mask_scale=1.0)
    colours = region_colours(anny.joint_names, anny.skinning_weights(), anny.rest_mesh(scene.shape))
    sigmas = np.array([0.0, 0.003, 0.0045, 0.006, 0.0075, 0.009, 0.012])
    mismatch, offsets, convexity = [], [], []
    with PoseLandmarker(DetectionConfig(num_poses=1, mask_scale=1.0, hands=False), video=False) as landmarker:
        for name in scene.masks.cameras:
            renderer = BodyRenderer(scene.rig[name], anny.faces, colours)
            for t in (0, 10, 20, 30):
                verts = anny.evaluate(scene.shape, scene.pose[t : t + 1], scene.trans[t : t + 1]).vertices[0]
                image, truth = renderer.render(verts)
                landmarker.detect(image)
                found = landmarker.last_masks[0]
                rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
                size = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
                assert size > 200, size  # a 1280x720 studio frame
                mismatch.append([((cv2.GaussianBlur(truth.astype(np.float32), (0, 0), s * size) >= 0.5 if s else truth)
                                  ^ found).sum() for s in sigmas])
                at = contour_points(truth)[:, ::-1].T
                offsets.append([-map_coordinates(unblurred_contour(found, b)[0], at, order=1)
                                for b in (0.0, MEDIAPIPE_MASK_BLUR)])  # > 0: the true point inside the mask
                blurred = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), MEDIAPIPE_MASK_BLUR * size)
                convexity.append(map_coordinates(blurred, at, order=1))
    best = sigmas[np.argmin(np.mean(mismatch, 0))]
    assert 0.0045 <= best <= 0.0075, (best, np.mean(mismatch, 0))
    plain, undone = (np.concatenate([o[k] for o in offsets]) for k in (0, 1))
    convexity = np.concatenate(convexity)
    near = (np.abs(plain) < 6) & (np.abs(undone) < 6)  # the masks' stray pieces left out
    convex, concave = near & (convexity < 0.45), near & (convexity > 0.55)
    figures = [float(np.mean(x[part])) for part in (convex, concave) for x in (plain, undone)]
    print("MediaPipe's outline beyond the true one, plain and undone: convex {:.2f} {:.2f} px, concave {:.2f} {:.2f} "
          "px; best sigma {}".format(*figures, best))
    assert figures[0] < -0.2 and figures[2] > 0.2, figures  # convex parts short, concave ones filled
    assert abs(figures[1]) < 0.8 * abs(figures[0]) and abs(figures[3]) < 0.8 * abs(figures[2]), figures


def test_detect_stage_writes_the_performers_masks(tmp_path, anny):
    """``mocap detect`` on two cameras' videos of a studio body: masks.npz holds a mask per camera and frame that
    matches the true one (IoU > 0.85; measured 0.93-0.96)."""
    import cv2
    from mocap_studio.cli import main
    from mocap_studio.session import Session
    from mocap_studio.studio.render import BodyRenderer, region_colours

    scene = make_scene(anny, 11, frames=40, image_scale=0.5, mask_scale=1.0)
    colours = region_colours(anny.joint_names, anny.skinning_weights(), anny.rest_mesh(scene.shape))
    root = tmp_path / "take"
    (root / "videos").mkdir(parents=True)
    frames = (0, 10, 20)
    verts = anny.evaluate(scene.shape, scene.pose[list(frames)], scene.trans[list(frames)]).vertices
    for name in scene.masks.cameras[:2]:
        cam = scene.rig[name]
        renderer = BodyRenderer(cam, anny.faces, colours)
        writer = cv2.VideoWriter(str(root / "videos" / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, cam.size)
        for v in verts:
            writer.write(renderer.render(v)[0])
        writer.release()
    assert main(["detect", str(root), "--workers", "1", "--num-poses", "1"]) == 0
    session = Session(root)
    masks = MaskSet.load(session.masks_path)
    assert masks.cameras == tuple(scene.masks.cameras[:2]) and masks.present.all() and masks.scale == 1.0
    from mocap_studio.reconstruction.detect2d import MEDIAPIPE_MASK_BLUR

    assert masks.blur == MEDIAPIPE_MASK_BLUR  # for the fit to undo
    assert masks.outline_allowance == MEDIAPIPE_OUTLINE_ALLOWANCE_PX  # for the fit to allow for
    assert masks.size == (360, 640)  # the image's own size, each mask kept as its box
    boxes = masks.packed.boxes
    assert np.all((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]) < 0.3 * 360 * 640), boxes
    for c in range(2):
        for i, t in enumerate(frames):
            truth = downsample_mask(scene.masks.mask(c, t), masks.size)
            assert mask_iou(masks.mask(c, i), truth) > 0.85
    assert session.read_stage_report("detect")["figures"]["masks"]["frames_with_mask"][masks.cameras[0]] == 1.0


def _girth_errors(model, truth: np.ndarray, shape: np.ndarray) -> dict:  # noqa: ANN001
    mt, mf = measure_body(model, truth), measure_body(model, shape)
    out = {g: 1000 * abs(getattr(mf, g) - getattr(mt, g)) for g in GIRTHS}
    out["height"] = 1000 * abs(mf.height - mt.height)
    return out


@pytest.fixture(scope="module")
def silhouette_fit(anny) -> dict:
    """A held-out body (seed 31) at half ring4's size (640x360 images, the masks at their full size as the detect
    stage keeps them), 20 frames, keypoints with 10 mm noise and a 20 mm bias each; the shape fitted with 6 frames'
    silhouettes (the default settings) and without. (At 320x180 masks, 16 mm a pixel, the chest came out 36 mm
    off.)"""
    scene = make_scene(anny, 31, frames=20, fps=10.0, image_scale=0.5, mask_scale=1.0)
    cfg = FitConfig(silhouettes=True, silhouette_frames=6)
    kp_only = fit_sequence(anny, scene.keypoints, FitConfig(silhouettes=False), frame_rate=scene.fps)
    sil = SilhouetteInput(scene.rig, scene.masks, np.tile(np.arange(20), (len(scene.masks.cameras), 1)))
    calls: list = []
    with recorded_progress() as made:
        with_sil = fit_sequence(anny, scene.keypoints, cfg, frame_rate=scene.fps, silhouettes=sil,
                                progress=lambda label, done, total: calls.append((label, done, total)))
    info = np.asarray(with_sil.figures["silhouettes"]["shape_information"])
    valleys = restart_valleys(with_sil.figures["silhouettes"]["restarts"])
    sigma = {name: measurement_uncertainty(anny, with_sil.shape, with_sil.pose_rotvec, with_sil.trans, scene.keypoints.xyz,
                                           scene.keypoints.skeleton, silhouette_info=extra, valleys=v).sigma
             for name, extra, v in (("keypoints", None, None), ("silhouettes", info, None), ("valleys", info, valleys))}
    return {"keypoints": _girth_errors(anny, scene.shape, kp_only.shape),
            "silhouettes": _girth_errors(anny, scene.shape, with_sil.shape), "figures": with_sil.figures["silhouettes"],
            "information": info, "sigma": sigma,
            "error": measure_body(anny, with_sil.shape).as_array() - measure_body(anny, scene.shape).as_array(),
            "progress": calls, "work": made, "shape": with_sil.shape, "valleys": valleys, "model": anny}


@contextlib.contextmanager
def recorded_progress():  # noqa: ANN201 - yields the list of the fits' progress objects
    """Every :class:`ShapeFitProgress` a fit makes within the block, kept, each saying how far it is at every loss
    evaluation (``every_s`` 0) instead of every 10 s."""
    from mocap_studio.reconstruction.body import fit_silhouette

    made: list = []
    original = fit_silhouette.ShapeFitProgress

    class Recorded(original):  # type: ignore[misc, valid-type]
        def __init__(self, total: float, progress=None, every_s=None) -> None:  # noqa: ANN001
            super().__init__(total, progress, every_s=0.0)
            made.append(self)

    fit_silhouette.ShapeFitProgress = Recorded  # type: ignore[misc]
    try:
        yield made
    finally:
        fit_silhouette.ShapeFitProgress = original  # type: ignore[misc]


def test_the_shape_fit_says_how_far_it_is(silhouette_fit):
    """The shape fit's minutes are never silent: each round of the starts' race and the winner's run is announced,
    the share done only grows and ends at the whole, and it moves on inside the winner's one long L-BFGS run (its
    evaluations counted). The planned work (frame-iterations, from the halving's plan) is exactly what ran: 26 starts
    raced on 4 frames in rounds of 26, 7, 4, 2 and 1, the winner's 400 iterations on all 6, then the four restarts
    and the winner 150 iterations each on all 6, and the lowest 300 more."""
    (work,) = silhouette_fit["work"]
    assert work.done == work.total == (26 + 7 + 4 + 2 + 1) * 20 * 4 + 400 * 6 + 5 * 150 * 6 + 300 * 6
    calls = silhouette_fit["progress"]
    done = [d for _, d, _ in calls]
    assert all(t == 100 for _, _, t in calls) and done[0] == 0 and done[-1] == 100
    assert all(b >= a for a, b in zip(done[:-1], done[1:], strict=True))
    phases = list(dict.fromkeys(label for label, _, _ in calls))
    assert [p for p in phases if "round" in p] == [
        f"fit: shape from silhouettes (race on 4 frames, round {k}/5: {n} start{'s' if n > 1 else ''})"
        for k, n in enumerate((26, 7, 4, 2, 1), 1)]
    winner = [d for label, d, _ in calls if "the winner's 400 iterations on 6 frames" in label]
    assert len(set(winner)) >= 10, winner  # it moved on inside the run
    assert any(p.endswith("(4 restarts and the winner, 150 iterations each on 6 frames)") for p in phases), phases
    assert any(p.endswith("(the lowest's 300 further iterations on 6 frames)") for p in phases), phases
    assert phases[0].endswith("(posing 26 starts on 4 frames)") and phases[-1].endswith("(what the silhouettes tell the sigmas)")


def test_silhouettes_tell_the_girths(silhouette_fit):
    # (stop 42: these exact masks no longer get the feet's 0.25 px allowance, MediaPipe's masks their own; the test
    # still passes, the figures below are stop 41's)
    # measured with the defaults (the contour, the rim, keypoint offsets, 26 starts spread over the phenotypes, the
    # frames started from coherent poses, the restarts: the winner went on, 2962 against 3206-3406, and ran 300 more
    # to 2892): worst girth 11.3 mm (waist; chest 2.1, hip 7.0, thigh 3.4, neck 2.1), height 0.8 mm, against the
    # keypoints alone 61.6 mm (waist) and 25.7 mm. Before the 300 further iterations (stop 40): waist 11.9, chest 2.6,
    # hip 7.0, thigh 3.8, neck 2.2, height 1.5 mm. Before the restarts: waist 12.0, chest 0.6, hip 8.0, thigh 2.6, neck
    # 1.9, height 2.3 mm.
    # From the average body's frame-by-frame
    # poses (before stop 39): waist 13.2, chest 0.7, hip 9.3, thigh 5.0, neck 2.0, height 0.5 mm; there 50 starts with
    # two finalists raced on all 6 frames (``silhouette_finalists``) ended at the same shape (1864 against 3745 after
    # 120 iterations, 1220 at the end).
    # Ten ranked random starts (stop 33): waist 15.6, hip 12.4, height 2.2 mm.
    # The defaults before stop 32 (no contour, rim or offsets, four starts): chest 14.4, hip 4.9, height 7.3 mm
    kp, sil = silhouette_fit["keypoints"], silhouette_fit["silhouettes"]
    worst_kp, worst_sil = max(kp[g] for g in GIRTHS), max(sil[g] for g in GIRTHS)
    assert silhouette_fit["figures"]["views"] == 24
    assert silhouette_fit["figures"]["final_rounds"] == []  # the halving's winner alone went on (the default)
    assert worst_sil < 0.5 * worst_kp, silhouette_fit
    assert worst_sil <= BOUND_GIRTH_MM and sil["height"] <= BOUND_HEIGHT_MM, silhouette_fit


def test_the_lowest_of_the_restarts_goes_on(silhouette_fit):
    """``silhouette_restarts``: the winner and a restart 5 sigmas each way along the two weakest directions of the
    silhouettes' information ran on, and the lowest loss's went on (``silhouette_restart_finish``) to the fit's shape,
    lower still."""
    rs, figures = silhouette_fit["figures"]["restarts"], silhouette_fit["figures"]
    assert [(r["direction"], r["sigmas"]) for r in rs] == [(None, 0.0), (0, 5.0), (0, -5.0), (1, 5.0), (1, -5.0)]
    assert all(np.isfinite(r["loss"]) for r in rs) and sum(r["won"] for r in rs) == 1
    won = next(r for r in rs if r["won"])
    assert won["loss"] == min(r["loss"] for r in rs) and figures["restart_finish"] == 300
    assert figures["loss"] < won["loss"], (figures["loss"], won["loss"])
    # it went on from the lowest's shape: nearer to it than to any other run's
    gaps = [np.abs(np.asarray(r["shape"]) - silhouette_fit["shape"]).max() for r in rs]
    assert int(np.argmin(gaps)) == rs.index(won), gaps
    assert all(r["start"] != rs[0]["start"] for r in rs[1:])  # each moved off the winner
    with pytest.raises(ValueError, match="silhouette_restarts"):
        FitConfig(silhouette_restarts=-1)
    with pytest.raises(ValueError, match="silhouette_restart_finish"):
        FitConfig(silhouette_restart_finish=-1)


def test_silhouettes_narrow_the_measurements_sigmas(silhouette_fit):
    """What the silhouettes told the shape fit enters the measurements' sigmas (Gauss-Newton information, poses
    eliminated, over uncertainty.SILHOUETTE_INFORMATION_SCALE), and the narrower sigmas still cover the errors."""
    info = silhouette_fit["information"]
    assert info.shape == (6, 6) and np.allclose(info, info.T)
    assert np.linalg.eigvalsh(info).min() >= -1e-9 * np.abs(info).max() and np.trace(info) > 0
    kp, sil, err = silhouette_fit["sigma"]["keypoints"], silhouette_fit["sigma"]["silhouettes"], silhouette_fit["error"]
    girths = [MEASUREMENT_NAMES.index(g) for g in GIRTHS]
    # measured: chest, waist, hip, thigh, neck sigma 20.5, 19.2, 23.3, 19.1, 4.6 mm against 38.7, 37.9, 43.8, 33.9,
    # 11.1 from the keypoints alone (0.41-0.56 of them); all 10 errors within one sigma (the largest: waist 11.3 /
    # 19.2 mm); with the valleys 20.7, 19.4, 24.0, 19.4, 4.9 mm, all 10 within. Before the 300 further iterations
    # (stop 40): 16.0, 16.1, 20.9, 17.4, 3.6 mm against 41.8, 39.0, 45.0, 37.0, 11.3, all 10 within (waist 11.9 / 16.1
    # mm, inseam 5.0 / 12.2 mm). Before the restarts: 13.1, 15.0, 20.1, 17.9, 3.1 mm against 44.7, 41.1,
    # 46.5, 40.3, 11.8, all 10 within. Before stop 39's start poses: 12.5, 16.3, 19.4, 14.6, 2.8 mm against 26.8, 32.1,
    # 40.5, 30.1, 6.8, all 10 within. Ten ranked random starts (stop 33): 10.8, 16.0, 19.1, 15.8, 2.6 mm, all 10
    # within. The defaults before stop 32: 17.8, 15.0, 20.2, 21.5, 5.3 mm, 8 of 10 within
    assert np.all(sil[girths] < 0.7 * kp[girths]), (np.round(1000 * sil), np.round(1000 * kp))
    z = np.abs(err) / sil
    assert np.mean(z <= 1) >= 2 / 3 and np.all(z <= 3), (np.round(1000 * err, 1), np.round(1000 * sil, 1))
    # the restarts' valleys add their spread (uncertainty.valley_spread) to each variance; the sigmas still cover
    wide = silhouette_fit["sigma"]["valleys"]
    spread = valley_spread(silhouette_fit["model"], silhouette_fit["valleys"])
    assert np.allclose(wide, np.sqrt(sil**2 + spread), rtol=1e-9, atol=0), (np.round(1000 * wide, 1), np.round(1000 * sil, 1))
    assert np.mean(np.abs(err) <= wide) >= 2 / 3, (np.round(1000 * err, 1), np.round(1000 * wide, 1))


def test_the_finalists_race_on_every_frame(anny):
    """With ``silhouette_finalists`` 2 the halving on the start frames stops at two starts; each runs
    ``silhouette_final_iterations`` on every picked frame, the better goes on to ``silhouette_iterations`` in all
    and ends no higher than it stood (held-out seed 31, a short fit of 4 starts on 3 frames)."""
    scene = make_scene(anny, 31, frames=12, fps=10.0, image_scale=0.5, mask_scale=1.0)
    cfg = FitConfig(silhouettes=True, silhouette_frames=3, silhouette_start_frames=2, silhouette_starts=2,
                    silhouette_start_iterations=5, silhouette_finalists=2, silhouette_final_iterations=10,
                    silhouette_iterations=40, silhouette_restarts=0)
    sil = SilhouetteInput(scene.rig, scene.masks, np.tile(np.arange(12), (len(scene.masks.cameras), 1)))
    with recorded_progress() as made:
        fig = fit_sequence(anny, scene.keypoints, cfg, frame_rate=scene.fps, silhouettes=sil).figures["silhouettes"]
    assert [sum(v is not None for v in r) for r in fig["start_rounds"]] == [4, 2]  # no fewer than the finalists
    # the planned work is what ran: 4 then 2 starts 5 iterations on 2 frames, the finalists 2 then 1 times 10 on
    # 3, the winner the rest of 40 (40 - 2 * 5 - 2 * 10) on 3
    assert made[0].done == made[0].total == (4 + 2) * 5 * 2 + (2 + 1) * 10 * 3 + 10 * 3
    final = fig["final_rounds"]
    assert [sum(v is not None for v in r) for r in final] == [2, 1] and all(np.isfinite(final[0]))
    winner = int(np.argmin(final[0]))
    assert final[1][winner] <= final[0][winner] and fig["loss"] <= final[1][winner]
    with pytest.raises(ValueError, match="silhouette_finalists"):
        FitConfig(silhouette_finalists=0)


@pytest.mark.parametrize("start_frames", [2, 0], ids=["race-on-some-frames", "race-on-every-frame"])
def test_the_race_on_worker_processes_finds_the_same_body(anny, start_frames):
    """The starts' race on two worker processes (``silhouette_workers``) ends at the body the race in the fit's own
    process does, to the last bit: each start runs whole on one process, the winners come back with their L-BFGS
    history (with ``silhouette_start_frames`` 0 the winner goes on from it), and so do the restarts along the weak
    directions (``silhouette_restarts``). Held-out seed 31, 4 starts on 3 frames."""
    scene = make_scene(anny, 31, frames=12, fps=10.0, image_scale=0.5, mask_scale=1.0)
    sil = SilhouetteInput(scene.rig, scene.masks, np.tile(np.arange(12), (len(scene.masks.cameras), 1)))
    fits = {}
    for workers in (1, 2):
        cfg = FitConfig(silhouettes=True, silhouette_frames=3, silhouette_start_frames=start_frames,
                        silhouette_starts=2, silhouette_start_iterations=5, silhouette_iterations=30,
                        silhouette_restarts=1, silhouette_restart_iterations=5, silhouette_restart_finish=5,
                        silhouette_workers=workers)
        with recorded_progress() as made:
            fits[workers] = fit_sequence(anny, scene.keypoints, cfg, frame_rate=scene.fps, silhouettes=sil)
        assert made[0].done == made[0].total  # the workers' runs counted as they ended
    one, two = fits[1].figures["silhouettes"], fits[2].figures["silhouettes"]
    assert (one["race_workers"], two["race_workers"]) == (1, 2)
    assert one["start_rounds"] == two["start_rounds"] and one["loss"] == two["loss"]
    assert one["restarts"] == two["restarts"] and len(one["restarts"]) == 3  # the winner and one direction each way
    assert np.array_equal(fits[1].shape, fits[2].shape) and np.array_equal(fits[1].pose_rotvec, fits[2].pose_rotvec)


def test_race_workers_follow_the_setting_and_the_cores():
    """``silhouette_workers`` as set, never more than the starts; 0 takes the cores this process may use, or the
    share a batch task was given (``limit_race_cores``)."""
    from mocap_studio.reconstruction.body.fit_silhouette import limit_race_cores, race_workers

    cores = len(os.sched_getaffinity(0))
    assert race_workers(FitConfig(silhouette_workers=3), 26) == 3 and race_workers(FitConfig(silhouette_workers=3), 2) == 2
    assert race_workers(FitConfig(silhouette_workers=1), 26) == 1
    assert race_workers(FitConfig(), 26) == min(cores, 26)
    try:
        limit_race_cores(1)
        assert race_workers(FitConfig(), 26) == 1 and race_workers(FitConfig(silhouette_workers=2), 26) == 2
    finally:
        limit_race_cores(None)
    with pytest.raises(ValueError, match="silhouette_workers"):
        FitConfig(silhouette_workers=-1)


def test_a_failing_race_worker_is_told():
    """A worker's error comes back to the fit's process with its traceback; a worker that dies is named with the
    setting that keeps the race at home."""
    from mocap_studio.reconstruction.body import fit_silhouette

    class Broken:
        frames, iterations, loss, last_evaluations, work = 2, 0, float("inf"), 0, None

        def advance(self, iterations: int) -> float:
            if iterations == 3:
                raise ValueError("no masks here")
            os._exit(9)  # killed, as by the kernel's out-of-memory killer

    for start, iterations, told in ((0, 3, "(?s)failed in a worker process.*ValueError: no masks here"),
                                    (1, 4, r"silhouette race 1 \(pid \d+\) .* died \(exit code 9.*silhouette_workers = 1")):
        pool = fit_silhouette._RacePool([Broken(), Broken()], 2, None)
        try:
            with pytest.raises(RuntimeError, match=told):
                pool.advance([start], iterations)
        finally:
            pool.close()
        assert not any(p.is_alive() for p in pool.procs)


@pytest.mark.xfail(strict=True, reason="issue 14's acceptance (girths within 10 mm, height 5 mm) is not met on this "
                   "scene with the default settings: the waist was 11.3 mm off (hip 7.0, height 0.8 mm; stop 41, when "
                   "exact masks still got the feet's 0.25 px), on 640x360 "
                   "images with keypoints given 10 mm noise and a 20 mm bias each. Through the whole pipeline at "
                   "1280x720, with MediaPipe's keypoints and full-size masks (and their outline allowance), the same "
                   "settings meet it on the demo "
                   "and 11 studio takes refitted (the heights -1.0 to -4.0 mm; README, 'The segmenter's outline by "
                   "body part')")
def test_silhouette_shape_acceptance(silhouette_fit):
    sil = silhouette_fit["silhouettes"]
    assert max(sil[g] for g in GIRTHS) <= 10.0 and sil["height"] <= 5.0, silhouette_fit


BOUND_GIRTH_MM = 25.0
BOUND_HEIGHT_MM = 10.0


def test_a_scan_fits_the_silhouettes_whatever_silhouettes_says():
    # `[fit] scan = true` alone once made the fit stage skip the masks and then refuse the scan for having none
    assert FitConfig(scan=True).fits_silhouettes and FitConfig(silhouettes=True).fits_silhouettes
    assert not FitConfig().fits_silhouettes


def test_keypoint_offsets_turn_with_their_joints():
    """The silhouette refinement's keypoint offsets (one per keypoint for the take, in its joint's frame) are the
    least-squares ones: keypoints displaced by constant offsets in frames of joints that turn from frame to frame
    give back those offsets and the displaced keypoints, whatever the turns; the prior shrinks them."""
    from types import SimpleNamespace

    from mocap_studio.reconstruction.body.fit_silhouette import JointRefinement
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    F, K, J = 7, 5, 3
    rg = torch.as_tensor(Rotation.random(F * J, random_state=1).as_matrix().reshape(F, J, 3, 3))
    kp_joint = torch.as_tensor(rng.integers(0, J, K))
    offsets = torch.as_tensor(rng.normal(0, 0.02, (K, 3)))
    kp = torch.as_tensor(rng.normal(0, 0.5, (F, K, 3)))
    target = kp + torch.einsum("fkij,kj->fki", rg[:, kp_joint], offsets)
    weight = torch.ones(F, K)
    weight[0, 1] = 0.0  # a missing keypoint
    for sigma, factor in ((1e3, 1.0), (0.015, 1 / (1 + (0.015 / 0.015) ** 2 / 7))):
        cfg = SimpleNamespace(silhouette_keypoint_sigma_m=0.0, keypoint_sigma_m=0.015, silhouette_keypoint_offset_sigma_m=sigma)
        me = SimpleNamespace(cfg=cfg, kp_joint=kp_joint, target=target.double(), weight=weight.double())
        moved, found = JointRefinement._offset(me, kp.double(), rg)
        if sigma > 1:
            np.testing.assert_allclose(found.numpy(), offsets.numpy(), atol=1e-9)
            np.testing.assert_allclose(moved.numpy(), target.numpy(), atol=1e-9)
        else:  # keypoints seen in all 7 frames: shrunk by 7 / (7 + (0.015 / 0.015)^2)
            keep = [0, 2, 3, 4]
            np.testing.assert_allclose(found.numpy()[keep], factor * offsets.numpy()[keep], atol=1e-9)


def test_refinement_holds_the_take_joint_limits(anny):
    """The picked frames' poses refined with the shape keep the take's anatomical limits (a knee turns about its
    hinge only): free of them a knee's twist wandered and the shape paid for it (seed 30: shins 0.76 rad off about
    their bone, hips and thighs 11 mm too large). A bend costs nothing, a twist or a knee bent backwards beyond its
    range ``joint_limit_weight`` per radian squared, in every frame; composed with the start poses."""
    from types import SimpleNamespace

    from mocap_studio.reconstruction.body.fit_silhouette import JointRefinement
    from mocap_studio.reconstruction.body.fit_skeleton import _fit_setup
    from mocap_studio.reconstruction.body.torch_rotations import rotmat_to_rotvec, rotvec_to_rotmat

    red, _ = _fit_setup(anny, "blazepose33")
    knee = int(red.limit_joint[0])  # the left knee: no turn about the shin, bent from -0.1 to 2.6 rad about lateral
    rows = np.flatnonzero(red.limit_joint.numpy() == knee)
    shin = red.limit_axis[rows[0]].double()
    lateral = red.limit_axis[rows[np.flatnonzero(red.limit_lo.numpy()[rows] == -0.1)[0]]].double()
    F, Jf = 3, len(red.free)
    start = torch.zeros(F, Jf, 3, dtype=torch.float64)
    start[:, knee] = 0.4 * lateral  # the start poses' knees bent
    me = SimpleNamespace(cfg=FitConfig(), red=red, rot0=rotvec_to_rotmat(start))
    w = FitConfig().joint_limit_weight

    def cost(turn: torch.Tensor, cfg: FitConfig = me.cfg) -> float:
        delta = torch.zeros(F, Jf, 3, dtype=torch.float64)
        delta[:, knee] = turn
        return float(JointRefinement.limit_cost(SimpleNamespace(**{**vars(me), "cfg": cfg}), delta))

    assert cost(0.9 * lateral) == pytest.approx(0.0, abs=1e-12)
    assert cost(-0.6 * lateral) == pytest.approx(F * w * 0.1**2, rel=1e-6)  # 0.4 - 0.6 = 0.1 beyond straight
    twist = rotmat_to_rotvec(rotvec_to_rotmat(0.4 * lateral).T @ rotvec_to_rotmat(0.4 * lateral + 0.2 * shin))
    assert cost(twist) == pytest.approx(F * w * 0.2**2, rel=1e-6)  # bent 0.4, turned 0.2 about the shin
    assert cost(twist, FitConfig(joint_limit_weight=0.0)) == 0.0


def test_take_keypoint_offsets_turn_with_their_joints(anny):
    """The silhouette refinement's keypoint offsets carried into the take's fit (``silhouette_offsets_for_take``):
    added to the take's rest points, every posed keypoint moves by its offset turned by the global rotation of the
    joint it was found in, that joint a free one or not (a hand's finger joint turns with the wrist the fit moves)."""
    from mocap_studio.reconstruction.body.fit_silhouette import take_keypoint_offsets
    from mocap_studio.reconstruction.body.fit_skeleton import _coefficients, _fit_setup, _forward, _rest
    from mocap_studio.reconstruction.body.lbs import forward_kinematics
    from mocap_studio.reconstruction.body.torch_rotations import rotvec_to_rotmat

    red, basis = _fit_setup(anny, "blazepose33")
    K = anny.keypoint_regressor("blazepose33").matrix.shape[0]
    rng = np.random.default_rng(3)
    non_free = np.setdiff1d(np.arange(anny.num_joints), red.free.numpy())
    kp_joint = rng.choice(np.concatenate([red.free.numpy(), non_free]), K)
    kp_joint[:3] = non_free[:3]
    offsets = rng.normal(0, 0.02, (K, 3))
    T = 3
    rot = rotvec_to_rotmat(torch.as_tensor(rng.normal(0, 0.4, (T, len(red.free), 3))))
    trans = torch.as_tensor(rng.normal(0, 0.3, (T, 3)))
    sfree = torch.as_tensor(anny.free_from_shape(anny.random_shape(rng)))
    rest = _rest(basis, _coefficients(anny, sfree))
    moved = type(rest)(rest.joints, rest.P + take_keypoint_offsets(anny, red, offsets, kp_joint), rest.S, rest.Q)
    shift = (_forward(anny, red, moved, rot, trans).pts - _forward(anny, red, rest, rot, trans).pts)[:, :K].numpy()
    full = torch.eye(3, dtype=torch.float64).expand(T, anny.num_joints, 3, 3).clone()
    full[:, red.free] = rot
    shape = anny.shape_from_free(sfree.to(anny.dtype))
    rg, _ = forward_kinematics(full, anny.rest_joints_torch(shape).to(torch.float64), anny._levels)
    want = np.einsum("tkij,kj->tki", rg[:, kp_joint].numpy(), offsets)
    np.testing.assert_allclose(shift, want, atol=1e-9)


def test_keypoint_offsets_keep_the_detector_bias_out_of_the_take(anny, monkeypatch):
    """``silhouette_offsets_for_take``: the take's poses fitted to the model's keypoints moved by the offsets the
    silhouette refinement found (the scene's keypoints carry a 20 mm bias each) sit nearer the true body than the
    same shape's poses fitted to the keypoints as they are. Held-out seed 31, a short refinement (200 iterations, no
    random starts; the offsets are solved in closed form at every step). Measured: per-vertex 26.1 -> 20.8 mm (at
    120 iterations 25.8 -> 23.6); on ten held-out studio scenes with the full refinement 17.5-25.8 -> 14.4-19.2 mm
    (README)."""
    import mocap_studio.reconstruction.body.fitting as fitting

    scene = make_scene(anny, 31, frames=20, fps=10.0, image_scale=0.5, mask_scale=1.0)
    cfg = FitConfig(silhouettes=True, silhouette_frames=6, silhouette_contour=True, silhouette_rim_cos=0.2,
                    silhouette_keypoint_offset_sigma_m=0.2, silhouette_pose_sigma_rad=0.5, silhouette_iterations=200,
                    silhouette_history=100, silhouette_starts=0, silhouette_restarts=0, silhouette_offsets_for_take=True)
    sil = SilhouetteInput(scene.rig, scene.masks, np.tile(np.arange(20), (len(scene.masks.cameras), 1)))
    found = {}
    shape_fit = fitting.fit_shape_silhouettes

    def once(*args, **kwargs):  # the shape fitted once; the second take keeps it and drops the offsets
        if "fit" not in found:
            found["fit"] = shape_fit(*args, **kwargs)
            return found["fit"]
        return (*found["fit"][:2], None)

    monkeypatch.setattr(fitting, "fit_shape_silhouettes", once)
    pve = {}
    for label in ("offsets", "as they are"):
        fit = fit_sequence(anny, scene.keypoints, cfg, frame_rate=scene.fps, silhouettes=sil)
        vt = anny.evaluate(scene.shape, scene.pose, scene.trans).vertices
        vf = anny.evaluate(fit.shape, fit.pose_rotvec, fit.trans).vertices
        pve[label] = 1000 * float(np.linalg.norm(vt - vf, axis=-1).mean())
    assert found["fit"][2] is not None and found["fit"][1]["keypoint_offsets_in_take"]
    assert pve["offsets"] < pve["as they are"] - 3.0 and pve["offsets"] < 23.0, pve


def test_the_body_parts_are_where_they_belong(anny):
    """``body_parts``: each vertex's part by its strongest skinning joint. The feet (below the ankles): none more than
    4 cm above the ankle joints, the rest of the body all above them, and they hold the body's lowest points
    (measured: the feet up to 3.0 cm over the ankles, the rest of the body from 1.7 cm over them; 2136 of 13718
    vertices); the head holds the highest points; the hands lie farther out from the body's middle than the arms,
    the shins below the thighs, the neck between the trunk and the head; every part has vertices."""
    from mocap_studio.reconstruction.body.fit_silhouette import body_parts

    parts = body_parts(anny)
    shape = anny.default_shape()
    up = np.asarray(anny.model_to_world_rest)[2]
    rest = anny.rest_vertices_torch(torch.as_tensor(shape, dtype=anny.dtype)).double().numpy()
    height = rest @ up
    ankle = max(float(anny.kinematic_tree(shape).rest_positions[anny.semantic_joints[n]] @ up)
                for n in ("left_ankle", "right_ankle"))
    index = {name: OUTLINE_PARTS.index(name) for name in OUTLINE_PARTS}
    feet = parts == index["feet"]
    assert 0.05 * len(feet) < feet.sum() < 0.25 * len(feet)
    assert height[feet].max() < ankle + 0.04 and height[~feet].min() > ankle
    assert feet[np.argsort(height)[:500]].all()  # the lowest points are the feet's
    assert (parts[np.argsort(height)[-500:]] == index["head"]).all()  # the highest the head's
    counts = np.bincount(parts, minlength=len(OUTLINE_PARTS))
    assert (counts > 100).all(), dict(zip(OUTLINE_PARTS, counts, strict=True))
    mean_h = {name: height[parts == i].mean() for name, i in index.items()}
    assert mean_h["feet"] < mean_h["shins"] < mean_h["thighs"] < mean_h["trunk"] < mean_h["neck"] < mean_h["head"]
    side = np.abs(rest - rest.mean(0)) @ np.abs(np.asarray(anny.model_to_world_rest)[0])  # out to the side (A-pose)
    assert np.median(side[parts == index["hands"]]) > np.median(side[parts == index["arms"]]) > np.median(
        side[parts == index["trunk"]])


def test_the_outline_allowance_is_allowed_for_by_body_part(anny):
    """The masks' ``outline_allowance``: each surface point's model -> mask distance is less by its part's allowance
    (never below 0; a negative one, a segmenter's outline outside the body's, makes a point that far inside the mask
    pay), in the refinement's batched distances and in the starts' per-view ones alike, and nothing else moves
    (held-out seed 31, a body posed a little off its true masks, 6 frames x 4 cameras, with MediaPipe's allowance)."""
    from mocap_studio.reconstruction.body.fit_silhouette import _outline_allowance, body_parts

    scene = make_scene(anny, 31, frames=20, fps=10.0, image_scale=0.5, mask_scale=1.0)
    frames = np.linspace(0, scene.pose.shape[0] - 1, 6).round().astype(int)
    cfg, C = FitConfig(silhouettes=True), len(scene.masks.cameras)
    pose = scene.pose[frames] + np.random.default_rng(2).normal(0, 0.05, scene.pose[frames].shape)
    ids = surface_sample(anny, anny.default_shape(), cfg.silhouette_spacing_m)
    assert _outline_allowance(anny, ids, ()) is None  # exact masks: nothing allowed
    allowance = _outline_allowance(anny, ids, MEDIAPIPE_OUTLINE_ALLOWANCE_PX)
    assert np.array_equal(allowance, np.asarray(MEDIAPIPE_OUTLINE_ALLOWANCE_PX)[body_parts(anny)[ids]])
    views = [[scene.masks.mask(c, t) for c in range(C)] for t in frames]
    terms = [SilhouetteTerm(anny, pose, scene.trans[frames], views, scene.rig, scene.masks.cameras, scene.masks.scale,
                            ids, cfg.silhouette_tau_px, True, a) for a in (None, allowance)]
    pts = torch.as_tensor(terms[0].posed_points(scene.shape))
    (plain, _), (allowed, _) = (t.distances(pts, [0.0] * t.num_views) for t in terms)
    outside = inside_paid = 0
    for (d0, e0), (d1, e1) in zip(plain, allowed, strict=True):
        d0, d1 = d0.numpy(), d1.numpy()
        out = d0 > 0
        assert np.allclose(d1[out], np.maximum(d0[out] - allowance[out], 0.0), atol=1e-12)
        # a point inside the mask pays at most the head's and shins' negative bias
        assert np.all(d1[~out] >= 0) and np.all(d1[~out] <= np.maximum(-allowance[~out], 0.0) + 1e-12)
        assert torch.equal(e0, e1)  # the mask -> model distances do not change
        outside += int((out & (allowance > 0)).sum())
        inside_paid += int(((d1 > 0) & ~out).sum())
    assert outside > 50 and inside_paid > 20  # both sides were there to see
    for (d_out, _), (ref_out, _) in zip(allowed, terms[1].residuals(scene.shape), strict=True):
        inside = d_out.numpy()[d_out.numpy() > 0]
        assert np.allclose(np.sort(inside), np.sort(ref_out[ref_out > 0]), atol=1e-6)


class _ScriptedTrial:
    """A stand-in for fit_silhouette._Trial whose loss after n iterations is ``floor + height / (1 + n / 10)``."""

    def __init__(self, floor: float, height: float) -> None:
        self.floor, self.height, self.iterations, self.loss = floor, height, 0, float("inf")

    def advance(self, iterations: int) -> float:
        self.iterations += iterations
        self.loss = self.floor + self.height / (1 + self.iterations / 10)
        return self.loss


def test_halving_gives_the_promising_starts_the_iterations():
    """Successive halving of the starts: every start runs a round, the better half (rounded up) goes on, until one
    is left (or the finalists asked for). Ten starts: 10, 5, 3, 2, 1 of them in the five rounds; the winner ran five
    rounds, the first out one."""
    from mocap_studio.reconstruction.body.fit_silhouette import _halving, _halving_plan

    rng = np.random.default_rng(4)
    trials = [_ScriptedTrial(f, h) for f, h in zip(rng.uniform(0, 100, 10), rng.uniform(50, 500, 10), strict=True)]
    (best,), rounds = _halving(trials, 7)
    assert [sum(v is not None for v in r) for r in rounds] == [10, 5, 3, 2, 1] == _halving_plan(10)
    assert best.iterations == 35 and sorted(t.iterations for t in trials) == [7] * 5 + [14] * 2 + [21, 28, 35]
    for r, nxt in zip(rounds[:-1], rounds[1:], strict=True):  # those that went on were the best of the round
        kept = [i for i, v in enumerate(nxt) if v is not None]
        out = [v for i, v in enumerate(r) if v is not None and i not in kept]
        assert max(r[i] for i in kept) <= min(out)
    # a start whose valley is deep but slow to show, second after the first round, goes on and wins the second
    slow = [_ScriptedTrial(0.0, 200.0), _ScriptedTrial(40.0, 100.0), _ScriptedTrial(90.0, 100.0),
            _ScriptedTrial(91.0, 100.0)]
    (best,), rounds = _halving(slow, 10)
    assert best is slow[0] and rounds[0][1] < rounds[0][0] and rounds[1][0] < rounds[1][1]
    assert _halving([_ScriptedTrial(1.0, 1.0)], 5)[0][0].iterations == 5
    # the first cut deeper (the fit's FIRST_ROUND_KEEP): 26 starts, a quarter (rounded up) after the first round
    many = [_ScriptedTrial(f, h) for f, h in zip(rng.uniform(0, 100, 26), rng.uniform(50, 500, 26), strict=True)]
    (best,), rounds = _halving(many, 5, first_keep=0.25)
    assert [sum(v is not None for v in r) for r in rounds] == [26, 7, 4, 2, 1] == _halving_plan(26, 0.25)
    kept = [i for i, v in enumerate(rounds[1]) if v is not None]
    assert sorted(kept) == sorted(np.argsort(rounds[0])[:7].tolist()) and best.iterations == 25
    # stopped at two finalists (the fit's silhouette_finalists), best first: the race without its last round
    for t in many:
        t.iterations, t.loss = 0, float("inf")
    finalists, short = _halving(many, 5, first_keep=0.25, until=2)
    assert short == rounds[:-1] and [t.iterations for t in finalists] == [20, 20]
    assert [sum(v is not None for v in r) for r in short] == _halving_plan(26, 0.25, until=2) == [26, 7, 4, 2]
    assert _halving_plan(1) == [1] and _halving_plan(2, 0.25, until=2) == [2]
    assert finalists[0] is best and finalists[0].loss <= finalists[1].loss


def test_a_start_goes_on_from_where_it_stopped(anny):
    """A start of the refinement advanced in rounds keeps its shape, its poses and its L-BFGS between them: the loss
    at the state it holds is the loss it reported, a second round goes down from there, and two rounds take the
    path of one run as long (held-out seed 31, 4 frames; measured: the same loss and shape to the last bit)."""
    from mocap_studio.reconstruction.body.fit_silhouette import JointRefinement, _Trial
    from mocap_studio.reconstruction.body.fit_skeleton import _fit_setup
    from mocap_studio.reconstruction.body.torch_rotations import rotvec_to_rotmat

    scene = make_scene(anny, 31, frames=20, fps=10.0, image_scale=0.5, mask_scale=1.0)
    frames = np.linspace(0, scene.pose.shape[0] - 1, 4).round().astype(int)
    cfg, C = FitConfig(silhouettes=True, silhouette_rim_cos=0.2, silhouette_contour=True), len(scene.masks.cameras)
    red, _ = _fit_setup(anny, "blazepose33")
    pose = scene.pose[frames] + np.random.default_rng(3).normal(0, 0.05, scene.pose[frames].shape)
    ids = surface_sample(anny, anny.default_shape(), cfg.silhouette_spacing_m)
    views = [[scene.masks.mask(c, t) for c in range(C)] for t in frames]
    term = SilhouetteTerm(anny, pose, scene.trans[frames], views, scene.rig, scene.masks.cameras, scene.masks.scale,
                          ids, cfg.silhouette_tau_px, True)
    rot = rotvec_to_rotmat(torch.as_tensor(pose, dtype=torch.float64))[:, red.free]
    target = scene.keypoints.xyz[frames]
    weight = np.isfinite(target).all(-1).astype(float)
    joint = JointRefinement(anny, red, rot, torch.as_tensor(scene.trans[frames]), target, weight, "blazepose33", term,
                            cfg)
    trial = _Trial(joint, anny.free_from_shape(anny.default_shape()))
    first = trial.advance(10)
    with torch.no_grad():
        held = float(joint.loss(torch.as_tensor(trial.x), trial.delta, trial.dtrans))
    assert abs(held - first) <= 1e-9 * abs(first)
    assert trial.delta.abs().max() > 0 and trial.iterations == 10
    second = trial.advance(10)
    assert second < first and trial.iterations == 20
    x, rot_r, trans_r, loss = trial.result()
    assert loss == second and rot_r.shape == rot.shape and trans_r.shape == (len(frames), 3)
    # its L-BFGS goes on too (history and step): two rounds of 10 take the path of one run of 20
    once = _Trial(joint, anny.free_from_shape(anny.default_shape()))
    once.advance(20)
    assert abs(once.loss - second) <= 1e-6 * abs(second) and np.allclose(once.x, x, atol=1e-6)


def test_the_silhouettes_frames_start_from_coherent_poses(anny, monkeypatch):
    """The poses the silhouette refinement starts from: every frame posed with the keypoints' shape, the joint limits
    and the start temporal term (``fitting._coherent``), not the average body's poses solved frame by frame without
    them, whose neck and forearms twist about their bones (keypoints hardly see a twist) with the head and hands
    turned back. The refinement stayed in that valley and grew the body to fill the masks (held-out take 131, true
    masks: height +6.7 mm; from coherent poses -1.4 mm). Measured on scene 31's keypoints (10 mm noise, 20 mm bias):
    the neck's and the forearms' turn from the truth 8.9, 12.6 and 13.7 degrees on average over the take (the
    average body's frame-by-frame poses: 10.0, 30.5 and 25.9)."""
    from mocap_studio.reconstruction.body import fitting
    from scipy.spatial.transform import Rotation

    scene = make_scene(anny, 31, frames=20, fps=10.0, image_scale=0.5, mask_scale=1.0)
    seen: dict = {}

    class Seen(Exception):
        pass

    def capture(model, red, basis, sfree, offsets, rot, trans, *args, **kwargs):  # noqa: ANN001, ANN202
        seen["free"], seen["rot"] = red.free.numpy(), rot.double().numpy()
        raise Seen

    monkeypatch.setattr(fitting, "fit_shape_silhouettes", capture)
    sil = SilhouetteInput(scene.rig, scene.masks, np.tile(np.arange(20), (len(scene.masks.cameras), 1)))
    with pytest.raises(Seen):
        fit_sequence(anny, scene.keypoints, FitConfig(silhouettes=True), frame_rate=scene.fps, silhouettes=sil)
    names = [anny.joint_names[j] for j in seen["free"]]
    off = {}
    for n in ("neck01", "lowerarm01.L", "lowerarm01.R"):
        k = names.index(n)
        truth = Rotation.from_rotvec(scene.pose[:, seen["free"][k]])
        off[n] = float(np.degrees((truth.inv() * Rotation.from_matrix(seen["rot"][:, k])).magnitude()).mean())
    assert max(off.values()) < 20.0, off
