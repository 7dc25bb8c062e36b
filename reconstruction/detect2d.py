"""2D body keypoints with MediaPipe's pose landmarker (BlazePose, 33 keypoints), per camera and frame chunk.

The model asset (``assets/pose_landmarker_full.task``) is built by ``assets/build_pose_landmarker.py`` from
the Apache-2.0 models in the mediapipe 0.10.21 wheel; see ``assets/ORIGIN.txt``. By default every frame is
detected on its own (MediaPipe's image mode); ``DetectionConfig.tracking`` switches to video mode, where the
landmarker tracks the person from frame to frame and smooths the landmarks over time, which makes fast
limbs lag (measured in ``DetectionConfig.tracking``'s docstring).

Work is split into jobs (one camera, a run of frames) and handed to an :class:`Executor`: in this process
(:class:`SerialExecutor`) or in worker processes (:class:`ProcessExecutor`); another engine (ray, a
cluster) only needs a ``map``. Landmark visibility times presence becomes the confidence.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from mocap_studio.capture.frames import open_frames, probe
from mocap_studio.reconstruction.keypoints import Detections2D
from mocap_studio.reconstruction.silhouettes import MaskPacker, PackedMasks, downsample_mask, mask_size, pack_mask
from mocap_studio.reconstruction.skeletons import BLAZEPOSE_33

log = logging.getLogger(__name__)

ASSET_PATH = Path(__file__).resolve().parent / "assets" / "pose_landmarker_full.task"
MEDIAPIPE_MASK_BLUR = 0.0063
"""MediaPipe's segmentation masks are close to the person's true outline blurred by a Gaussian of this sigma times
the person's size (the mask box's longer side) and then thresholded: convex tips (the head's top, the soles, hands)
come out short, concave corners filled. Measured on studio takes against the true full-size masks: the best
matching sigma 2.75 and 3.0 px for people 445 and 480 px tall at 1280x720, 1.0-1.4 px for one 183 px tall at
640x360 (0.0062-0.0064 of the size); the head's top 0.66-0.84 px and the soles 0.66-0.79 px inside the true
outline, which made every fitted body 4-5 mm short. Written to masks.npz as ``blur`` for the fit to undo
(:func:`reconstruction.silhouettes.unblurred_contour`)."""
HEAVY_TASK_NAME = "pose_landmarker_heavy.task"
"""The heavy landmarker's bundle, built into the project cache (``tools/build_pose_landmarker.py --variant heavy``,
which ``make`` runs) rather than shipped: its landmark model alone is 27.7 MB."""


def heavy_model_path() -> Path:
    """Where the heavy landmarker's bundle lives: ``<project cache>/pose_models/pose_landmarker_heavy.task``."""
    from mocap_studio.common.cache import project_cache_dir

    return project_cache_dir() / "pose_models" / HEAVY_TASK_NAME

__all__ = [
    "DetectionConfig",
    "Executor",
    "SerialExecutor",
    "ProcessExecutor",
    "DetectionJob",
    "ChunkResult",
    "PoseLandmarker",
    "detect_chunk",
    "plan_jobs",
    "detect_sources",
    "PersonMasks",
    "detection_executor",
]


