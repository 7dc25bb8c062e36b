"""The silhouette term of the shape fit: the posed model's outline against each camera's person mask.

Keypoints tell the skeleton (bone lengths, height) but hardly the girths: a chest 10 cm wider moves no joint.
Silhouettes seen from several sides tell the girths directly. For frames picked over the take (every camera
seeing the body, poses spread), the model is posed by the keypoint fit and its surface points (a uniform
subset of vertices) are projected through each calibrated camera into the mask's pixels; two one-sided
distances, both continuous in the shape (so a search can resolve a fraction of a mask pixel, averaged over
hundreds of outline points and many views):

- model -> mask: each projected surface point's distance to the mask (0 inside; a distance transform of the
  mask, bilinear): a model too wide pays along its whole outline;
- mask -> model: each mask outline pixel's distance to the nearest projected surface point (a k-d tree): a
  model too narrow leaves the mask's outline uncovered.

Both are robust (Cauchy, scale ``silhouette_tau_px``): loose clothing, hair, a shadow or a pose a little off
cost a bounded amount instead of dragging the shape. Points projecting outside the image and mask outline
pixels on the image's border (a body cut by the frame) are left out.

The picked frames' poses (from the keypoints) are then refined together with the shape on the silhouettes and
the keypoints (:class:`JointRefinement`, L-BFGS in torch with the distances' derivatives: bilinear in the
distance transform, through the nearest surface point): with the poses held fixed, a pose a little off (a
detector's bias) is paid for by the shape (measured: girths 20-70 mm worse than the keypoints alone). The
starts (the keypoints' shape, the average body and bodies spread evenly over the phenotypes, :data:`START_SPREAD`)
are raced by successive halving (:func:`_halving`) on a few of the frames, the winner runs on with all of them
(with ``silhouette_finalists``, the last few are raced again on all of them: a few frames can rank two valleys the
wrong way round). The phenotypes have valleys (gender against age, weight against muscle): with four starts each
run alike, full-size takes 105 and 108 ended in valleys of higher loss than the one a start at the true body
reaches (10720 against 10368, 8709 against 7934), girths up to 14 mm off. Random bodies ranked on a coarse
silhouette cost (until stop 34) missed the valley of held-out bodies 112 and 116: that cost is flat along the
valleys, and 200 random bodies leave gaps in six phenotypes. Mask-outline distances up to a fraction of the surface
points' projected spacing are forgiven (``silhouette_gap``), the floor the discrete points leave even on the true
body.
A prior holds each joint near its keypoint pose (``silhouette_pose_sigma_rad``). In the refinement's cost the rim
(below) is a smooth weight of each point (:func:`rim_weights`): taken point by point, the cost jumped wherever a point
entered or left it as the pose moved, L-BFGS' line search stalled after a third to half of its iterations and the
fit ended wherever that happened (two refits of a take with 0.5 mm of keypoint noise: girths up to 19 mm apart).
The shape is returned and,
with ``silhouette_offsets_for_take``, the keypoint offsets the refinement found, for the take's poses
(:func:`take_keypoint_offsets`: a detector's bias kept out of the poses, per-vertex error 2.5-7.5 mm lower).

Known weakness (README, "Shape from silhouettes"): hips and thighs come out too large on several takes (+8 to
+35 mm). It is the objective, not the search: started from the true
body the refinement walks to the same wrong shape (seeds 24, 30) or to one of higher loss than the search's
(seed 27), and the true body costs more than the wrong one (on seed 28 the search is what misses). The
silhouettes leave a direction of the phenotypes (gender and weight against muscle) they hardly see, even from
96 views of a turning scan, and the keypoints' errors and sub-pixel conventions of the outline pick a point
along it (with unbiased keypoints the true body holds). Revisited since: the 300 iterations stop short of the
refinement's minimum; with keypoint offsets (``silhouette_keypoint_offset_sigma_m``) and 1200 iterations the true
body's start ends within 7 mm and the search's hips are right, but the bodies come out too small (README).
Two biases of the term itself, measured on the true body against its true masks (README, "Half a pixel, and
the rim"): the mask outline at the inside pixels' centres lies half a pixel inside the true one (the cost least
with the surface 2.2-2.5 mm inside; ``silhouette_contour`` places it on the contour), and the model -> mask
distances averaged over every surface point, most of them inside the mask, let a body posed a little off grow
(+4 mm at 0.01 rad of pose noise; ``silhouette_rim_cos`` takes the model's rim only). Both are off by default for
now. The hips' growth that was left (10.9-17.4 mm on 3 of 10 held-out seeds with them and the offsets) came from
the picked frames' legs: posed without the take's joint limits, their twist about the bone wandered (the
keypoints hardly see it), the skinning narrowed the twisted thighs and hips and the shape grew to fill the masks;
the poses now keep the limits (:meth:`JointRefinement.limit_cost`): hips and thighs within 5.5 mm on all ten, but
still 6 of 10 meet the acceptance, the misses now a height 5.2-7.7 mm too large (README, "The legs' twist").
That height, and a thigh or chest 12 mm too large on held-out take 139, came from the same cause one step
earlier: the picked frames' start poses were the average body's, solved frame by frame without the limits or the
temporal term, with the neck and forearms twisted about their bones 50-70 degrees and the head and hands turned
back. The refinement's pose prior holds the poses near their start, so it stayed in that valley and grew the body
(take 131 with its true masks: +6.7 mm tall, loss 5294, where the true body and poses start the same refinement at
3052 and it ends at 2873, height -1.3 mm). The frames now start from the keypoints' shape posed coherently
(``fitting._coherent``): take 131 -1.4 mm, loss 2999; held-out takes 131-140 (README, "The silhouettes' start
poses"): height -4.3 to +0.6 mm (sd 3.3 -> 1.5), 139's chest +11.8 -> +1.3 and thigh +12.3 -> +1.5 mm.

After the winner's run, ``silhouette_restarts`` restart it from its shape moved a few sigmas each way along the
weakest directions of what the silhouettes told, its poses kept, and the lowest loss of those and the winner run on
as long goes on (:func:`_restarts`): the valleys lie along those directions (held-out 139's neck +10.8 -> +4.5 mm,
fresh take 155's waist -11.1 -> -3.2; README, "Restarts along the weak directions").

A segmenter's masks are the outline blurred and thresholded (MediaPipe's: heads and soles 0.7-0.8 px short at
1280x720, every fitted body 4-5 mm too short): with ``contour`` the term undoes the masks' ``blur`` on their contour
(:func:`silhouettes.unblurred_contour`; held-out takes 111-120: height mean abs 4.7 -> 2.0 mm). What the blur leaves
differs by body part: the masks' ``outline_allowance`` says how far outside them each part's surface points may lie at
no cost (negative: how far inside they must lie; :func:`_outline_allowance`). MediaPipe's
(``silhouettes.MEDIAPIPE_OUTLINE_ALLOWANCE_PX``): arms and feet 0.15-0.21 px, its head -0.15, its hands 4 px (fingers
lost or merged: no outline to fit to). Held to them as they were, the lost fingers and thin limbs made every studio
body short (height -1.8 to -5.3 mm on twelve takes, -3.5 on average): the model's phenotypes grow limbs, girths and
height together.

What the silhouettes told the shape (:meth:`JointRefinement.shape_information`, in the figures as
``shape_information``) goes into the measurements' sigmas (reconstruction/body/uncertainty.py): the refinement's
Gauss-Newton information, the picked frames' poses eliminated, less what their keypoints alone tell.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from mocap_studio.reconstruction.body.fit_config import FitConfig
from mocap_studio.reconstruction.body.fit_skeleton import DT, _Basis, _coefficients, _Reduced, _rest
from mocap_studio.reconstruction.body.fit_solver import _limit_terms, _solve_frames, _Targets
from mocap_studio.reconstruction.body.io import vertex_normals
from mocap_studio.reconstruction.body.lbs import forward_kinematics, skin, subtree
from mocap_studio.reconstruction.body.model import SkinnedBodyModel
from mocap_studio.reconstruction.body.torch_rotations import rotmat_to_rotvec, rotvec_to_rotmat
from mocap_studio.reconstruction.silhouettes import (
    OUTLINE_PARTS,
    MaskError,
    MaskSet,
    edge_points,
    image_to_mask,
    outside_distance,
    unblurred_contour,
)
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree

if TYPE_CHECKING:
    from mocap_studio.calibration.camera import CameraRig

logger = logging.getLogger(__name__)

__all__ = ["ShapeFitProgress", "SilhouetteInput", "SilhouetteTerm", "fit_shape_silhouettes", "pick_frames", "surface_sample",
           "take_keypoint_offsets"]


@dataclass(frozen=True)
class SilhouetteInput:
    """Masks for a fit: the rig, the masks and, per camera of ``masks`` and frame of the keypoints, the
    index of the mask frame taken at that time: ``frame_index`` (C, T) int (-1: none)."""

    rig: object  # CameraRig
    masks: MaskSet
    frame_index: np.ndarray

    def __post_init__(self) -> None:
        if self.frame_index.ndim != 2 or self.frame_index.shape[0] != len(self.masks.cameras):
            raise MaskError(f"frame_index must have shape (C={len(self.masks.cameras)}, T), got {self.frame_index.shape}")
        missing = [c for c in self.masks.cameras if c not in self.rig]  # type: ignore[operator]
        if missing:
            raise MaskError(f"masks of cameras {missing} have no calibration; calibrate them or drop their masks")

    def mask(self, c: int, t: int) -> np.ndarray | None:
        """The mask (H, W) of camera ``c`` at keypoint frame ``t``, None where there is none."""
        i = int(self.frame_index[c, t])
        if i < 0 or not self.masks.present[c, i]:
            return None
        return self.masks.mask(c, i)

    def seen(self) -> np.ndarray:
        """(C, T) bool: a non-empty mask at each keypoint frame."""
        C, T = self.frame_index.shape
        ok = self.frame_index >= 0
        out = np.zeros((C, T), bool)
        for c in range(C):
            idx = self.frame_index[c, ok[c]]
            out[c, ok[c]] = self.masks.nonempty[c, idx]
        return out


RIM_DEPTH_PX = 2.0
"""Rim points (see :meth:`SilhouetteTerm.loss_torch`) deeper inside the mask than this (mask pixels) are not on
the model's outline (an arm's rim before the chest) and are left out of the model -> mask mean."""

RIM_SOFTNESS = 0.01
"""Width of the rim's edge in the squared cosine (rim_cos 0.2: the weight goes from 0.88 to 0.12 between cosines of
0.15 and 0.24) in :func:`rim_weights`."""
RIM_DEPTH_SOFTNESS_PX = 0.5
"""Width of the rim's edge in its depth in the mask (mask pixels, about ``RIM_DEPTH_PX``) in :func:`rim_weights`."""
RIM_FLOOR = 1e-6
"""Every surface point's weight in the model -> mask mean at least (so that a view without rim takes them all)."""


