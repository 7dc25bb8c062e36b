"""Settings, result and error of body fitting: :class:`FitConfig` (the ``[fit]`` table of session.toml),
:class:`BodyMotion` (a fitted take, what body.npz holds) and :class:`FitError`.

Torch-free, so that readers of body.npz (export, the report) need only numpy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class FitConfig:
    """Settings of sequence fitting (the ``[fit]`` table of session.toml)."""

    REMOVED_KEYS: ClassVar[dict[str, str]] = {
        "silhouette_candidates": "the silhouette refinement's starts are no longer random bodies ranked on a coarse "
                                 "cost but bodies spread over the phenotypes (since stop 34); their number is "
                                 "silhouette_starts",
        "silhouette_feet_allowance_px": "the masks now say how far outside them each body part may lie (masks.npz's "
                                        "outline_allowance, their segmenter's: MediaPipe's feet 0.21 px, arms 0.15, "
                                        "hands 4, head -0.15), and the fit allows for it (since stop 42)"}
    """Settings of older versions, with what replaced them (``common.config.config_from_mapping`` says so)."""
    RUNTIME_KEYS: ClassVar[tuple[str, ...]] = ("threads", "silhouette_workers")
    """Settings that change how fast the fit runs, never what it finds: left out of the fit stage's fingerprint, so
    that changing them refits nothing."""

    model: str = "anny"
    """Body model: "anny" (open, default), "smpl", "smplh" or "smplx" (user's files)."""
    gender: str = "neutral"
    """Gender of the SMPL-family model file ("neutral", "female", "male")."""
    model_dir: str = ""
    """Folder of SMPL-family model files; empty means ``<repo>/.cache/body_models``."""
    num_betas: int = 10
    """Shape coefficients of SMPL-family models."""
    window: int = 500
    """Frames solved together in one batch of per-frame solves (bounds memory on long takes)."""
    shape_frames: int = 100
    """Frames (spread over the take) used to fit the shape."""
    shape_iterations: int = 12
    """Levenberg-Marquardt iterations of the shape stage."""
    shape_candidates: int = 1024
    """Candidate shapes (the average body and random ones) scored in each round of the shape search."""
    shape_starts: int = 4
    """Best candidates of each round of the shape search refined continuously."""
    shape_start_iterations: int = 3
    """Rounds of the shape search (each re-poses the frames with the shape found so far)."""
    marker_offset_sigma_m: float = 0.02
    """A detector's surface landmarks (eyes, ears, mouth, fingers, heels, toes) need not sit where the
    model's definitions put them: each gets one offset per take, rigidly attached to its bone and fitted
    with the shape (prior: this many metres), so that a systematic difference moves the landmark and not
    the body's shape. The shape search scores shapes on the joints alone for the same reason. 0: off
    (every keypoint is taken at the model's definition of it)."""
    marker_rounds: int = 1
    """Rounds of (the markers' prior from the spread of their offsets, then shape and offsets refined)."""
    shape_step_limit: float = 0.3
    """Largest change of an (unconstrained) shape variable in one shape iteration."""
    frame_iterations: int = 4
    """Levenberg-Marquardt iterations of each per-frame pass (the first and the last two do twice as many:
    a frame left short of convergence differs from its neighbours, which is jitter)."""
    outlier_sigmas: float = 5.0
    """Keypoints farther than this many ``keypoint_sigma_m`` from the fit are dropped before smoothing."""
    cutoff_hz: float = 6.0
    """Low-pass cut-off applied to the keypoints before the last passes (0: no smoothing)."""
    keypoint_sigma_m: float = 0.015
    """Expected keypoint noise in metres (scales the keypoint term)."""
    robust_scale: float = 4.0
    """Geman-McClure scale in units of ``keypoint_sigma_m``: residuals beyond it stop pulling."""
    crowd_robust_scale: float = 0.7
    """``robust_scale`` for the people of a several-people take (``[associate] people`` other than 1; the fit stage
    puts it in place of ``robust_scale``). A crowd's keypoints err in runs: a limb hidden behind another performer
    is placed 10-30 cm off, by two views that agree, for a fraction of a second, and a kernel of 60 mm still pulls
    the body towards that. Five studio takes of three performers (mean per-vertex error of the 15): scale 4 -> 2 ->
    1.5 gave 36.1 -> 34.0 -> 33.2 mm; with the crowd's hidden views kept as weak views (stop 45), four takes' 12
    performers 1.5 -> 1.0 -> 0.7 -> 0.5 gave 33.2 -> 31.6 -> 31.0 -> 30.4 mm and 0.3 threw one performer off
    (35.7 -> 44.1 mm), so 0.7 (figures in README, "Several people in one take")."""
    error_scale_px: float = 4.0
    """A keypoint with this triangulation (reprojection) error gets half the weight of a perfect one."""
    pose_prior_weight: float = 0.02
    """Weight of the pose prior (local rotations near rest, per radian squared)."""
    joint_limit_weight: float = 50.0
    """Weight of the anatomical joint limits (per radian squared): a knee bends about one axis (its
    rotation about the other two is penalised) and a foot hardly turns about the shin. Keypoints see
    little of a shin's twist, so without it the twist wanders and drags the heel and ankle with it."""
    flip_rad: float = 0.5
    """A frame with a joint turned more than this from the midpoint of its neighbours' is solved again from
    that midpoint (and kept if better): a single-frame flip of a foot or forearm."""
    temporal_weight: float = 3.0
    """Weight of the temporal term of the last passes (per radian squared; three times that for the hands,
    forearms, feet and head, whose turn keypoints barely tell): each frame's local rotations are pulled
    towards the midpoint of its neighbours'. It holds what the keypoints hardly see (a bone's twist about
    its own axis) from flipping frame to frame; 0 turns it off."""
    start_temporal_weight: float = 10.0
    """Weight of the temporal term in the passes before the keypoints are low-passed (per radian squared),
    strong so that the per-frame solves from the analytic start settle every frame in the same orientation
    of what the keypoints barely tell (a foot's or a forearm's turn about its bone), where a flip, once in,
    cannot be undone by a later pass; 0 turns it off."""
    shape_prior_weight: float = 1.0
    """Weight of the shape prior (keeps weakly observed shape parameters near the average body)."""
    contact: bool = True
    """Detect foot contacts and keep a still foot still and on the floor."""
    contact_sigma_m: float = 0.0005
    """How closely a sole point in contact is held to its anchor (metres)."""
    contact_speed_m_s: float = 0.15
    """A sole point slower than this (and low enough) is in contact."""
    contact_cutoff_hz: float = 3.0
    """Low-pass cut-off of the sole paths whose speed tells contact (0: raw paths)."""
    contact_height_m: float = 0.06
    """A sole point more than this above its rest clearance over the floor is not in contact."""
    contact_min_s: float = 0.1
    """Contacts shorter than this are ignored."""
    contact_ramp_s: float = 0.08
    """The contact term fades in and out over this long at each end of a contact."""
    floor_tolerance_m: float = 0.03
    """The ground is estimated from the take's still feet (``fit_contacts.estimate_ground``: a raised
    platform's top); an estimate within this of Z = 0 is taken as the calibrated floor itself. A contact
    whose sole lies within this of the ground is put on the ground; otherwise it is held where it is (a
    foot on a step or a box)."""
    reprojection: bool = True
    """In ``mocap fit``: add the 2D keypoints of every calibrated camera (reprojection term) when the session
    has them; ``fit_sequence`` uses them whenever it is given a rig and 2D keypoints."""
    reprojection_weight: float = 1.0
    """Weight of the 2D reprojection term when 2D keypoints and cameras are given."""
    reprojection_sigma_px: float = 3.0
    """Expected 2D keypoint noise in pixels."""
    min_joints: int = 4
    """A frame needs this many valid keypoints to count as observed."""
    threads: int = 1
    """torch threads for the fit (restored afterwards); 0 keeps torch's default (one per core). The fit's
    batched solves are small, and torch's worker threads spin while they wait: on a 2-core machine whose
    cores other work shares, two threads fitted a real 100-frame take in 62 s of CPU (100 s wall) where one
    takes 7 s. On two idle cores two threads are faster (the demo's 184 frames in 4.2 s against 6.0 s)."""

    silhouettes: bool = False
    """Fit the shape to the person masks too (``masks.npz`` from the detect stage) where the session has them:
    girths that keypoints cannot tell (see reconstruction/body/fit_silhouette.py). Off by default: it adds about two
    minutes to the fit. The ``silhouette_*`` settings' defaults are the ones measured through the whole pipeline
    (README, "Body measurements"): on ten studio takes at 1280x720 with full-size masks, every girth within 10 mm on
    10 of 10 (39-154 mm off on average from keypoints alone), the height within 5 mm too on 8. The demo take and
    ``mocap scan`` turn it on."""
    scan: bool = False
    """A scan take (the person holds an A-pose and turns): the shape from ``scan_frames`` frames' silhouettes,
    every camera's view of them (a scan fits the silhouettes whatever ``silhouettes`` says); no foot contacts are
    held (the feet pivot as the person turns)."""
    silhouette_frames: int = 10
    """Frames (spread over the take, every camera seeing the body) whose silhouettes the shape is fitted to."""
    scan_frames: int = 24
    """Frames of a scan take (``scan``) whose silhouettes the shape is fitted to."""
    silhouette_tau_px: float = 2.0
    """Robust scale of the silhouette distances, in mask pixels (larger misfits, from loose clothing, hair, a
    shadow or a pose a little off, cost ever less per pixel)."""
    silhouette_spacing_m: float = 0.015
    """Spacing of the surface points projected into the masks (one vertex per cube of this size)."""
    silhouette_weight: float = 1000.0
    """Weight of the silhouettes (per view: the mean robust squared distance over tau^2) against the keypoints
    (per keypoint: its robust squared distance over keypoint_sigma_m^2) when the shape and the picked frames'
    poses are refined together."""
    silhouette_iterations: int = 500
    """L-BFGS iterations of that joint refinement: the winner of the starts' rounds (``silhouette_start_iterations``)
    runs on to this many, on every picked frame. 500 rather than 800: on the ten full-size takes 101-110 per-vertex
    17.45 mm against 17.42 and every mean girth error within 1.2 mm of 800's, the shape fit 109-110 s against 167 s
    (README, "Body measurements")."""
    silhouette_history: int = 100
    """L-BFGS history (pairs of steps) of that refinement. Measured on tuning seed 11 (offsets, contour): 100 reaches
    in 800 iterations the loss 20 reaches in 1200 (751.9 against 750.6; 823 against 854 at 400)."""
    silhouette_start_frames: int = 4
    """Each start of that refinement is refined on this many of the picked frames (spread over them; 0: all of
    them), the best then on all of them, the other frames' poses solved on the keypoints with its shape: the starts
    cost that much less."""
    silhouette_gap: float = 0.25
    """Mask-outline distances up to this fraction of the surface points' projected spacing are forgiven (an
    outline pixel between two points is that far from the true body too)."""
    silhouette_contour: bool = True
    """Place each mask's outline on its contour, halfway between inside and outside pixel centres (a signed distance
    field and outline points at the pixel pairs' midpoints), instead of at the inside pixels' centres, on average
    half a pixel inside the true outline. Measured on the true body, poses and masks (tuning seeds 11 and 12, 8.5 mm
    a mask pixel at the body): the silhouette cost's minimum over an offset of the surface along its normals sits at
    -2.5 / -2.2 mm with the inside centres (a body scaled by 0.997: height -5 mm), at -0.0 / +0.4 mm with the
    contour and a ``silhouette_gap`` of 0.5 (tests/test_silhouettes.py); with ``silhouette_rim_cos`` the gap of
    0.25 is the unbiased one. Held-out seeds with the rim and keypoint offsets: README, "Half a pixel, and the
    rim". On by default."""
    silhouette_rim_cos: float = 0.2
    """The model -> mask distances of that refinement are those of the model's rim only: the surface points whose
    normal is within this cosine of perpendicular to the camera's ray (and no deeper than 2 mask pixels inside the
    mask), where the model's outline lies; 0: every surface point, most of them inside the mask, so that a model
    overlapping the mask too far pays little against an outline it leaves uncovered and a body posed a little off
    grows. Measured on tuning seed 11's true body, true masks, poses turned by 0.01 / 0.03 rad of noise per joint:
    the cost is least with the surface +4.0 / +14.4 mm outside the truth on every point (contour, gap 0.5), +0.6 /
    +4.5 mm on the rim (0.2, contour, gap 0.25)."""
    silhouette_keypoint_sigma_m: float = 0.0
    """The keypoints' noise in that refinement (0: ``keypoint_sigma_m``); larger lets the silhouettes move the poses
    further from a detector's biased keypoints."""
    silhouette_pose_sigma_rad: float = 0.5
    """Prior on each joint's turn away from the pose the keypoints gave it, in that refinement."""
    silhouette_keypoint_offset_sigma_m: float = 0.2
    """Prior (metres, per axis) on one offset per keypoint for the take, estimated in that refinement: a detector's
    constant bias against the model's definition of the keypoint, expressed in the frame of the joint the keypoint
    moves with (it turns with the body); each is solved in closed form for the shape and poses at hand (not a
    parameter of the search). 0: no offsets. Measured (README, "Is it the search or the objective?"): with 0.2, a
    0.5 rad ``silhouette_pose_sigma_rad`` and 1200 ``silhouette_iterations`` seed 24's hip went from +27 to -1 mm;
    at 300 iterations the refinement stops far short of its minimum (hip +23 mm even from the true body)."""
    silhouette_offsets_for_take: bool = True
    """With ``silhouette_keypoint_offset_sigma_m`` > 0 (0: no offsets, nothing to carry): the take's poses (fitted
    on the keypoints after the shape) are fitted to the model's keypoints moved by the offsets the silhouette
    refinement found (each turning with its joint), in place of the marker offsets of the keypoint shape fit: a
    detector's constant bias, which the silhouettes tell apart from the body, then stays out of the poses as it
    stays out of the shape. Measured with
    the contour, the rim and offsets of 0.2 m on ten held-out studio scenes (README): per-vertex error 17.5-25.8 ->
    14.4-19.2 mm; the shape and the time are unchanged."""
    silhouette_starts: int = 24
    """How many bodies spread evenly over the phenotypes (a scrambled Sobol set, ``fit_silhouette.START_SPREAD``)
    start the refinement besides the keypoints' shape and the average body. The phenotypes have valleys (gender
    against age, weight against muscle) that the silhouettes tell apart only once refined, and random or ranked
    starts left gaps where the truth's valley lay. On the twenty full-pipeline takes 101-120 (README, "The starts
    spread over the phenotypes"), 24 of them (raced with ``fit_silhouette.FIRST_ROUND_KEEP``) put every girth within
    10 mm on 20 of 20 and the height within 5 mm too on 19 (the held-out 111-120: 10 of 10), where the best 8 of 200
    random bodies on a coarse silhouette cost gave 16 and 15 (7 of 10); the shape fit 21 % slower. 12 fixed only
    116 of the held-out misses; 48 made 110 and 112 worse (the race's picks); 48 with two ``silhouette_finalists``:
    below."""
    silhouette_start_iterations: int = 20
    """Iterations each start still in runs per round of the starts' successive halving (on the
    ``silhouette_start_frames``): after each round the better half goes on (after the first the better quarter,
    ``fit_silhouette.FIRST_ROUND_KEEP``), until ``silhouette_finalists`` are left (``fit_silhouette._halving``); the
    winner then runs the rest of ``silhouette_iterations`` on every picked frame."""
    silhouette_finalists: int = 1
    """How many starts the successive halving on the ``silhouette_start_frames`` leaves (1: its winner alone); each
    then runs ``silhouette_final_iterations`` on every picked frame (the other frames posed on the keypoints with its
    shape) and the better goes on: a few start frames can rank two valleys of the phenotypes the wrong way round.
    Measured with 48 starts and 2 finalists on the twenty takes 101-120 and the demo take (README, "The finalists
    raced on every frame"): the finalists' order overturned on 7 of the twenty; every girth within 10 mm on 19 of
    20 (105's thigh -13.8 mm at a loss 2.6 % lower than 24 starts': the objective, not the search) and the demo's
    within 5.3 mm (neck +12.7 -> +2.5); the mean worst girth 3.4 mm on the held-out ten (4.3), 6.1 on 101-110 (4.7);
    the shape fit 1.41x (the twenty) to 1.54x (the demo) as long. Not the default: no more takes pass than with 24
    starts, at that cost. With 24 starts and 2 finalists (4 takes only: the demo, 110, 112, 119) the pick after
    120 iterations was the halving's own."""
    silhouette_workers: int = 0
    """Processes the starts' race runs on (``fit_silhouette._RacePool``): 0, one per core this process may use (at
    most the starts); 1, in this process. Each start runs whole on one process with the fit's ``threads``, so the
    fit finds the same body to the last bit whatever the count (``tests/test_silhouettes.py``); on Linux only (the
    workers are forked, sharing the masks' fields), elsewhere and inside a daemonic process the race runs here."""
    silhouette_final_iterations: int = 120
    """Iterations each of the ``silhouette_finalists`` runs on every picked frame before the better one goes on (the
    finalists' losses on every frame, run to the end on four takes: 112 with 48 starts ranks them right from 100
    iterations on, the demo from 120, 110 with 24 starts only after 360)."""

    silhouette_restarts: int = 2
    """After the winner's ``silhouette_iterations``, restarts from its shape moved ``silhouette_restart_sigmas``
    each way along this many of the weakest directions of what the silhouettes told (``shape_information`` taken to
    the fit's unconstrained variables, at ``uncertainty.SILHOUETTE_INFORMATION_SCALE``), its poses kept; each, and
    the winner itself, runs ``silhouette_restart_iterations`` more (on the race's workers) and the lowest loss goes on
    (``fit_silhouette._restarts``). The phenotypes' valleys lie along the directions the silhouettes hardly pull, a
    few sigmas apart. Measured on six fresh studio takes (151-156) and held-out 139 (README, "Restarts along the weak
    directions"): the whole acceptance met on 7 of 7 against 4 (a restart won on 139, neck +10.8 -> +4.5 mm, and on
    155, waist -11.1 -> -3.2, where the winner run on would have passed too at -8.4; 153's height came within 5 mm
    from the winner's own further iterations); the shape fit about 95 s longer (226-241 s against 124-143). 0: none."""
    silhouette_restart_sigmas: float = 5.0
    """How far each restart (``silhouette_restarts``) starts from the winner, in the sigmas of the silhouettes'
    information (139's truth lay 4.3 of them from its winner along the second-weakest direction; restarts at 3 ended
    above the winner run on, at 6 below it)."""
    silhouette_restart_iterations: int = 150
    """Iterations each restart (``silhouette_restarts``) and the winner run before the lowest goes on."""
    silhouette_restart_finish: int = 300
    """Iterations the lowest of the restarts (``silhouette_restarts``; the winner, where it stayed lowest) then runs on,
    its L-BFGS history kept. 150 iterations pick the valley but do not reach its floor: on the demo take the restart
    that won ended there with the waist -11.8 mm, the neck +6.8 mm and the loss still falling; 300 more took them to
    -4.4 and +2.7 mm (loss 12312 -> 12056). Over the demo and eleven studio takes refitted the five girths' summed
    |error| went 145.9 -> 122.1 mm, the heights -0.4 mm on average (156's -5.0 -> -5.3 mm, over the bound; README,
    "The restart's valley run to its floor"); the shape fit about 30-55 s longer. 0: none."""

    @property
    def fits_silhouettes(self) -> bool:
        """Whether the shape is fitted to the masks too: ``silhouettes``, or a ``scan``."""
        return self.silhouettes or self.scan

    def __post_init__(self) -> None:
        if self.silhouette_frames < 1 or self.scan_frames < 1 or self.silhouette_tau_px <= 0:
            raise ValueError("silhouette_frames and scan_frames must be >= 1, silhouette_tau_px > 0")
        if self.silhouette_workers < 0:
            raise ValueError(f"silhouette_workers must be >= 0 (0: one per core), got {self.silhouette_workers}")
        if self.silhouette_start_iterations < 1:
            raise ValueError("silhouette_start_iterations must be >= 1")
        if self.silhouette_finalists < 1 or self.silhouette_final_iterations < 1:
            raise ValueError("silhouette_finalists and silhouette_final_iterations must be >= 1")
        if (self.silhouette_restarts < 0 or self.silhouette_restart_sigmas <= 0 or self.silhouette_restart_iterations < 1
                or self.silhouette_restart_finish < 0):
            raise ValueError("silhouette_restarts and silhouette_restart_finish must be >= 0, silhouette_restart_sigmas "
                             "> 0 and silhouette_restart_iterations >= 1")
        if self.window < 10:
            raise ValueError(f"window must be >= 10 frames, got {self.window}")
        if self.shape_frames < 1 or self.shape_iterations < 0 or self.frame_iterations < 1:
            raise ValueError("shape_frames and frame_iterations must be >= 1, shape_iterations >= 0")
        if self.keypoint_sigma_m <= 0 or self.contact_sigma_m <= 0 or self.reprojection_sigma_px <= 0:
            raise ValueError("keypoint_sigma_m, contact_sigma_m and reprojection_sigma_px must be > 0")


@dataclass(frozen=True)
class BodyMotion:
    """A fitted take.

    model: body model name; shape: (S,); pose_rotvec: (T, J, 3) local joint rotations; trans: (T, 3)
    metres; frame_rate: frames per second; frame_times: (T,) seconds; gender: for SMPL-family models;
    contact: (T, 2) bool, left and right foot in contact; figures: fit quality numbers; ground_z: the
    ground's height (metres, world Z) the fit found under the performer's still feet (a raised platform's
    top), None where unknown (a body file written without it).
    """

    model: str
    shape: np.ndarray
    pose_rotvec: np.ndarray
    trans: np.ndarray
    frame_rate: float
    frame_times: np.ndarray
    gender: str = "neutral"
    contact: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), bool))
    figures: dict = field(default_factory=dict)
    ground_z: float | None = None


class FitError(ValueError):
    """Input that cannot be fitted; the message says why and what to do."""