@dataclass(frozen=True)
class DetectionConfig:
    """Settings of the ``detect`` stage (the ``[detect]`` table of session.toml)."""

    model_path: str = ""
    """The pose landmarker .task file; empty means the asset shipped with the package."""
    num_poses: int = 2
    """People to detect per frame; association then picks the performer in every camera. With 1, a bystander
    who walks into view can take the performer's place in some cameras (on a real 4-phone take with a second
    person, one single-person view was the bystander in most frames); 2 costs time only where two are seen."""
    min_detection_confidence: float = 0.5
    """MediaPipe's threshold for the person detector."""
    min_presence_confidence: float = 0.5
    """MediaPipe's threshold for a pose to count as present."""
    min_tracking_confidence: float = 0.5
    """Below this tracking score the landmarker re-runs the person detector."""
    workers: int = 0
    """Worker processes; 0 means one per CPU core (at most the number of jobs), 1 runs in this process."""
    chunk_frames: int = 600
    """Frames per job. Tracking restarts at each chunk boundary; smaller chunks spread work more evenly."""
    frame_rate: float = 0.0
    """Frame rate for image folders (videos carry their own timestamps); 0 means 30."""
    tracking: bool = False
    """MediaPipe's video mode: track the person from frame to frame and smooth the landmarks over time.
    Off by default: the smoothing lags fast limbs, and each camera's first frames start the tracker badly.
    Measured on a virtual studio take (ring4, 1280x720, 30 fps, squats and jumping jacks, seed 111, held
    out from the landmark training): MPJPE on the 12 limb joints 32.9 mm with tracking, 28.1 mm without, at
    about the same speed. MediaPipe tracks and smooths only with ``num_poses`` 1: with 2 (the default) video
    mode gives the same landmarks as image mode (measured on a drifting portrait, frame for frame)."""

    crop_model: str = "heavy"
    """The landmarker that detects each of several people again in crops (``[associate] people`` over 1):
    "heavy" (MediaPipe's heavy BlazePose model: fewer limbs far off where people overlap; built once into the
    project cache by ``make`` or ``python tools/build_pose_landmarker.py --variant heavy``; where it is not built,
    the full model, with a warning), "full" (the shipped model the whole-image pass uses), or a .task file's path.
    Measured on the virtual studio's three crossing performers, a round of crops from the same people: MPJPE
    39 / 55 / 39 mm with the full model, 33 / 42 / 43 mm with the heavy one (median per frame 35 / 49 / 37 ->
    30 / 32 / 27 mm), at 85 s against 45 s for 1430 crops on 2 cores."""

    masks: bool = True
    """Also keep each detected person's segmentation mask (MediaPipe's landmarker computes it from the model
    already run) for the body fit's silhouettes: the performer's are written to masks.npz."""
    mask_scale: float = 1.0
    """Masks are kept at this fraction of the image's size (1: the image's own; each mask packed to its box, in
    memory and in masks.npz, about 1.5 kB a full-size 1280x720 mask on file). On ten 1280x720 studio takes (README, "Body
    measurements") the shape fit met every girth within 10 mm on 10 of 10 with full-size masks against 7 of 10 with
    half-size ones, the height within 5 mm too on 8 against 3; a quarter-size mask of a 640x360 take (16 mm a pixel
    at 4 m) let wrong bodies in contorted poses fit."""
    mask_threshold: float = 0.55
    """A mask pixel is the person's where MediaPipe's segmentation confidence, averaged over the image pixels it
    covers, is at least this. At 0.5 its masks are too wide: the contour lies 0.06-0.07 mask pixels outside the
    studio renderer's true outline on average (tests/test_silhouettes.py, seeds 11 and 31), 0.09-0.24 along the
    trunk, legs, head and neck of full-size takes (seeds 101, 104, 107), which made the girths through the
    pipeline large (hip +7.7 mm, neck +6.0 on average over ten full-size takes). At 0.55 the whole outline is
    unbiased (-0.001 px on both seeds); what remains is by part (between the 0.5 and 0.6 figures): thin parts come
    out a little thin (arms +0.03, feet +0.2), broad ones a little wide (trunk, legs, head -0.05, neck -0.1). Each
    0.1 moves the outline about 0.14 pixels. Measured on the ten takes: girths all within 10 mm on 6 of them
    instead of 2 (README, "With silhouettes")."""

    hands: bool = True
    """Move each person's pinky, index and thumb keypoints to the knuckles MediaPipe's hand landmarker finds in a
    crop around the hand (reconstruction/hands.py): BlazePose's own hardly tell which way a palm faces (the palm's
    normal 43-61 degrees off on studio takes 101 and 104, 7-15 with the hand landmarker). Needs the hand bundle in
    the project cache (``make`` builds it); without it the stage keeps BlazePose's and warns."""

    def __post_init__(self) -> None:
        if not 0 < self.mask_scale <= 1:
            raise ValueError(f"mask_scale must be in (0, 1], got {self.mask_scale}")
        if not 0 < self.mask_threshold < 1:
            raise ValueError(f"mask_threshold must be in (0, 1), got {self.mask_threshold}")
        if self.num_poses < 1 or self.chunk_frames < 1 or self.workers < 0:
            raise ValueError("num_poses and chunk_frames must be >= 1 and workers >= 0")