PROGRESS_EVERY_S = 10.0
"""The shape fit logs how far it is at most this often (and at each round), so that its minutes are never silent."""

ProgressCallback = Callable[[str, int, int | None], None]
"""A stage's progress callback (``mocap_studio.stages.Progress``): label, done, total."""


def _halving_plan(starts: int, first_keep: float = 0.5, until: int = 1) -> list[int]:
    """How many starts run each round of :func:`_halving` (its rule, without running them): all of them, then the
    better ``first_keep`` (rounded up), then halves, never fewer than ``until``, until ``until`` or fewer are left."""
    plan = [starts]
    while plan[-1] > until:
        keep = first_keep if len(plan) == 1 else 0.5
        plan.append(max(int(np.ceil(plan[-1] * keep)), until))
    return plan


class ShapeFitProgress:
    """How far the silhouette shape fit is, in frame-iterations (one start's L-BFGS iteration on F picked frames
    counts F: an iteration's cost grows with the frames' views): ``total`` is what the race and the winner's run will
    take (:func:`_halving_plan`), ``done`` what has run. Inside a long run (the winner's hundreds of iterations are one
    L-BFGS call) the loss evaluations are counted as they happen, at the evaluations per iteration seen so far, so the
    share moves on between rounds too. Every :data:`PROGRESS_EVERY_S` seconds and at each new phase it logs the share
    done, the time spent and the time left, and calls ``progress`` (label, percent done, 100) where a stage gave one
    (``mocap run``'s bar)."""

    LABEL = "fit: shape from silhouettes"

    def __init__(self, total: float, progress: ProgressCallback | None = None, every_s: float | None = None) -> None:
        if total <= 0:
            raise ValueError(f"total must be > 0 frame-iterations, got {total}")
        self.total, self.done, self.progress = float(total), 0.0, progress
        self.every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self.phase = ""
        self.evaluations, self.iterations = 0, 0  # of the runs finished, for the evaluations per iteration
        self._run: tuple[float, float, int] | None = None  # the run under way: its frames, its iterations, evaluations
        self._start = time.monotonic()
        self._said = -np.inf

    @property
    def fraction(self) -> float:
        """The share of the work done, in [0, 1]."""
        extra = 0.0
        if self._run is not None:
            frames, iterations, evaluations = self._run
            per_iteration = self.evaluations / self.iterations if self.iterations else 1.25
            extra = frames * min(evaluations / per_iteration, iterations)
        return min((self.done + extra) / self.total, 1.0)

    def begin(self, phase: str) -> None:
        """A new phase (a round of the race, the winner's run): said at once."""
        self.phase = phase
        self._say(force=True)

    def run_started(self, frames: int, iterations: int) -> None:
        """A start is about to run ``iterations`` L-BFGS iterations on ``frames`` frames."""
        self._run = (float(frames), float(iterations), 0)

    def evaluated(self) -> None:
        """One loss evaluation of the run under way (called from the L-BFGS closure)."""
        if self._run is not None:
            frames, iterations, evaluations = self._run
            self._run = (frames, iterations, evaluations + 1)
        self._say()

    def run_finished(self) -> None:
        """The run under way ended: its iterations count whole (L-BFGS may stop early; the plan counted them)."""
        if self._run is None:
            return
        frames, iterations, evaluations = self._run
        self._run = None
        self.ran(int(frames), int(iterations), evaluations)

    def ran(self, frames: int, iterations: int, evaluations: int) -> None:
        """A run of ``iterations`` on ``frames`` frames ended, in ``evaluations`` loss evaluations (a worker
        process's, told when it ends)."""
        self.done += frames * iterations
        self.evaluations += evaluations
        self.iterations += iterations
        self._say()

    def _say(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._said < self.every_s:
            return
        self._said = now
        fraction, elapsed = self.fraction, now - self._start
        left = f", about {elapsed / fraction * (1 - fraction):.0f} s left" if fraction > 0.02 else ""
        logger.info("silhouettes: %s: %.0f %% in %.0f s%s", self.phase, 100 * fraction, elapsed, left)
        if self.progress is not None:
            self.progress(f"{self.LABEL} ({self.phase})", int(round(100 * fraction)), 100)


def rim_weights(cos: torch.Tensor, field: torch.Tensor, rim_cos: float) -> torch.Tensor:
    """How much each surface point belongs to the model's rim (its outline) as a camera sees it, in (0, 1): its
    normal's cosine with the camera's ray ``cos`` within ``rim_cos`` of perpendicular, and the point less than
    :data:`RIM_DEPTH_PX` deep in the mask (signed distance ``field``, mask pixels), each a logistic step. Smooth,
    so that the refinement's cost is: the hard rim's points changing with the pose stalled L-BFGS' line search,
    and the fit ended wherever that happened (take 101 refitted with 0.5 mm of keypoint noise: girths 2-19 mm
    apart, the refinement stopped after 245-409 of its 700 iterations)."""
    facing = torch.sigmoid((rim_cos**2 - cos**2) / RIM_SOFTNESS)
    return facing * torch.sigmoid((field + RIM_DEPTH_PX) / RIM_DEPTH_SOFTNESS_PX)


START_SPREAD = 1.5
"""The refinement's ``silhouette_starts`` bodies are spread evenly (:meth:`SkinnedBodyModel.spread_shapes`) over
the range random bodies are drawn from at this spread (Anny: each phenotype the average +- 0.45, age +- 0.18)."""

FIRST_ROUND_KEEP = 0.25
"""The share of the starts that goes on after the first round of :func:`_halving` (later rounds keep half). On
the 12 full-size takes measured with 26 starts halved from the first round (README, "The starts spread over the
phenotypes"), the start that won lay 1st to 3rd after the first round: the other 19 of 26 need no second round."""

NEAR_OUTLINE_PX = 12.0
"""Mask -> model distances are capped here (mask pixels): only surface points this near the mask's outline are
searched for an outline pixel's nearest (a robust loss of scale a few pixels hardly changes beyond it)."""


def _uncovered(uv: np.ndarray, edges: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Each mask outline pixel's distance (E,) to the nearest of the projected points uv (N, 2) (mask pixels),
    capped at NEAR_OUTLINE_PX; ``near`` (H, W) bool marks the pixels within that distance of the outline."""
    H, W = near.shape
    ij = np.clip(np.round(uv).astype(np.int64), 0, [W - 1, H - 1])
    pts = uv[near[ij[:, 1], ij[:, 0]]]
    if not len(pts):
        return np.full(len(edges), NEAR_OUTLINE_PX)
    tree = cKDTree(pts, balanced_tree=False, compact_nodes=False)  # used once: built in half the time
    return np.minimum(tree.query(edges, distance_upper_bound=NEAR_OUTLINE_PX)[0], NEAR_OUTLINE_PX)


def body_parts(model: SkinnedBodyModel) -> np.ndarray:
    """(V,) int: each vertex's body part, an index into ``silhouettes.OUTLINE_PARTS``, by its strongest skinning joint:
    the feet below the ankles, the hands below the wrists, the arms below the shoulders, the shins below the knees,
    the thighs below the hips, the head below the head joint, the neck below the neck joint, the trunk the rest
    (from the model's semantic joints, so for any body model that names them)."""
    sem = model.semantic_joints
    part = np.full(model.num_joints, OUTLINE_PARTS.index("trunk"))
    # parents first, so that each part's subtree is overwritten by the parts below it
    for name, joints in (("thighs", ("left_hip", "right_hip")), ("shins", ("left_knee", "right_knee")),
                         ("feet", ("left_ankle", "right_ankle")), ("arms", ("left_shoulder", "right_shoulder")),
                         ("hands", ("left_wrist", "right_wrist")), ("neck", ("neck",)), ("head", ("head",))):
        roots = [sem[n] for n in joints if n in sem]
        if roots:
            part[subtree(model.parents, roots)] = OUTLINE_PARTS.index(name)
    return part[model.skinning_weights().argmax(1)]


def _outline_allowance(model: SkinnedBodyModel, ids: np.ndarray, by_part: tuple[float, ...]) -> np.ndarray | None:
    """(N,) each surface point's (vertices ``ids``) allowance outside the masks (mask pixels; negative: it must lie
    that far inside): the masks' ``outline_allowance`` ``by_part`` for its body part (:func:`body_parts`); None where
    the masks have none (exact masks)."""
    if not len(by_part):
        return None
    return np.asarray(by_part, float)[body_parts(model)[ids]]


def surface_sample(model: SkinnedBodyModel, shape: np.ndarray, spacing_m: float) -> np.ndarray:
    """Vertex ids (N,) of a roughly uniform subset of the surface: one vertex per cube of ``spacing_m`` of
    the rest mesh (the vertex nearest the cube's centre)."""
    v = model.rest_mesh(shape)
    cell = np.floor(v / spacing_m).astype(np.int64)
    d = np.linalg.norm(v - (cell + 0.5) * spacing_m, axis=1)
    order = np.lexsort((d, cell[:, 2], cell[:, 1], cell[:, 0]))
    _, first = np.unique(cell[order], axis=0, return_index=True)
    return np.sort(order[first])


def pick_frames(seen: np.ndarray, observed: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` frames spread evenly over the take among those every camera with masks sees (seen
    (C, T) bool; observed (T,) bool: keypoints there); where too few are seen by all, those seen by the most.
    Returns sorted frame indices."""
    views = seen.sum(0) * observed
    if views.max() == 0:
        return np.zeros(0, np.int64)
    cands = np.flatnonzero(views == views.max())
    if len(cands) < count:
        cands = np.flatnonzero(views >= max(1, views.max() - 1))
    if count <= 0 or count >= len(cands):
        return cands
    return np.unique(cands[np.linspace(0, len(cands) - 1, count).round().astype(int)])


class SilhouetteTerm:
    """The robust silhouette cost of shapes for a set of posed frames (see the module docstring).

    model; pose_rotvec (F, J, 3) and trans (F, 3) of the frames; views: per frame, per camera, the mask
    (H, W) or None; rig: the calibrated cameras (by name); cameras (C,) names; scale: mask pixels per image
    pixel; vertex_ids (N,) the surface points; tau_px the robust scale in mask pixels; contour: the mask's outline
    placed halfway between inside and outside pixel centres (:func:`contour_distance`, :func:`contour_points`)
    instead of at the inside pixels' centres (half a pixel inside the true outline on average); ``allowance_px``
    (N,): how far outside the mask each surface point may lie at no cost (mask pixels; None: 0; negative: how far
    inside it must lie), where the segmenter's outline is known to lie inside the body's (or outside it): the
    masks' ``outline_allowance`` by body part (:func:`body_parts`); ``blur``: the
    segmenter's blur (``MaskSet.blur``), undone on the contour (:func:`unblurred_contour`; with ``contour`` only)."""

    def __init__(self, model: SkinnedBodyModel, pose_rotvec: np.ndarray, trans: np.ndarray,
                 views: list[list[np.ndarray | None]], rig: CameraRig, cameras: tuple[str, ...], scale: float,
                 vertex_ids: np.ndarray, tau_px: float, contour: bool = False, allowance_px: np.ndarray | None = None,
                 blur: float = 0.0):
        F = len(views)
        if pose_rotvec.shape != (F, model.num_joints, 3) or trans.shape != (F, 3):
            raise ValueError(f"pose_rotvec must have shape ({F}, {model.num_joints}, 3) and trans ({F}, 3), got "
                             f"{pose_rotvec.shape} and {trans.shape}")
        self.model = model
        self.ids = torch.as_tensor(vertex_ids)
        self.scale = scale
        self.tau = tau_px
        self.cameras = [rig[c] for c in cameras]  # type: ignore[index]
        self.centres = [np.asarray(cam.center, dtype=float) for cam in self.cameras]  # world positions
        self.allowance = np.zeros(len(vertex_ids)) if allowance_px is None else np.asarray(allowance_px, float)
        if self.allowance.shape != (len(vertex_ids),):
            raise ValueError(f"allowance_px must have shape ({len(vertex_ids)},), got {self.allowance.shape}")
        self._allowance = torch.as_tensor(self.allowance)
        # frame, camera, distance to the mask (negative inside where ``contour``), its outline points, pixels near
        # the outline
        self.views: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []
        for f, row in enumerate(views):
            for c, mask in enumerate(row):
                if mask is None or not mask.any():
                    continue
                edges = edge_points(mask)
                if len(edges) < 8:
                    continue
                outline = np.zeros(mask.shape, bool)
                outline[edges[:, 1].astype(int), edges[:, 0].astype(int)] = True
                near = outside_distance(outline) <= NEAR_OUTLINE_PX  # only points here can be an outline's nearest
                if contour:
                    self.views.append((f, c, *unblurred_contour(mask, blur), near))
                else:
                    self.views.append((f, c, outside_distance(mask), edges, near))
        # every view's tensors at once (the masks of a MaskSet share one size): distance fields (V, 1, H, W), the
        # views' frame and camera, their outline points concatenated (E, 2) and each point's view (E,)
        shapes = {v[2].shape for v in self.views}
        if len(shapes) > 1:
            raise MaskError(f"the masks differ in size ({sorted(shapes)}); a mask set holds one size")
        self._fields = torch.stack([torch.as_tensor(v[2], dtype=torch.float64) for v in self.views])[:, None] \
            if self.views else torch.zeros(0, 1, 1, 1, dtype=torch.float64)
        self._frame = torch.as_tensor([v[0] for v in self.views], dtype=torch.int64)
        self._camera = torch.as_tensor([v[1] for v in self.views], dtype=torch.int64)
        counts = [len(v[3]) for v in self.views]
        self._edge_count = torch.as_tensor(counts, dtype=torch.float64)
        self._edge_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._edges = torch.as_tensor(np.concatenate([v[3] for v in self.views]) if self.views else np.zeros((0, 2)),
                                      dtype=torch.float64)
        self._edge_view = torch.repeat_interleave(torch.arange(len(self.views)), torch.as_tensor(counts, dtype=torch.int64))
        self.pose(pose_rotvec, trans)

    def pose(self, pose_rotvec: np.ndarray, trans: np.ndarray) -> None:
        """Set the frames' poses (F, J, 3) and translations (F, 3)."""
        dt = self.model.dtype
        self.rotmats_rotvec = np.asarray(pose_rotvec, dtype=float)
        self.rotmats = rotvec_to_rotmat(torch.as_tensor(pose_rotvec, dtype=dt))
        self.trans = torch.as_tensor(trans, dtype=dt)

    @property
    def num_views(self) -> int:
        """How many (frame, camera) masks the term compares with."""
        return len(self.views)

    def posed_points(self, shape: np.ndarray) -> np.ndarray:
        """(F, N, 3) the surface points of shape (S,) in every frame's pose, world metres."""
        m = self.model
        with torch.no_grad():
            s = torch.as_tensor(shape, dtype=m.dtype)
            rest_j = m.rest_joints_torch(s)
            rest_v = m.rest_vertices_torch(s, self.ids)
            rg, tg = forward_kinematics(self.rotmats, rest_j, m._levels)
            v = skin(rest_v, m._weights[self.ids], rg, tg, rest_j) + self.trans[:, None]
        return v.double().numpy()

    def residuals(self, shape: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per view: (model -> mask distances (N',), mask -> model distances (E,)), mask pixels."""
        pts = self.posed_points(shape)
        out = []
        for f, c, dist, edges, near in self.views:
            cam = self.cameras[c]
            in_front = cam.to_camera(pts[f])[:, 2] > 0.05
            uv = image_to_mask(cam.project(pts[f][in_front]), self.scale)
            H, W = dist.shape
            inside = (uv[:, 0] >= 0) & (uv[:, 1] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] <= H - 1)
            uv, allowance = uv[inside], self.allowance[in_front][inside]
            d_out = np.maximum(map_coordinates(dist, [uv[:, 1], uv[:, 0]], order=1, mode="nearest") - allowance, 0.0)
            out.append((d_out, _uncovered(uv, edges, near)))
        return out

    def gaps(self, centre: np.ndarray, gap_m: float) -> list[float]:
        """Per view, ``gap_m`` metres at the body's centre ``centre`` (F, 3) of its frame, in mask pixels: the mask
        outline distances forgiven by :meth:`loss_torch`. The surface points are discrete: an outline point between
        two of them lies a fraction of their projected spacing away even from the true body, a floor that would
        push the body outwards."""
        return [gap_m * self.scale * float(self.cameras[c].K[0, 0]) / max(float(self.cameras[c].to_camera(centre[f])[2]), 0.1)
                for f, c, *_ in self.views]

    def loss_torch(self, pts: torch.Tensor, gaps: list[float], normals: torch.Tensor | None = None,
                   rim_cos: float = 0.0) -> torch.Tensor:
        """The silhouette cost, differentiable in the surface points pts (F, N, 3) (world metres, the points of
        ``vertex_ids`` posed in each frame): the sum over views of the two one-sided mean Cauchy losses of the
        distances (:meth:`distances`) over the robust scale ``tau_px`` squared."""
        if not self.views:
            return pts.new_zeros(())
        d_out, use, d_in, _ = self._distances(pts, gaps, normals, rim_cos, smooth=True)
        tau2 = self.tau**2
        out = (torch.log1p(d_out**2 / tau2) * use).sum(1) / use.sum(1)
        V = len(self.views)
        per_view = torch.zeros(V, dtype=pts.dtype).index_add(0, self._edge_view, torch.log1p(d_in**2 / tau2))
        return out.sum() + (per_view / self._edge_count.to(pts.dtype)).sum()

    def distances(self, pts: torch.Tensor, gaps: list[float], normals: torch.Tensor | None = None,
                  rim_cos: float = 0.0, fixed: list | None = None) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list]:
        """Per view, the model -> mask distances (N',) and the mask outline's distances (E,) less ``gaps`` (per
        view, mask pixels, :meth:`gaps`), differentiable in the surface points pts (F, N, 3). With the points'
        normals (F, N, 3) and ``rim_cos`` > 0, the model -> mask distances are those of the model's rim only (the
        points whose normal is within ``rim_cos`` of perpendicular to the camera's ray, where the model's outline
        lies), so that both distances are outline-to-outline: averaged over every surface point, most of them inside
        the mask, a model that overlaps the mask too far pays little against an outline it leaves uncovered, and a
        body posed a little off grows. Also returns which points were taken (per view: the rim's points, the
        outline points that found a surface point and that point); given back as ``fixed``, the same are taken
        (distances that are smooth in the points, for derivatives by differences)."""
        if not self.views:
            return [], []
        d_out, use, d_in, taken = self._distances(pts, gaps, normals, rim_cos, fixed)
        return [(d_out[v][use[v]], d_in[self._edge_start[v]:self._edge_start[v + 1]])
                for v in range(len(self.views))], taken

    def _distances(self, pts: torch.Tensor, gaps: list[float], normals: torch.Tensor | None = None,
                   rim_cos: float = 0.0, fixed: list | None = None, smooth: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
        """:meth:`distances` for every view at once: the model -> mask distances of every surface point (V, N) and
        which of them count (V, N) bool (the rim's, or all of a view without rim), the outline points' distances
        (E,) (view by view, as ``_edge_view``) and the points taken. With ``smooth``, which count is a weight
        (V, N) in (0, 1], differentiable in the points and their normals (:func:`rim_weights`)."""
        V, N = len(self.views), pts.shape[1]
        H, W = self._fields.shape[-2:]
        proj = torch.stack([_project_torch(cam, pts) for cam in self.cameras])  # (C, F, N, 2)
        uv = (proj[self._camera, self._frame] + 0.5) * self.scale - 0.5  # (V, N, 2) mask pixels
        grid = torch.stack([2 * uv[..., 0] / (W - 1) - 1, 2 * uv[..., 1] / (H - 1) - 1], -1)
        inside = (grid.abs() <= 1).all(-1)
        field = torch.nn.functional.grid_sample(self._fields, grid[:, None], align_corners=True,
                                                padding_mode="border")[:, 0, 0]  # (V, N)
        d_out = (field - self._allowance).clamp_min(0.0) * inside
        use = torch.ones(V, N, dtype=torch.bool)
        hits, nearest = [], []
        if fixed is not None:
            taken = fixed
            for v, (rim, hit, near_v) in enumerate(fixed):
                if rim is not None:
                    use[v] = rim
                hits.append(np.flatnonzero(hit) + self._edge_start[v])
                nearest.append(near_v + v * N)
        else:
            taken = []
            rims = None
            if normals is not None and rim_cos > 0:
                centres = torch.as_tensor(np.array(self.centres), dtype=pts.dtype)
                ray = pts[self._frame] - centres[self._camera][:, None]
                cos = (normals[self._frame] * ray).sum(-1) / ray.norm(dim=-1).clamp_min(1e-9)
                with torch.no_grad():  # a rim deep inside the mask (an arm before the chest) is not the outline
                    rims = (cos.abs() <= rim_cos) & (field > -RIM_DEPTH_PX)
                    rims[~rims.any(1)] = True  # a view without rim: every point
                # smooth: every point weighs at least RIM_FLOOR, so a view without rim takes them all too
                use = rim_weights(cos, field, rim_cos) + RIM_FLOOR if smooth else rims
            with torch.no_grad():
                uv_np, inside_np = uv.detach().numpy(), inside.numpy()
            for v, (_f, _c, _dist, edges, near) in enumerate(self.views):
                rim = rims[v] if rims is not None and not bool(rims[v].all()) else None
                hit, near_v = np.zeros(len(edges), bool), np.zeros(0, np.int64)
                ij = np.clip(np.round(uv_np[v]).astype(np.int64), 0, [W - 1, H - 1])
                cand = np.flatnonzero(inside_np[v] & near[ij[:, 1], ij[:, 0]])
                if len(cand):
                    # built at every call: unbalanced and not compacted, in half the time
                    tree = cKDTree(uv_np[v][cand], balanced_tree=False, compact_nodes=False)
                    dd, j = tree.query(edges, distance_upper_bound=NEAR_OUTLINE_PX)
                    hit = np.isfinite(dd)
                    near_v = cand[j[hit]]
                taken.append((rim, hit, near_v))
                hits.append(np.flatnonzero(hit) + self._edge_start[v])
                nearest.append(near_v + v * N)
        d_in = torch.full((len(self._edges),), NEAR_OUTLINE_PX, dtype=pts.dtype)
        hit_all = torch.as_tensor(np.concatenate(hits), dtype=torch.int64)
        if len(hit_all):
            near_all = torch.as_tensor(np.concatenate(nearest), dtype=torch.int64)
            d_in = d_in.index_put((hit_all,), (uv.reshape(-1, 2)[near_all] - self._edges[hit_all]).norm(dim=-1)
                                  .clamp_max(NEAR_OUTLINE_PX))
        gap = torch.as_tensor(gaps, dtype=pts.dtype)[self._edge_view]
        return d_out, use, (d_in - gap).clamp_min(0.0), taken

    def figures(self, shape: np.ndarray) -> dict:
        """Median and 90th percentile of both distances over every view (mask pixels), and the views' count."""
        res = self.residuals(shape)
        if not res:
            return {"views": 0}
        d_out = np.concatenate([r[0] for r in res])
        d_in = np.concatenate([r[1] for r in res])
        return {"views": len(res), "model_outside_mask_px_p90": float(np.percentile(d_out, 90)),
                "mask_outline_uncovered_px_median": float(np.median(d_in)),
                "mask_outline_uncovered_px_p90": float(np.percentile(d_in, 90))}


def _full_pose(model: SkinnedBodyModel, red: _Reduced, rot: torch.Tensor) -> np.ndarray:
    """(F, J, 3) rotation vectors of every joint from the free joints' rot (F, Jf, 3, 3) (the others at rest)."""
    full = np.zeros((rot.shape[0], model.num_joints, 3))
    full[:, red.free.numpy()] = rotmat_to_rotvec(rot).numpy()
    return full


def fit_shape_silhouettes(
    model: SkinnedBodyModel, red: _Reduced, basis: _Basis, sfree: torch.Tensor, offsets: torch.Tensor | None,
    rot: torch.Tensor, trans: torch.Tensor, tg: _Targets, observed: np.ndarray, sil: SilhouetteInput, cfg: FitConfig,
    skeleton: str, progress: ProgressCallback | None = None,
) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
    """The shape refined on the silhouettes (see the module docstring), from the keypoint fit's unconstrained
    shape ``sfree`` (S,) (and marker ``offsets`` (M, 3) or None), every frame's poses rot (T, Jf, 3, 3) and
    trans (T, 3) to start the picked frames from, the keypoint targets ``tg`` of every frame (``skeleton``), the
    frames with keypoints ``observed`` (T,) bool. Returns the unconstrained shape, figures of the fit and, with
    ``silhouette_offsets_for_take`` and keypoint offsets, the keypoints' rest points' increments (K', Jf, 3) for
    the take's poses (:func:`take_keypoint_offsets`; None otherwise). How far it is gets logged and given to
    ``progress`` (a stage's callback; :class:`ShapeFitProgress`)."""
    start = time.perf_counter()
    pick = pick_frames(sil.seen(), observed, cfg.scan_frames if cfg.scan else cfg.silhouette_frames)
    if len(pick) == 0:
        logger.warning("silhouettes: no frame with both keypoints and a mask; the shape is the keypoints' alone")
        return sfree, {"frames": 0}, None
    pick_t = torch.as_tensor(pick)
    frame_tg = dataclasses.replace(tg.rows(pick_t), temporal=0.0, limits=cfg.joint_limit_weight)  # type: ignore[arg-type]
    views = [[sil.mask(c, int(t)) for c in range(len(sil.masks.cameras))] for t in pick]
    keypoint_shape = model.shape_from_free(sfree.to(model.dtype)).double().numpy()
    ids = surface_sample(model, model.default_shape(), cfg.silhouette_spacing_m)
    allowance = _outline_allowance(model, ids, sil.masks.outline_allowance)
    term = SilhouetteTerm(model, _full_pose(model, red, rot[pick_t]), trans[pick_t].numpy(), views, sil.rig,
                          sil.masks.cameras, sil.masks.scale, ids, cfg.silhouette_tau_px, cfg.silhouette_contour,
                          allowance, sil.masks.blur)
    # the starts: the keypoints' shape (its phenotypes drawn in from the bounds, where the tanh leaves no
    # gradient), the average body and bodies spread over the phenotypes; a keypoint fit far off (a detector's
    # biased hips make a heavy, weak body) can start in the wrong valley of the model's trade-offs (weight against
    # muscle, gender against age)
    x_kp = np.clip(sfree.double().numpy(), -FREE_BOUND, FREE_BOUND)
    starts = [x_kp, model.free_from_shape(model.default_shape())] + [
        model.free_from_shape(p) for p in model.spread_shapes(cfg.silhouette_starts, START_SPREAD)]
    sub = np.arange(len(pick))
    if 0 < cfg.silhouette_start_frames < len(pick):
        sub = np.unique(np.linspace(0, len(pick) - 1, cfg.silhouette_start_frames).round().astype(int))
    sub_t, sub_tg = torch.as_tensor(sub), frame_tg.rows(torch.as_tensor(sub))  # type: ignore[arg-type]
    partial = len(sub) < len(pick)  # the starts raced on some of the frames, the finalists then on all of them
    sub_term = term if not partial else SilhouetteTerm(
        model, term.rotmats_rotvec[sub], term.trans.double().numpy()[sub], [views[i] for i in sub], sil.rig,
        sil.masks.cameras, sil.masks.scale, ids, cfg.silhouette_tau_px, cfg.silhouette_contour, allowance,
        sil.masks.blur)
    until = cfg.silhouette_finalists if partial else 1
    work = ShapeFitProgress(_planned_work(len(starts), until, len(sub), len(pick), partial, cfg), progress)
    work.begin(f"posing {len(starts)} starts on {len(sub)} frames")
    trials = []
    for x0 in starts:
        rest = _rest(basis, _coefficients(model, torch.as_tensor(x0, dtype=DT)), red, offsets)
        rot_p, trans_p = _solve_frames(model, red, rest, rot[pick_t[sub_t]], trans[pick_t[sub_t]], sub_tg, cfg,
                                       cfg.frame_iterations, cfg.robust_scale)
        trials.append(_Trial(JointRefinement(model, red, rot_p, trans_p, sub_tg.target.numpy(),
                                             sub_tg.weight.numpy(), skeleton, sub_term, cfg), x0, work))
    workers = race_workers(cfg, len(trials))
    pool = _RacePool(trials, workers, work) if workers > 1 else None
    try:
        left, rounds = _halving(trials, cfg.silhouette_start_iterations, first_keep=FIRST_ROUND_KEEP, until=until,
                                work=work, what=f"race on {len(sub)} frames",
                                advance=pool.advance if pool is not None else None)
        if pool is not None:
            for trial in left:
                pool.fetch(trial)
    finally:
        if pool is not None:
            pool.close()
    final_rounds: list[list[float]] = []
    if partial:
        # the starts left go on with every picked frame, the other frames posed on the keypoints with each one's
        # shape; two or more are raced again there (a few start frames can rank two valleys the wrong way round)
        finals = []
        for trial in left:
            x, rot_s, trans_s, _ = trial.result()
            rest = _rest(basis, _coefficients(model, torch.as_tensor(x, dtype=DT)), red, offsets)
            rot_p, trans_p = _solve_frames(model, red, rest, rot[pick_t], trans[pick_t], frame_tg, cfg,
                                           cfg.frame_iterations, cfg.robust_scale)
            rot_p, trans_p = rot_p.clone(), trans_p.clone()
            rot_p[sub_t], trans_p[sub_t] = rot_s.to(rot_p.dtype), trans_s.to(trans_p.dtype)
            final = _Trial(JointRefinement(model, red, rot_p, trans_p, frame_tg.target.numpy(),
                                           frame_tg.weight.numpy(), skeleton, term, cfg), x, work)
            final.iterations = trial.iterations
            finals.append(final)
        if len(finals) > 1:
            left, final_rounds = _halving(finals, cfg.silhouette_final_iterations, work=work,
                                          what=f"finalists' race on {len(pick)} frames")
        else:
            left = finals
    best = left[0]
    remaining = cfg.silhouette_iterations - best.iterations
    if remaining > 0 or not np.isfinite(best.loss):  # a lone finalist has yet to run on every frame
        work.begin(f"the winner's {max(remaining, 1)} iterations on {len(pick)} frames")
        best.advance(max(remaining, 1))

    def information(trial: _Trial) -> np.ndarray:
        x, rot_p, trans_p, _ = trial.result()
        return JointRefinement(model, red, rot_p, trans_p, frame_tg.target.numpy(), frame_tg.weight.numpy(),
                               skeleton, term, cfg).shape_information(x)

    restarts: list[dict] = []
    t_restarts = t_finish = 0.0
    if cfg.silhouette_restarts > 0:  # the information at the winner, for its weak directions, and the restarts
        t0 = time.perf_counter()
        work.begin("the weak directions, for the restarts")
        weak = information(best)
        count = 2 * cfg.silhouette_restarts
        work.begin(f"{count} restarts and the winner, {cfg.silhouette_restart_iterations} iterations each on "
                   f"{len(pick)} frames")
        best, restarts = _restarts(best, weak, cfg, work, race_workers(cfg, count + 1))
        t_restarts = time.perf_counter() - t0
        if cfg.silhouette_restart_finish > 0:  # the valley picked, run to its floor
            t0 = time.perf_counter()
            work.begin(f"the lowest's {cfg.silhouette_restart_finish} further iterations on {len(pick)} frames")
            best.advance(cfg.silhouette_restart_finish)
            t_finish = time.perf_counter() - t0
    work.begin("what the silhouettes tell the sigmas")
    x, rot_p, trans_p, loss = best.result()
    joint = best.joint
    kp_offsets = joint.offsets(x, rot_p, trans_p)
    term.pose(_full_pose(model, red, rot_p), trans_p.numpy())
    shape = model.shape_from_free(torch.as_tensor(x, dtype=model.dtype)).double().numpy()
    t_info = time.perf_counter()
    info = information(best)
    t_info = time.perf_counter() - t_info
    figures = {"frames": int(len(pick)), "views": term.num_views, **term.figures(shape), "loss": loss,
               "race_workers": workers,
               "start_losses": rounds[0], "start_rounds": rounds, "final_rounds": final_rounds, **_offset_figures(kp_offsets),
               "keypoint_shape": np.round(keypoint_shape, 4).tolist(),
               "restarts": restarts, "restart_seconds": t_restarts,
               "restart_finish": cfg.silhouette_restart_finish if restarts else 0, "restart_finish_seconds": t_finish,
               "shape_information": info.tolist(), "information_seconds": t_info,
               "seconds": time.perf_counter() - start}
    logger.info("silhouettes: shape fitted on %d views of %d frames in %.1f s: %s", term.num_views, len(pick),
                figures["seconds"], np.round(shape, 3).tolist())
    take_offsets = None
    if cfg.silhouette_offsets_for_take and kp_offsets is not None:
        take_offsets = take_keypoint_offsets(model, red, kp_offsets, joint.kp_joint.numpy())
    figures["keypoint_offsets_in_take"] = take_offsets is not None
    return torch.as_tensor(x, dtype=DT), figures, take_offsets


def _planned_work(starts: int, until: int, start_frames: int, frames: int, partial: bool, cfg: FitConfig) -> float:
    """The frame-iterations :func:`fit_shape_silhouettes` will run (:class:`ShapeFitProgress`): the starts' race on
    ``start_frames`` frames down to ``until`` starts, with ``partial`` the finalists' race on all ``frames`` (two or
    more of them), then the winner's run to ``silhouette_iterations`` in all (a lone finalist runs at least one), then
    the restarts and the winner's run beside them (``silhouette_restarts``) and the lowest's further run
    (``silhouette_restart_finish``)."""
    race = _halving_plan(starts, FIRST_ROUND_KEEP, until)
    work = sum(race) * cfg.silhouette_start_iterations * start_frames
    won = len(race) * cfg.silhouette_start_iterations
    if partial and race[-1] > 1:
        finals = _halving_plan(race[-1])
        work += sum(finals) * cfg.silhouette_final_iterations * frames
        won += len(finals) * cfg.silhouette_final_iterations
    remaining = cfg.silhouette_iterations - won
    if partial and race[-1] == 1:
        remaining = max(remaining, 1)
    restarts = ((2 * cfg.silhouette_restarts + 1) * cfg.silhouette_restart_iterations + cfg.silhouette_restart_finish
                if cfg.silhouette_restarts else 0)
    return float(work + (max(remaining, 0) + restarts) * frames)


class _Trial:
    """One start of the refinement on the start frames: its :class:`JointRefinement`, the shape x (S,,
    unconstrained), the pose and translation deltas and its L-BFGS, kept between the rounds of :func:`_halving`,
    so that a start run in rounds takes the path it would in one run (the history and the step carried on); the
    loss and the iterations run so far."""

    def __init__(self, joint: JointRefinement, x0: np.ndarray, work: ShapeFitProgress | None = None,
                 poses_from: _Trial | None = None) -> None:
        self.joint, self.work = joint, work
        F, Jf = joint.rot0.shape[:2]
        self._x = torch.as_tensor(np.asarray(x0, dtype=float), dtype=torch.float64).clone().requires_grad_(True)
        self._delta = torch.zeros(F, Jf, 3, dtype=torch.float64, requires_grad=True)
        self._dtrans = torch.zeros(F, 3, dtype=torch.float64, requires_grad=True)
        if poses_from is not None:  # a restart: the poses where that start (on the same joint) stands
            with torch.no_grad():
                self._delta.copy_(poses_from.delta)
                self._dtrans.copy_(poses_from.dtrans)
        self._opt = torch.optim.LBFGS([self._x, self._delta, self._dtrans], lr=1.0, max_iter=1,
                                      history_size=joint.cfg.silhouette_history, line_search_fn="strong_wolfe",
                                      tolerance_change=1e-7, tolerance_grad=1e-6)
        self.loss, self.iterations, self.last_evaluations = float("inf"), 0, 0

    @property
    def frames(self) -> int:
        """How many frames this start is posed on."""
        return int(self.joint.rot0.shape[0])

    def state(self) -> dict:
        """Everything a start carries between rounds (shape, pose deltas, L-BFGS' history, loss, iterations), to
        hand it from a worker process to the fit's (:class:`_RacePool`)."""
        return {"x": self._x.detach().clone(), "delta": self._delta.detach().clone(),
                "dtrans": self._dtrans.detach().clone(), "opt": self._opt.state_dict(), "loss": self.loss,
                "iterations": self.iterations}

    def set_state(self, state: dict) -> None:
        """Take over ``state`` (:meth:`state`): this start then goes on as the one it came from would."""
        with torch.no_grad():
            self._x.copy_(state["x"])
            self._delta.copy_(state["delta"])
            self._dtrans.copy_(state["dtrans"])
        self._opt.load_state_dict(state["opt"])
        self.loss, self.iterations = state["loss"], state["iterations"]

    def advance(self, iterations: int) -> float:
        """``iterations`` more L-BFGS iterations from where this start stopped; returns the loss reached."""
        opt, joint, work = self._opt, self.joint, self.work
        opt.param_groups[0].update(max_iter=iterations, max_eval=iterations * 5 // 4)
        if work is not None:
            work.run_started(self.frames, iterations)
        self.last_evaluations = 0

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = joint.loss(self._x, self._delta, self._dtrans)
            loss.backward()
            self.last_evaluations += 1
            if work is not None:
                work.evaluated()
            return loss

        with torch.enable_grad():
            opt.step(closure)
            self.loss = float(joint.loss(self._x, self._delta, self._dtrans).detach())
        self.iterations += iterations
        if work is not None:
            work.run_finished()
        return self.loss

    @property
    def x(self) -> np.ndarray:
        return self._x.detach().numpy().copy()

    @property
    def delta(self) -> torch.Tensor:
        return self._delta.detach().clone()

    @property
    def dtrans(self) -> torch.Tensor:
        return self._dtrans.detach().clone()

    def result(self) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, float]:
        """The shape (S,), the poses rot (F, Jf, 3, 3) and trans (F, 3) reached, and the loss."""
        return self.x, self.joint.rot0 @ rotvec_to_rotmat(self.delta), self.joint.trans0 + self.dtrans, self.loss


_RACE_CORES: int | None = None


def limit_race_cores(cores: int | None) -> None:
    """The cores this process may give the starts' race when ``silhouette_workers`` is 0 (None: every core it may
    use), as ``torch.set_num_threads`` for its threads: a batch task sets its share of the machine
    (``mocap.batch.take_task``), so that takes fitted side by side do not each fork one worker per core."""
    global _RACE_CORES
    _RACE_CORES = None if cores is None else max(1, int(cores))


def race_workers(cfg: FitConfig, starts: int) -> int:
    """How many processes the starts' race runs on (``FitConfig.silhouette_workers``; 0: one per core this process
    may use, :func:`limit_race_cores`; 1: in this process): forked workers on Linux only, never from a daemonic
    process (which may not have children), never more than the starts."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    count = cfg.silhouette_workers or min(cores, _RACE_CORES or cores)
    if sys.platform != "linux" or multiprocessing.current_process().daemon:
        return 1
    return max(1, min(count, starts))


class _RacePool:
    """The starts' race on worker processes: forked once the starts are posed (sharing the masks' fields, the model
    and the starts as they stand), each owning every ``workers``-th start and running its rounds there with the fit's
    torch threads, so that a start takes exactly the path it would take here. A round's starts go to their owners;
    each reports its loss and evaluations as it ends (the fit's progress). The starts that win are fetched back
    whole (:meth:`_Trial.state`) before the pool closes. A worker's error is raised here with its traceback; a
    worker that dies (out of memory) is named, with the setting that keeps the race in this process."""

    def __init__(self, trials: list[_Trial], workers: int, work: ShapeFitProgress | None) -> None:
        ctx = multiprocessing.get_context("fork")
        self.trials, self.work, self.conns, self.procs = trials, work, [], []
        for w in range(workers):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_race_worker, args=(trials, there), daemon=True, name=f"silhouette race {w}")
            proc.start()
            there.close()
            self.conns.append(here)
            self.procs.append(proc)

    def _owner(self, i: int) -> int:
        return i % len(self.conns)

    def _receive(self, conn: multiprocessing.connection.Connection) -> tuple:
        try:
            msg = conn.recv()
        except EOFError:
            proc = self.procs[self.conns.index(conn)]
            proc.join(1.0)
            raise RuntimeError(f"{proc.name} (pid {proc.pid}) of the silhouette shape fit died (exit code "
                               f"{proc.exitcode}; out of memory?); set [fit] silhouette_workers = 1 in session.toml "
                               "to race the starts in this process") from None
        if msg[0] == "error":
            raise RuntimeError(f"the silhouette shape fit's race failed in a worker process:\n{msg[1]}")
        return msg

    def advance(self, alive: list[int], iterations: int) -> None:
        """Run ``iterations`` more of each start in ``alive`` on its worker; their losses and iterations are set
        here as each ends."""
        owned: dict[int, list[int]] = {}
        for i in alive:
            owned.setdefault(self._owner(i), []).append(i)
        for w, ids in owned.items():
            self.conns[w].send(("advance", ids, iterations))
        pending = {self.conns[w]: len(ids) for w, ids in owned.items()}
        while pending:
            for conn in multiprocessing.connection.wait(list(pending)):
                _, i, loss, evaluations = self._receive(conn)  # type: ignore[arg-type]
                trial = self.trials[i]
                trial.loss, trial.iterations = loss, trial.iterations + iterations
                if self.work is not None:
                    self.work.ran(trial.frames, iterations, evaluations)
                pending[conn] -= 1
                if not pending[conn]:
                    del pending[conn]

    def fetch(self, trial: _Trial) -> None:
        """Bring ``trial`` back from its worker as it stands there."""
        i = self.trials.index(trial)
        conn = self.conns[self._owner(i)]
        conn.send(("state", i))
        trial.set_state(self._receive(conn)[2])

    def close(self) -> None:
        """Stop the workers (at once, if they are still running a round)."""
        for conn in self.conns:
            try:
                conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn in self.conns:
            conn.close()


def _race_worker(trials: list[_Trial], conn: multiprocessing.connection.Connection) -> None:
    """A worker of :class:`_RacePool`: runs the rounds it is sent, reports each start's loss and evaluations as it
    ends, sends a start's state when asked, and stops when told (or when the fit's process goes). It says nothing
    itself: forked from a process whose progress bar may hold its console's lock at that instant, a log line or a
    warning written here could wait on that lock for ever; its errors go back through the pipe."""
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    try:
        for trial in trials:
            trial.work = None  # the fit's process tells the progress
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                return
            if msg[0] == "state":
                conn.send(("state", msg[1], trials[msg[1]].state()))
                continue
            _, ids, iterations = msg
            for i in ids:
                loss = trials[i].advance(iterations)
                conn.send(("ran", i, loss, trials[i].last_evaluations))
    except EOFError:
        return
    except BaseException:  # noqa: BLE001 - every failure goes back to the fit's process, which raises it
        try:
            conn.send(("error", traceback.format_exc()))
        except (BrokenPipeError, OSError):
            pass


def _halving(trials: list[_Trial], iterations: int, first_keep: float = 0.5, until: int = 1,
             work: ShapeFitProgress | None = None, what: str = "race",
             advance: Callable[[list[int], int], None] | None = None,
             ) -> tuple[list[_Trial], list[list[float]]]:
    """Successive halving of the refinement's starts: each round every start still in runs ``iterations`` more,
    then the better half (rounded up; after the first round the better ``first_keep``) of them by loss goes on,
    until ``until`` are left. Starts in a wrong valley of the phenotypes (gender against age, weight against
    muscle) show it in their loss after a few tens of iterations (take 105: the start nearest the truth's valley
    was the lowest but one after 62 iterations and after 124), while which start lies in the right valley no
    cheaper cost tells (a coarse silhouette cost is flat along the valleys); the halving gives many starts a short
    look and the promising ones the iterations. Returns the starts left, best first, and each round's losses (in
    the starts' order, None for those out). Each round is announced to ``work`` as a phase of ``what``. ``advance``
    (the starts' indices, iterations) runs a round's starts (:meth:`_RacePool.advance`: on worker processes); by
    default they run here, one after another."""
    if advance is None:
        def advance(ids: list[int], n: int) -> None:
            for i in ids:
                trials[i].advance(n)

    alive, rounds = list(range(len(trials))), []
    plan = _halving_plan(len(trials), first_keep, until)  # how many starts run each round: the rule, once
    for k, count in enumerate(plan):
        if work is not None:
            work.begin(f"{what}, round {k + 1}/{len(plan)}: {count} start{'s' if count > 1 else ''}")
        advance(alive, iterations)
        for i in alive:
            logger.debug("silhouettes: start %d after %d iterations: loss %.6g", i, trials[i].iterations, trials[i].loss)
        rounds.append([trials[i].loss if i in alive else None for i in range(len(trials))])
        alive = sorted(alive, key=lambda i: trials[i].loss)
        if k + 1 < len(plan):
            alive = alive[: plan[k + 1]]
    return [trials[i] for i in alive], rounds


def _restarts(best: _Trial, information: np.ndarray, cfg: FitConfig, work: ShapeFitProgress | None,
              workers: int) -> tuple[_Trial, list[dict]]:
    """Restarts of the refinement from the winner ``best`` (its poses kept, its L-BFGS history not), its shape moved
    ``cfg.silhouette_restart_sigmas`` each way along the ``cfg.silhouette_restarts`` weakest directions of what the
    silhouettes told (``information`` (S, S) in the model's shape parameters, :meth:`JointRefinement.shape_information`,
    taken to the unconstrained variables through the derivative of ``shape_from_free`` and at the sigmas' scale,
    :data:`uncertainty.SILHOUETTE_INFORMATION_SCALE`). Each and the winner (with its history) run
    ``cfg.silhouette_restart_iterations`` more, on ``workers`` processes (:class:`_RacePool`), and the lowest loss is
    returned, with each one's direction, sigmas, shape parameters at its start and end, loss and whether it won (the
    winner's direction None). The
    phenotypes' valleys (weight against muscle, gender against age) lie along the directions the silhouettes hardly
    pull: held-out take 139's winner stopped with the neck 10.8 mm wide, the truth 4.3 of its sigmas away along the
    second-weakest direction; restarted 5 sigmas that way it ends at a loss of 11161 against the winner's 11176 (run
    on as long) with the neck +4.5 mm (README, "Restarts along the weak directions")."""
    from mocap_studio.reconstruction.body.uncertainty import SILHOUETTE_INFORMATION_SCALE

    model = best.joint.model
    x = best.x
    jac = torch.autograd.functional.jacobian(model.shape_from_free, torch.as_tensor(x, dtype=model.dtype))
    jac = jac.double().numpy().reshape(len(x), len(x))
    w, v = np.linalg.eigh(_positive(jac.T @ information @ jac) / SILHOUETTE_INFORMATION_SCALE)

    def phenotypes(xv: np.ndarray) -> list[float]:
        return np.round(model.shape_from_free(torch.as_tensor(xv, dtype=model.dtype)).double().numpy(), 5).tolist()

    trials, made = [best], [{"direction": None, "sigmas": 0.0, "start": phenotypes(x)}]
    for k in range(min(cfg.silhouette_restarts, len(x))):
        step = cfg.silhouette_restart_sigmas * v[:, k] / np.sqrt(max(w[k], 1e-12))
        for sign in (1.0, -1.0):
            trial = _Trial(best.joint, np.clip(x + sign * step, -FREE_BOUND, FREE_BOUND), work, poses_from=best)
            trial.iterations = best.iterations
            trials.append(trial)
            made.append({"direction": k, "sigmas": sign * cfg.silhouette_restart_sigmas,
                         "start": phenotypes(trial.x)})
    pool = _RacePool(trials, workers, work) if workers > 1 else None
    try:
        if pool is not None:
            pool.advance(list(range(len(trials))), cfg.silhouette_restart_iterations)
            for trial in trials:  # every one back, for its shape in the figures
                pool.fetch(trial)
        else:
            for trial in trials:
                trial.advance(cfg.silhouette_restart_iterations)
    finally:
        if pool is not None:
            pool.close()
    won = min(range(len(trials)), key=lambda i: trials[i].loss)
    for i, (trial, d) in enumerate(zip(trials, made, strict=True)):
        d.update(shape=phenotypes(trial.x), loss=trial.loss, won=i == won)
        logger.debug("silhouettes: restart %s: loss %.6g", d, trial.loss)
    if won:
        logger.info("silhouettes: a restart %+g sigmas along weak direction %d went lower than the winner (%.6g "
                    "against %.6g)", made[won]["sigmas"], made[won]["direction"], trials[won].loss, trials[0].loss)
    return trials[won], made


def take_keypoint_offsets(model: SkinnedBodyModel, red: _Reduced, offsets: np.ndarray, kp_joint: np.ndarray) -> torch.Tensor:
    """The keypoint offsets the silhouette refinement found (K, 3), each in the frame of model joint ``kp_joint``
    (K,), as increments (K', Jf, 3) of the take's rest points (``_Rest.P``: keypoints then soles, per free joint):
    each joins the free joint that carries its joint (the fit holds the others at rest, so their frames turn
    with it), so that the take's poses are fitted to the keypoints less the detector's bias the silhouettes
    told apart from the body."""
    free = {int(j): i for i, j in enumerate(red.free.numpy())}
    out = torch.zeros(red.kp_matrix.shape[0], len(free), 3, dtype=DT)
    for k, j in enumerate(np.asarray(kp_joint, dtype=np.int64)):
        while int(j) not in free:
            j = model.parents[j]
        out[k, free[int(j)]] = torch.as_tensor(offsets[k], dtype=DT)
    return out


def _offset_figures(offsets: np.ndarray | None) -> dict:
    """The keypoint offsets' figures for the fit's report (mm): their RMS and largest length."""
    if offsets is None or not len(offsets):
        return {}
    norms = 1000 * np.linalg.norm(offsets, axis=1)
    return {"keypoint_offsets_mm_rms": float(np.sqrt(np.mean(norms**2))), "keypoint_offsets_mm_max": float(norms.max())}


def _positive(a: np.ndarray) -> np.ndarray:
    """Symmetric ``a`` with its negative eigenvalues set to 0 (an information that rounding left a little negative
    in some direction)."""
    w, v = np.linalg.eigh(0.5 * (a + a.T))
    return (v * np.maximum(w, 0.0)) @ v.T


SHAPE_STEP = 0.01
"""Central-difference step of the unconstrained shape variables in :meth:`JointRefinement.shape_information`
(Anny: a phenotype moves by up to 0.005, the surface about a millimetre)."""
POSE_STEP_RAD = 0.002
TRANS_STEP_M = 0.001


FREE_BOUND = 1.5
"""Starts of the silhouette fit keep the unconstrained shape within this (Anny: phenotypes within 0.05-0.95)."""


def _project_torch(cam, pts: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - a Camera
    """World points (..., 3) -> image pixels (..., 2) through a pinhole camera with OpenCV distortion (k1 k2 p1
    p2 k3), differentiable; points behind the camera are placed far outside the image."""
    if cam.model != "pinhole":
        raise MaskError(f"camera {cam.name}: the silhouette fit projects pinhole cameras only, not {cam.model}")
    R = torch.as_tensor(np.array(cam.R), dtype=pts.dtype)
    t = torch.as_tensor(np.array(cam.t), dtype=pts.dtype)
    pc = pts @ R.T + t
    z = pc[..., 2].clamp_min(1e-3)
    x, y = pc[..., 0] / z, pc[..., 1] / z
    d = np.zeros(5)
    d[: min(5, len(cam.dist))] = np.asarray(cam.dist, dtype=float)[:5]
    k1, k2, p1, p2, k3 = (float(v) for v in d)
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    K = cam.K
    u = K[0, 0] * xd + K[0, 1] * yd + K[0, 2]
    v = K[1, 1] * yd + K[1, 2]
    behind = pc[..., 2] < 0.05
    return torch.stack([torch.where(behind, torch.full_like(u, -1e6), u), v], -1)


class JointRefinement:
    """The picked frames' poses and the shape refined together on the silhouettes and the keypoints (torch,
    L-BFGS): a pose the keypoints place a little off (a detector's bias of 2 cm) would otherwise be paid for by
    the shape. model; rot0 (F, Jf, 3, 3) and trans0 (F, 3) of the free joints ``red.free`` (Jf,); keypoint targets
    (F, K, 3) with weights (F, K) (0: missing) in ``skeleton``; the masks as for :class:`SilhouetteTerm`."""

    def __init__(self, model: SkinnedBodyModel, red: _Reduced, rot0: torch.Tensor, trans0: torch.Tensor,
                 target: np.ndarray, weight: np.ndarray, skeleton: str, term: SilhouetteTerm, cfg: FitConfig):
        self.model, self.term, self.cfg, self.red = model, term, cfg, red
        dt = torch.float64
        self.free = red.free
        self.rot0 = rot0.to(dt)
        self.trans0 = trans0.to(dt)
        reg = model.keypoint_regressor(skeleton)
        self.reg_ids = torch.as_tensor(reg.vertex_ids)
        self.reg = torch.as_tensor(np.where(reg.supported[:, None], reg.matrix, 0.0), dtype=dt)
        w = np.where(reg.supported[None], weight, 0.0)
        self.target = torch.as_tensor(np.nan_to_num(target), dtype=dt)
        self.weight = torch.as_tensor(w, dtype=dt)
        self.ids_all = torch.cat([term.ids, self.reg_ids])
        # each keypoint's offset turns with the joint that moves its regressor's vertices most
        influence = reg.matrix @ model._weights[self.reg_ids].double().numpy()  # (K, J)
        self.kp_joint = torch.as_tensor(np.abs(influence).argmax(1))
        self.n_sil = len(term.ids)
        self.gap = term.gaps(trans0.double().numpy(), cfg.silhouette_gap * cfg.silhouette_spacing_m)
        self.rest_normals = None  # the surface points' normals on the average body's rest mesh, for the rim
        if cfg.silhouette_rim_cos > 0:
            self.rest_normals = torch.as_tensor(vertex_normals(model.rest_mesh(model.default_shape()),
                                                               np.asarray(model.faces))[term.ids.numpy()])

    def posed(self, x: torch.Tensor, delta: torch.Tensor, dtrans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, N', 3) surface points then regressor vertices for shape x (S,), pose deltas (F, Jf, 3) and
        translation deltas (F, 3), and the joints' global rotations (F, J, 3, 3)."""
        m = self.model
        shape = m.shape_from_free(x.to(m.dtype)).to(torch.float64)
        F = self.rot0.shape[0]
        rot = torch.eye(3, dtype=torch.float64).expand(F, m.num_joints, 3, 3).clone()
        rot[:, self.free] = self.rot0 @ rotvec_to_rotmat(delta)
        rest_j = m.rest_joints_torch(shape.to(m.dtype)).to(torch.float64)
        rest_v = m.rest_vertices_torch(shape.to(m.dtype), self.ids_all).to(torch.float64)
        rg, tg = forward_kinematics(rot, rest_j, m._levels)
        weights = m._weights[self.ids_all].to(torch.float64)
        pts = skin(rest_v, weights, rg, tg, rest_j) + (self.trans0 + dtrans)[:, None]
        self.normals = None
        if self.rest_normals is not None:  # turned by the blended rotation of each point (skinning is linear)
            blend = (weights[: self.n_sil] @ rg.reshape(F, m.num_joints, 9)).reshape(F, self.n_sil, 3, 3)
            turned = (blend @ self.rest_normals[..., None])[..., 0]
            self.normals = turned / turned.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        return pts, rg

    def _offset(self, kp: torch.Tensor, rg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's keypoints kp (F, K, 3) moved by each keypoint's offset for the take, and the offsets (K, 3)
        in the frame of the joint each turns with (rg (F, J, 3, 3): the joints' global rotations). The offsets are
        not parameters of the search: for the shape and poses at hand each is the least-squares one (the keypoint
        residuals turned into its joint's frame, averaged over the frames, shrunk by the prior), so that the
        search does not have to walk the long valley in which offsets, bones and shape trade off."""
        cfg = self.cfg
        R = rg[:, self.kp_joint].to(kp.dtype)  # (F, K, 3, 3)
        local = torch.einsum("fkji,fkj->fki", R, self.target - kp)  # residuals in the joints' frames
        sigma = cfg.silhouette_keypoint_sigma_m or cfg.keypoint_sigma_m
        shrink = (sigma / cfg.silhouette_keypoint_offset_sigma_m) ** 2
        offsets = (self.weight[..., None] * local).sum(0) / (self.weight.sum(0) + shrink)[:, None]
        return kp + torch.einsum("fkij,kj->fki", R, offsets), offsets

    def offsets(self, x: np.ndarray, rot: torch.Tensor, trans: torch.Tensor) -> np.ndarray | None:
        """(K, 3) the keypoint offsets (see :meth:`_offset`) for shape x (S,) and poses rot (F, Jf, 3, 3), trans
        (F, 3); None when ``silhouette_keypoint_offset_sigma_m`` is 0."""
        if self.cfg.silhouette_keypoint_offset_sigma_m <= 0:
            return None
        with torch.no_grad():
            delta = rotmat_to_rotvec(self.rot0.transpose(-1, -2) @ rot.to(torch.float64))
            pts, rg = self.posed(torch.as_tensor(x, dtype=torch.float64), delta, trans.to(torch.float64) - self.trans0)
            kp = torch.einsum("kn,fnd->fkd", self.reg, pts[:, self.n_sil :])
            return self._offset(kp, rg)[1].numpy()

    def loss(self, x: torch.Tensor, delta: torch.Tensor, dtrans: torch.Tensor) -> torch.Tensor:
        """Silhouettes (weight ``silhouette_weight`` per view's mean robust squared distance over tau^2) plus the
        keypoints' robust cost (sigma ``keypoint_sigma_m``) plus the shape prior plus a prior on each joint's turn
        away from its keypoint pose (sigma ``silhouette_pose_sigma_rad``: coarse masks could otherwise be matched
        by a contorted pose of the wrong body). With ``silhouette_keypoint_offset_sigma_m``, each keypoint of the
        model is moved by an offset for the take, expressed in the frame of the joint it moves with (a detector's
        bias against the model's definition of the keypoint, turning with the body), under that prior. Plus the
        take's joint limits (:meth:`limit_cost`)."""
        cfg = self.cfg
        pts, rg = self.posed(x, delta, dtrans)
        sil = self.term.loss_torch(pts[:, : self.n_sil], self.gap, self.normals,
                                   cfg.silhouette_rim_cos)
        kp = torch.einsum("kn,fnd->fkd", self.reg, pts[:, self.n_sil :])
        offset_prior = kp.new_zeros(())
        if cfg.silhouette_keypoint_offset_sigma_m > 0:
            kp, offsets = self._offset(kp, rg)
            offset_prior = (offsets**2).sum() / cfg.silhouette_keypoint_offset_sigma_m**2
        r2 = ((kp - self.target) ** 2).sum(-1) / (cfg.silhouette_keypoint_sigma_m or cfg.keypoint_sigma_m) ** 2
        c2 = cfg.robust_scale**2
        kp_cost = (self.weight * c2 * torch.log1p(r2 / c2)).sum()
        prior = self.model.shape_prior(self.model.shape_from_free(x.to(self.model.dtype))).to(torch.float64)
        pose_prior = (delta**2).sum() / cfg.silhouette_pose_sigma_rad**2
        return (cfg.silhouette_weight * sil + kp_cost + 2 * cfg.shape_prior_weight * prior + pose_prior + offset_prior
                + self.limit_cost(delta))

    def limit_cost(self, delta: torch.Tensor) -> torch.Tensor:
        """The anatomical joint limits of the take's poses (``joint_limit_weight`` per radian squared beyond each
        range; see ``fit_skeleton._joint_limits``) on the refined poses (pose deltas (F, Jf, 3)): a knee turns about
        its hinge only, a foot hardly about the shin, a thigh at most 40 degrees about its own axis. The keypoints
        hardly see those twists (a straight leg's keypoints lie on a line); free here they wandered (seed 30: a shin
        0.76 rad, a thigh 0.33 rad about its bone, on average over the picked frames; with the limits 0.02 and 0.05),
        the skinning narrowed the twisted legs and hips and the shape grew to fill the masks."""
        if self.cfg.joint_limit_weight <= 0:
            return delta.new_zeros(())
        rv = rotmat_to_rotvec(self.rot0 @ rotvec_to_rotmat(delta))
        return (_limit_terms(self.red, rv, self.cfg.joint_limit_weight)[0] ** 2).sum()

    def residuals(self, x: torch.Tensor, delta: torch.Tensor, dtrans: torch.Tensor, fixed: dict | None = None
                  ) -> tuple[list[torch.Tensor], torch.Tensor, dict]:
        """The loss (less the shape prior) as weighted residuals whose squares sum to its quadratic model about the
        point ``fixed`` was taken at (each robust term's weight, the rim and outline points, the keypoint offsets
        held there; :meth:`distances`): each frame's silhouette rows (a list of F) and the other rows (F, Q)
        (keypoints, pose prior, joint limits), each frame's rows depending on its own pose only. Returns both and
        ``fixed``."""
        cfg = self.cfg
        sigma = cfg.silhouette_keypoint_sigma_m or cfg.keypoint_sigma_m
        with torch.no_grad():
            pts, rg = self.posed(x, delta, dtrans)
            kp = torch.einsum("kn,fnd->fkd", self.reg, pts[:, self.n_sil :])
            if fixed is None:
                dists, taken = self.term.distances(pts[:, : self.n_sil], self.gap, self.normals, cfg.silhouette_rim_cos)
                tau2 = self.term.tau**2
                r2 = ((kp - self.target) ** 2).sum(-1) / sigma**2
                c2 = cfg.robust_scale**2
                offsets = self._offset(kp, rg)[1] if cfg.silhouette_keypoint_offset_sigma_m > 0 else None
                fixed = {"taken": taken, "offsets": offsets,
                         # Cauchy log1p(d^2 / tau^2) ~ d^2 / (tau^2 + d^2): weights of the views' mean distances
                         "sil_w": [(cfg.silhouette_weight / (tau2 + d**2) / max(len(d), 1),
                                    cfg.silhouette_weight / (tau2 + e**2) / max(len(e), 1)) for d, e in dists],
                         "kp_w": self.weight * c2 / (c2 + r2)}
            else:
                dists = self.term.distances(pts[:, : self.n_sil], self.gap, fixed=fixed["taken"])[0]
            F = pts.shape[0]
            sil: list[list[torch.Tensor]] = [[pts.new_zeros(0)] for _ in range(F)]
            for (f, *_), (d, e), (wd, we) in zip(self.term.views, dists, fixed["sil_w"], strict=True):
                sil[f] += [d * wd.sqrt(), e * we.sqrt()]
            if fixed["offsets"] is not None:
                kp = kp + torch.einsum("fkij,kj->fki", rg[:, self.kp_joint].to(kp.dtype), fixed["offsets"])
            other = [((kp - self.target) * (fixed["kp_w"].sqrt() / sigma)[..., None]).reshape(F, -1),
                     delta.reshape(F, -1) / cfg.silhouette_pose_sigma_rad]
            if cfg.joint_limit_weight > 0:
                rv = rotmat_to_rotvec(self.rot0 @ rotvec_to_rotmat(delta))
                other.append(_limit_terms(self.red, rv, cfg.joint_limit_weight)[0])
        return [torch.cat(r) for r in sil], torch.cat(other, 1), fixed

    def shape_information(self, x: np.ndarray) -> np.ndarray:
        """(S, S) what the picked frames' silhouettes tell about the shape beyond their keypoints, at shape x (S,
        unconstrained) and the poses this refinement starts from (a finished refinement's): the Gauss-Newton
        information J^T J of :meth:`residuals` with every frame's pose and translation eliminated (Schur complement),
        less the same without the silhouette rows, in the model's shape parameters (not the unconstrained ones).
        The loss is taken as a negative log-likelihood as it stands; :data:`SILHOUETTE_INFORMATION_SCALE` relates it
        to the errors measured. The residuals' derivatives are central differences (steps that move the surface
        about a millimetre) with the robust weights and the points taken held (so each residual is smooth)."""
        F, Jf = self.rot0.shape[:2]
        dt = torch.float64
        x0 = torch.as_tensor(x, dtype=dt)
        zero_d, zero_t = torch.zeros(F, Jf, 3, dtype=dt), torch.zeros(F, 3, dtype=dt)
        sil0, other0, fixed = self.residuals(x0, zero_d, zero_t)

        def rows(xv: torch.Tensor, dv: torch.Tensor, tv: torch.Tensor) -> list[np.ndarray]:
            sil, other, _ = self.residuals(xv, dv, tv, fixed)
            return [torch.cat([s_f, o_f]).numpy() for s_f, o_f in zip(sil, other, strict=True)]

        S, P = len(x0), 3 * Jf + 3
        n_sil = [len(r) for r in sil0]
        j_x = [np.zeros((n + other0.shape[1], S)) for n in n_sil]
        j_p = [np.zeros((n + other0.shape[1], P)) for n in n_sil]
        for i in range(S):
            e = torch.zeros(S, dtype=dt)
            e[i] = SHAPE_STEP
            for f, (a, b) in enumerate(zip(rows(x0 + e, zero_d, zero_t), rows(x0 - e, zero_d, zero_t), strict=True)):
                j_x[f][:, i] = (a - b) / (2 * SHAPE_STEP)
        for k in range(P):
            step = POSE_STEP_RAD if k < 3 * Jf else TRANS_STEP_M
            d, t = zero_d.clone(), zero_t.clone()
            if k < 3 * Jf:
                d[:, k // 3, k % 3] = step
            else:
                t[:, k - 3 * Jf] = step
            for f, (a, b) in enumerate(zip(rows(x0, d, t), rows(x0, -d, -t), strict=True)):
                j_p[f][:, k] = (a - b) / (2 * step)

        def eliminated(silhouettes: bool) -> np.ndarray:
            info = np.zeros((S, S))
            for f in range(F):
                first = 0 if silhouettes else n_sil[f]
                a, b = j_x[f][first:], j_p[f][first:]
                pp = b.T @ b + 1e-9 * np.eye(P) * (1 + np.trace(b.T @ b))
                xp = a.T @ b
                info += a.T @ a - xp @ np.linalg.solve(pp, xp.T)
            return info

        info = eliminated(True) - eliminated(False)
        # in the shape parameters: shape = g(x) element by element, so d x / d shape = 1 / g'(x)
        slope = torch.func.jacfwd(lambda v: self.model.shape_from_free(v.to(self.model.dtype)).to(dt))(x0).numpy()
        inv = np.linalg.inv(slope)
        return _positive(inv.T @ info @ inv)

    def run(self, x0: np.ndarray, iterations: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, float]:
        """L-BFGS from shape x0 (S,) and the start poses. Returns the shape, rot (F, Jf, 3, 3), trans (F, 3) and
        the final loss."""
        trial = _Trial(self, x0)
        trial.advance(iterations)
        return trial.result()