def crop_model_path(config: DetectionConfig) -> tuple[Path, str | None]:
    """The .task file for the crops of several people (``config.crop_model``) -> (path, a warning or None when
    the heavy model asked for is not built and the full one stands in)."""
    if config.crop_model == "full":
        return model_path(config), None
    if config.crop_model == "heavy":
        heavy = heavy_model_path()
        if heavy.exists():
            return heavy, None
        return model_path(config), (
            f"{heavy}: the heavy pose landmarker is not built, so the crops of several people used the full model "
            "(more limbs misplaced where people overlap); build it once with `python tools/build_pose_landmarker.py "
            "--variant heavy` (or `make`), then run `mocap detect` again")
    path = Path(config.crop_model).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"[detect] crop_model = {config.crop_model!r}: no such file; give \"heavy\", "
                                "\"full\" or the path of a pose landmarker .task file")
    return path, None


def model_path(config: DetectionConfig) -> Path:
    path = Path(config.model_path) if config.model_path else ASSET_PATH
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: pose landmarker model not found; build it with "
            "`python tools/build_pose_landmarker.py`"
        )
    return path


# --------------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------------
class Executor(Protocol):
    """Runs a function over items, yielding results in the order of the items."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
        """``fn`` over ``items``, results in the order of the items."""


class SerialExecutor:
    """Runs every job in this process."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
        """``fn`` over ``items`` in this process, lazily and in order."""
        return map(fn, items)


class ProcessExecutor:
    """Runs jobs in ``workers`` processes (spawned, so no state leaks in from this process)."""

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
        """``fn`` over ``items`` in a spawned process pool, results in the order of the items."""
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn")) as pool:
            yield from pool.map(fn, items)


_EXECUTOR: ContextVar[Executor | None] = ContextVar("detection_executor", default=None)


@contextmanager
def detection_executor(executor: Executor) -> Iterator[None]:
    """Within the block, :func:`detect_sources` called without an executor uses ``executor`` (a batch engine's,
    e.g. one that hands back chunks already detected elsewhere) in place of worker processes."""
    token = _EXECUTOR.set(executor)
    try:
        yield
    finally:
        _EXECUTOR.reset(token)


def default_executor(workers: int, jobs: int) -> Executor:
    override = _EXECUTOR.get()
    if override is not None:
        return override
    workers = workers or (os.cpu_count() or 1)
    workers = min(workers, max(jobs, 1))
    return SerialExecutor() if workers <= 1 else ProcessExecutor(workers)


# --------------------------------------------------------------------------------------------------
# The landmarker
# --------------------------------------------------------------------------------------------------
class PoseLandmarker:
    """MediaPipe's pose landmarker (video or image mode), with ``hands`` its hand landmarker on each person's
    hands. Use as a context manager (mediapipe 1.2 needs close())."""

    def __init__(self, config: DetectionConfig, video: bool = True):
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path(config))),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_poses=config.num_poses,
            min_pose_detection_confidence=config.min_detection_confidence,
            min_pose_presence_confidence=config.min_presence_confidence,
            min_tracking_confidence=config.min_tracking_confidence,
            output_segmentation_masks=config.masks,
        )
        self._masks = config.masks
        self._mask_scale = config.mask_scale
        self._mask_threshold = config.mask_threshold
        self.last_masks: np.ndarray | None = None
        """After :meth:`detect` (with ``masks``): (P, h, w) bool, each person slot's mask at ``mask_scale``."""
        self._video = video
        self._num_poses = config.num_poses
        self._landmarker = vision.PoseLandmarker.create_from_options(options)
        self._last_ms = -1
        self._hands = None
        self.hands_tried = self.hands_found = 0
        """With ``hands``: hands looked for (a person's wrist seen) and found by the hand landmarker so far."""
        if hands_available(config).hands:  # where the bundle is missing, that says so and how to build it
            from mocap_studio.reconstruction.hands import HandLandmarker

            self._hands = HandLandmarker()

    def __enter__(self) -> PoseLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release MediaPipe's landmarker (a second call does nothing)."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None
        if self._hands is not None:
            self._hands.close()
            self._hands = None

    def detect(self, image_bgr: np.ndarray, time_s: float = math.nan) -> tuple[np.ndarray, np.ndarray]:
        """One frame (H, W, 3) BGR uint8 -> xy (P, 33, 2) pixels and confidence (P, 33), NaN/0 for
        empty person slots; with ``hands``, each person's hand keypoints from the hand landmarker where it found
        the hand (reconstruction/hands.py). ``time_s`` must increase from call to call in video mode."""
        import mediapipe as mp

        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"image_bgr must have shape (H, W, 3), got {image_bgr.shape}")
        h, w = image_bgr.shape[:2]
        rgb = np.ascontiguousarray(image_bgr[..., ::-1])
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        if self._video:
            # mediapipe wants strictly increasing integer milliseconds
            ms = int(round(time_s * 1000)) if math.isfinite(time_s) else self._last_ms + 33
            ms = max(ms, self._last_ms + 1)
            self._last_ms = ms
            result = self._landmarker.detect_for_video(image, ms)
        else:
            result = self._landmarker.detect(image)
        xy = np.full((self._num_poses, 33, 2), np.nan)
        conf = np.zeros((self._num_poses, 33))
        for p, landmarks in enumerate(result.pose_landmarks[: self._num_poses]):
            arr = np.array([(lm.x, lm.y, lm.visibility or 0.0, lm.presence or 0.0) for lm in landmarks])
            xy[p] = arr[:, :2] * (w, h)
            conf[p] = np.clip(arr[:, 2] * arr[:, 3], 0.0, 1.0)
            if self._hands is not None:
                xy[p], conf[p] = self._hands.refine(image_bgr, xy[p], conf[p])
                self.hands_tried += int(self._hands.tried.sum())
                self.hands_found += int(self._hands.found.sum())
        if self._masks:
            size = mask_size(w, h, self._mask_scale)
            self.last_masks = np.zeros((self._num_poses, *size), bool)
            for p, seg in enumerate((result.segmentation_masks or [])[: self._num_poses]):
                self.last_masks[p] = downsample_mask(np.asarray(seg.numpy_view()).reshape(h, w), size,
                                                     self._mask_threshold)
        return xy, conf


# --------------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetectionJob:
    """Frames [start, stop) of one camera's recording."""

    camera: str
    source: str
    start: int
    stop: int
    fps: float
    config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkResult:
    """xy (n, P, 33, 2), confidence (n, P, 33) and times (n,) of the frames a job read, plus its speed; with
    masks, ``masks`` (n, P) (each slot's mask, packed to its box) and the image size."""

    camera: str
    start: int
    xy: np.ndarray
    confidence: np.ndarray
    times: np.ndarray
    seconds: float
    masks: PackedMasks | None = None
    image_size: tuple[int, int] = (0, 0)
    hands: tuple[int, int] = (0, 0)
    """Hands looked for and found by the hand landmarker (``hands``)."""


@dataclass(frozen=True)
class PersonMasks:
    """Every person slot's mask: ``packed`` (C, T, P) (empty where no frame), each (h, w) = ``size`` at ``scale``
    mask pixels per image pixel, ``image_size`` (C, 2) width, height; cameras in the order of the detections."""

    cameras: tuple[str, ...]
    packed: PackedMasks
    scale: float
    image_size: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(h, w) of every mask."""
        return self.packed.size


def detect_chunk(job: DetectionJob) -> ChunkResult:
    """Run the landmarker over one job's frames (top-level, so worker processes can run it)."""
    config = DetectionConfig(**job.config)
    xs, cs, ts, ms = [], [], [], []
    size = image_size = (0, 0)
    t0 = time.perf_counter()
    with PoseLandmarker(config, video=config.tracking) as landmarker:
        for frame in open_frames(job.source, fps=job.fps, max_frames=job.stop):
            if frame.index < job.start:
                continue
            if frame.index >= job.stop:
                break
            time_s = frame.time_s if math.isfinite(frame.time_s) else frame.index / job.fps
            xy, conf = landmarker.detect(frame.image, time_s)
            xs.append(xy)
            cs.append(conf)
            ts.append(time_s)
            if landmarker.last_masks is not None:
                size, image_size = landmarker.last_masks.shape[1:], frame.image.shape[1::-1]
                ms.append([pack_mask(m) for m in landmarker.last_masks])
    P = config.num_poses
    xy = np.stack(xs) if xs else np.zeros((0, P, 33, 2))
    conf = np.stack(cs) if cs else np.zeros((0, P, 33))
    masks = None
    if ms and len(ms) == len(xs):
        packer = MaskPacker((len(ms), P), size)
        for i, row in enumerate(ms):
            for p, (box, bits) in enumerate(row):
                packer.add_packed((i, p), box, bits)
        masks = packer.build()
    return ChunkResult(job.camera, job.start, xy, conf, np.array(ts), time.perf_counter() - t0, masks,
                       tuple(int(v) for v in image_size),
                       (landmarker.hands_tried, landmarker.hands_found))


def hands_available(config: DetectionConfig) -> DetectionConfig:
    """``config`` as the jobs should run it: with ``hands`` off (and a warning saying how to build it) where the
    hand landmarker's bundle is not built."""
    from mocap_studio.reconstruction.hands import missing_hand_model

    message = missing_hand_model() if config.hands else None
    if message:
        log.warning("%s", message)
        return replace(config, hands=False)
    return config


def plan_jobs(
    sources: dict[str, Path], config: DetectionConfig
) -> tuple[list[DetectionJob], dict[str, int], float]:
    """Split every camera's recording into chunks. Returns (jobs, frames per camera, frame rate)."""
    counts: dict[str, int] = {}
    rates = []
    jobs: list[DetectionJob] = []
    for camera, source in sources.items():
        info = probe(source)
        counts[camera] = info.frame_count
        fps = info.fps if math.isfinite(info.fps) and info.fps > 0 else (config.frame_rate or 30.0)
        rates.append(fps)
        for start in range(0, info.frame_count, config.chunk_frames):
            stop = min(info.frame_count, start + config.chunk_frames)
            jobs.append(DetectionJob(camera, str(source), start, stop, fps, asdict(config)))
    if rates and max(rates) - min(rates) > 1e-3 * max(rates):
        log.warning("cameras have different frame rates %s; frame times follow the first camera", rates)
    return jobs, counts, rates[0] if rates else (config.frame_rate or 30.0)


def detect_sources(
    sources: dict[str, Path],
    config: DetectionConfig | None = None,
    executor: Executor | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    masks_out: list[PersonMasks] | None = None,
    hands_out: dict[str, dict[str, int]] | None = None,
) -> Detections2D:
    """Detect BlazePose-33 keypoints in every camera's recording (video file or image folder).

    sources: camera name -> recording. Returns :class:`Detections2D` (C, T, P, 33) with T the longest
    recording (shorter ones padded with NaN). ``progress(done_jobs, total_jobs, frames_per_second)`` is
    called after each job. With ``config.masks`` and a list ``masks_out``, the person slots' masks are appended
    to it as one :class:`PersonMasks` on the same rows. With ``config.hands`` and a dict ``hands_out``, it gets each
    camera's hands looked for and found by the hand landmarker (``{"tried": n, "found": m}``).
    """
    config = hands_available(config or DetectionConfig())
    model_path(config)  # fail before spawning workers
    jobs, counts, fps = plan_jobs(sources, config)
    camera_fps = {job.camera: job.fps for job in jobs}
    cameras = list(sources)
    P = config.num_poses
    executor = executor or default_executor(config.workers, len(jobs))
    t0 = time.perf_counter()
    frames = 0
    results = []
    for done, result in enumerate(executor.map(detect_chunk, jobs), start=1):
        results.append(result)
        frames += len(result.xy)
        if progress:
            progress(done, len(jobs), frames / max(time.perf_counter() - t0, 1e-9))
    # Each frame goes to the row of its own time stamp at its camera's nominal rate, so a dropped frame
    # leaves a missing row instead of shifting every later frame one frame early.
    placed = []
    for result in results:
        rate = camera_fps[result.camera]
        rows = np.rint(np.asarray(result.times, float) * rate).astype(np.int64)
        fallback = result.start + np.arange(len(result.xy))
        rows = np.where(np.isfinite(result.times), rows, fallback)
        placed.append((result, np.maximum(rows, 0)))
    T = max([counts.get(c, 0) for c in cameras] + [int(r.max()) + 1 for _, r in placed if len(r)])
    xy = np.full((len(cameras), T, P, 33, 2), np.nan)
    conf = np.zeros((len(cameras), T, P, 33))
    gaps: dict[str, int] = {}
    for result, rows in placed:
        c = cameras.index(result.camera)
        xy[c, rows] = result.xy
        conf[c, rows] = result.confidence
        if hands_out is not None and config.hands:
            count = hands_out.setdefault(result.camera, {"tried": 0, "found": 0})
            count["tried"] += result.hands[0]
            count["found"] += result.hands[1]
    for cam in cameras:
        # rows spanned beyond the frames decoded are frames the camera dropped
        rows = np.concatenate([r for res, r in placed if res.camera == cam] or [np.zeros(0, np.int64)])
        if len(rows) and int(rows.max() - rows.min()) + 1 > len(rows):
            gaps[cam] = int(rows.max() - rows.min()) + 1 - len(rows)
    if masks_out is not None and config.masks:
        person_masks = _person_masks(placed, cameras, T, P, config.mask_scale)
        if person_masks is not None:
            masks_out.append(person_masks)
    if gaps:
        log.warning("frames missing from the recordings (dropped by the camera; left as missing rows): %s", gaps)
    short = {cam: n for cam, n in counts.items() if n < T and cam not in gaps}
    if short:
        log.warning("recordings shorter than %d frames (padded with missing detections): %s", T, short)
    return Detections2D(xy, conf, tuple(cameras), BLAZEPOSE_33.name, np.arange(T) / fps)


def _person_masks(placed: list[tuple[ChunkResult, np.ndarray]], cameras: list[str], T: int, P: int,
                  scale: float) -> PersonMasks | None:
    """The chunks' masks on the detections' rows (zeros where a chunk kept none); None (and a warning) where the
    cameras' masks differ in size."""
    with_masks = [(r, rows) for r, rows in placed if r.masks is not None and r.masks.shape[0]]
    size = with_masks[0][0].masks.size if with_masks else (1, 1)
    packer = MaskPacker((len(cameras), T, P), size)
    image_size = np.zeros((len(cameras), 2), np.int64)
    for result, rows in with_masks:
        c = cameras.index(result.camera)
        if result.masks.size != size:
            log.warning("camera %s: masks of %s where others are %s (the cameras film at different sizes): no masks "
                        "kept, the body fit uses keypoints alone", result.camera, result.masks.size, size)
            return None
        for i, t in enumerate(rows):
            for p in range(P):
                packer.add_packed((c, int(t), p), *result.masks.packed((i, p)))
        image_size[c] = result.image_size
    return PersonMasks(tuple(cameras), packer.build(), scale, image_size)


def iter_results(executor: Executor, jobs: Iterable[DetectionJob]) -> Iterator[ChunkResult]:
    """Run jobs through an executor (for callers that want results as they come)."""
    return executor.map(detect_chunk, list(jobs))
