"""Board detection in images and recordings, with quality gates and a diagnosis when the board is not found.

ChArUco boards go through OpenCV 5's ``cv2.aruco.CharucoDetector``, ArUco grids through ``ArucoDetector``,
checkerboards through ``findChessboardCornersSB`` (or ``findChessboardCorners`` + ``cornerSubPix``).
Inverted boards (white markers on black) are detected in the inverted grayscale image, which turns them back
into an ordinary board. Corner ids are the board's (see :attr:`calibration.boards.Board.object_points`).

Pixel coordinates follow OpenCV: the centre of the top-left pixel is (0, 0).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from mocap_studio.calibration.boards import Board, aruco_dictionary
from mocap_studio.capture.frames import open_frames, probe

log = logging.getLogger(__name__)

REJECT_REASONS: tuple[str, ...] = ("no_board", "too_few_corners", "collinear", "too_small", "blurred")

# Dictionaries tried when the board's own is not seen. Each predefined dictionary is a prefix of the
# largest one of its family (DICT_4X4_50 is the first 50 markers of DICT_4X4_1000), so the largest of each
# family finds them all, and the highest id seen tells which size the board needs.
_FAMILIES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("DICT_4X4", (50, 100, 250, 1000)),
    ("DICT_5X5", (50, 100, 250, 1000)),
    ("DICT_6X6", (50, 100, 250, 1000)),
    ("DICT_7X7", (50, 100, 250, 1000)),
    ("DICT_ARUCO_ORIGINAL", ()),
    ("DICT_APRILTAG_36H11", ()),
    ("DICT_APRILTAG_25H9", ()),
    ("DICT_ARUCO_MIP_36H12", ()),
)


class BoardNotFoundError(ValueError):
    """The board was found in no frame of a recording; the message says why and what to change."""


@dataclass(frozen=True)
class DetectionConfig:
    """How boards are detected and which detections are kept."""

    frame_step: int = 1
    """Examine every ``frame_step``-th frame of a recording (1 = every frame)."""
    max_frames: int | None = None
    """Stop after examining this many frames (None = the whole recording)."""
    min_corners: int = 6
    """Reject views with fewer corners (ArUco grids: 4 per marker). A homography needs 4; intrinsics
    need more."""
    min_board_area_fraction: float = 0.002
    """Reject views where the whole board's outline (extrapolated from the seen corners) covers less than
    this fraction of the image: far boards give corners too imprecise to calibrate with."""
    min_sharpness: float = 0.1
    """Reject blurred views. Sharpness is the steepest intensity edges in the board's box (the mean of the
    top 0.5 % of |dI/dx| and of |dI/dy|, the smaller of the two) divided by the board's contrast, in 1/px:
    about 0.4 / (edge blur sigma in px), 0.3-0.5 for a sharp board, so 0.1 rejects blur of sigma > ~4 px
    (where corner errors pass 0.5 px on rendered boards), including motion blur of ~10 px along either
    image axis. Real 720p webcam frames of a moving board measure 0.2-0.55."""
    subpixel_window: int = 0
    """Extra ``cornerSubPix`` refinement with this half-window in pixels after OpenCV's own (0 = none). A
    window reaching past the neighbouring corners biases them; OpenCV's ChArUco refinement already sizes
    its window from the marker spacing. Rendered views with 29 px squares: median error 0.05 px with 0,
    0.40 px with the 11 px half-window caliscope uses."""
    checkerboard_method: str = "sb"
    """Checkerboards: "sb" (``findChessboardCornersSB``, accurate, robust to blur) or "classic"
    (``findChessboardCorners`` + ``cornerSubPix``, faster on large images)."""
    diagnosis_frames: int = 6
    """When a recording never shows the board, how many frames, spread over it, the diagnosis examines."""

    def __post_init__(self) -> None:
        if self.frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {self.frame_step}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {self.max_frames}")
        if self.min_corners < 1:
            raise ValueError(f"min_corners must be >= 1, got {self.min_corners}")
        if not 0 <= self.min_board_area_fraction < 1:
            raise ValueError(f"min_board_area_fraction must be in [0, 1), got {self.min_board_area_fraction}")
        if self.min_sharpness < 0:
            raise ValueError(f"min_sharpness must be >= 0, got {self.min_sharpness}")
        if self.subpixel_window < 0:
            raise ValueError(f"subpixel_window must be >= 0, got {self.subpixel_window}")
        if self.checkerboard_method not in ("sb", "classic"):
            raise ValueError(
                f"checkerboard_method must be 'sb' or 'classic', got {self.checkerboard_method!r}"
            )
        if self.diagnosis_frames < 1:
            raise ValueError(f"diagnosis_frames must be >= 1, got {self.diagnosis_frames}")


@dataclass(frozen=True, eq=False)
class BoardDetection:
    """The board's corners seen in one frame."""

    frame: int
    """Frame index in the recording."""
    time_s: float
    """Frame time in seconds (NaN when unknown)."""
    ids: np.ndarray
    """(n,) int corner ids, ascending, rows of ``Board.object_points``."""
    corners: np.ndarray
    """(n, 2) float pixel coordinates of those corners."""
    sharpness: float
    """Edge sharpness of the board in 1/px (see ``DetectionConfig.min_sharpness``)."""
    area_fraction: float = float("nan")
    """Fraction of the image covered by the whole board's outline."""

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        corners = np.asarray(self.corners, dtype=float)
        if corners.shape != (len(ids), 2):
            raise ValueError(
                f"corners must have shape (n, 2) = ({len(ids)}, 2) to match ids, got {corners.shape}"
            )
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "corners", corners)


@dataclass(frozen=True, eq=False)
class CameraDetections:
    """Every kept board view of one camera's board recording."""

    camera: str
    source: Path
    image_size: tuple[int, int]
    """(width, height) in pixels."""
    detections: tuple[BoardDetection, ...]
    frames_read: int
    """Frames examined (after ``frame_step`` and ``max_frames``)."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Frames without a kept view, by reason: no_board, too_few_corners, collinear, too_small, blurred."""


# --------------------------------------------------------------------------------------------------
# Image checks and quality measures
# --------------------------------------------------------------------------------------------------
def _to_gray(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0]
    raise ValueError(f"{name} must have shape (H, W) or (H, W, 3) BGR, got {image.shape}")


def board_sharpness(gray: np.ndarray, corners: np.ndarray) -> float:
    """Edge sharpness (1/px) of the board region around ``corners`` (n, 2) in a (H, W) uint8 image.

    Steepest gradients over contrast is independent of lighting and contrast, and it reads as a blur
    width: a Gaussian edge of sigma s has a peak slope of contrast / (2.5 s).
    """
    gray = _to_gray(gray, "gray")
    corners = np.asarray(corners, dtype=float)
    if corners.ndim != 2 or corners.shape[1] != 2 or len(corners) == 0:
        raise ValueError(f"corners must have shape (n, 2) with n >= 1, got {corners.shape}")
    h, w = gray.shape
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 4
    roi = gray[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)].astype(np.float32)
    if roi.shape[0] < 4 or roi.shape[1] < 4:
        return 0.0
    low, high = np.percentile(roi, (5, 95))
    contrast = float(high - low)
    if contrast < 8:
        return 0.0
    k = max(8, int(0.005 * roi.size))
    steepest = []
    for dx, dy in ((1, 0), (0, 1)):
        grad = np.abs(cv2.Sobel(roi, cv2.CV_32F, dx, dy, ksize=3)).ravel() / 8.0
        steepest.append(float(np.partition(grad, grad.size - k)[-k:].mean()))
    return min(steepest) / contrast


def _board_area_fraction(
    board: Board, ids: np.ndarray, corners: np.ndarray, image_size: tuple[int, int]
) -> float:
    """Image fraction covered by the whole board outline, mapped through the corners' homography."""
    obj = board.object_points[ids, :2]
    w_m, h_m = board.size_m
    image_area = float(image_size[0] * image_size[1])
    homography = cv2.findHomography(obj, corners, 0)[0] if len(ids) >= 4 else None
    if homography is not None:
        outline = np.array([[0, 0], [w_m, 0], [w_m, h_m], [0, h_m]], dtype=np.float64).reshape(-1, 1, 2)
        projected = cv2.perspectiveTransform(outline, homography).reshape(-1, 2)
        area = abs(float(cv2.contourArea(projected.astype(np.float32))))
        if np.isfinite(area) and area > 0:
            return area / image_area
    # Three corners, or a degenerate homography (all corners but one on a line): scale the image area of
    # the corners' hull by the board's area over the hull's area on the board (an affine estimate).
    obj_area = float(cv2.contourArea(cv2.convexHull(obj.astype(np.float32))))
    img_area = float(cv2.contourArea(cv2.convexHull(corners.astype(np.float32))))
    return img_area * (w_m * h_m) / obj_area / image_area if obj_area > 0 else 0.0


def _collinear(board: Board, ids: np.ndarray) -> bool:
    obj = board.object_points[ids, :2]
    if len(obj) < 3:
        return True
    singular = np.linalg.svd(obj - obj.mean(axis=0), compute_uv=False)
    return bool(singular[1] < 1e-6 * max(singular[0], 1e-12) + 1e-9)


# --------------------------------------------------------------------------------------------------
# Raw detection per board kind
# --------------------------------------------------------------------------------------------------
class _Finder:
    """OpenCV detectors for one board, built once and reused over the frames of a recording."""

    def __init__(self, board: Board, config: DetectionConfig) -> None:
        self.board = board
        self.config = config
        if board.kind == "charuco":
            self.charuco = cv2.aruco.CharucoDetector(board.cv_board())
        elif board.kind == "aruco_grid":
            params = cv2.aruco.DetectorParameters()
            params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
            self.aruco = cv2.aruco.ArucoDetector(board.cv_dictionary(), params)

    def find(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids (n,), corners (n, 2)) sorted by id, in a gray image already polarity-corrected."""
        kind = self.board.kind
        if kind == "charuco":
            corners, ids, _, _ = self.charuco.detectBoard(gray)
            if ids is None or len(ids) == 0:
                return None
            ids, corners = ids.reshape(-1), corners.reshape(-1, 2)
        elif kind == "aruco_grid":
            found = self._find_grid(gray)
            if found is None:
                return None
            ids, corners = found
        else:
            found = self._find_checkerboard(gray)
            if found is None:
                return None
            ids, corners = found
        if self.config.subpixel_window > 0:
            corners = _refine(gray, corners, self.config.subpixel_window)
        order = np.argsort(ids, kind="stable")
        return ids[order].astype(np.int64), corners[order].astype(np.float64)

    def _find_grid(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        marker_corners, marker_ids, _ = self.aruco.detectMarkers(gray)
        if marker_ids is None:
            return None
        marker_ids = marker_ids.reshape(-1)
        keep = marker_ids < self.board.n_markers
        if not keep.any():
            return None
        quads = np.asarray(marker_corners, dtype=np.float64).reshape(-1, 4, 2)[keep]
        # Corner id 4 * marker + k, in the clockwise order OpenCV gives both the object and image quads.
        ids = (4 * marker_ids[keep][:, None] + np.arange(4)[None, :]).reshape(-1)
        return ids, quads.reshape(-1, 2)

    def _find_checkerboard(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        pattern = self.board.inner_corners
        if self.config.checkerboard_method == "sb":
            ok, corners = cv2.findChessboardCornersSB(
                gray, pattern, flags=0
            )  # NORMALIZE_IMAGE loses blurred boards
        else:
            flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
            ok, corners = cv2.findChessboardCorners(gray, pattern, flags=flags)
        if not ok or corners is None:
            return None
        corners = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
        # Both detectors leave ~0.3 px of error on a slightly blurred board (measured on rendered views);
        # cornerSubPix with a window a fifth of the corner spacing brings it to ~0.06 px.
        spacing = float(np.min(np.linalg.norm(np.diff(corners.reshape(*pattern[::-1], 2), axis=1), axis=-1)))
        corners = _refine(gray, corners, int(np.clip(spacing / 5, 2, 5)))
        corners = _orient_checkerboard(gray, corners, self.board)
        return np.arange(len(corners)), corners


def _refine(gray: np.ndarray, corners: np.ndarray, half_window: int) -> np.ndarray:
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 0.001)
    pts = np.ascontiguousarray(corners, dtype=np.float32).reshape(-1, 1, 2)
    refined = cv2.cornerSubPix(gray, pts, (half_window, half_window), (-1, -1), criteria)
    return refined.reshape(-1, 2).astype(np.float64)


def _orient_checkerboard(gray: np.ndarray, corners: np.ndarray, board: Board) -> np.ndarray:
    """Give checkerboard corners the board's ids: OpenCV may return the grid rotated by 180 degrees or
    mirrored; a board with squares_x + squares_y odd can be told apart by the colour of its corner square."""
    nx, ny = board.inner_corners
    grid = corners.reshape(ny, nx, 2)
    along_x = grid[0, 1] - grid[0, 0]
    along_y = grid[1, 0] - grid[0, 0]
    # Board x right, y down as seen from the front has a positive cross product in image coordinates
    # (which also have y down); a negative one is OpenCV walking the rows backwards.
    if along_x[0] * along_y[1] - along_x[1] * along_y[0] < 0:
        grid = grid[::-1]
        along_y = -along_y
    if (board.squares_x + board.squares_y) % 2 == 1:
        c0 = grid[0, 0]
        outer = c0 - 0.5 * along_x - 0.5 * along_y  # the board's top-left square: black when printed
        beside = c0 + 0.5 * along_x - 0.5 * along_y  # the square to its right: white
        if _intensity(gray, outer) > _intensity(gray, beside):
            grid = grid[::-1, ::-1]
    return grid.reshape(-1, 2)


def _intensity(gray: np.ndarray, xy: np.ndarray) -> float:
    patch = cv2.getRectSubPix(gray, (3, 3), (float(xy[0]), float(xy[1])))
    return float(patch.mean())


# --------------------------------------------------------------------------------------------------
# Quality gates
# --------------------------------------------------------------------------------------------------
@dataclass
class _Rejections:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0))
    most_corners: int = 0
    largest_area: float = 0.0
    sharpest: float = 0.0


def _judge(
    finder: _Finder, image: np.ndarray, frame: int, time_s: float, rejections: _Rejections | None = None
) -> tuple[BoardDetection | None, str | None]:
    board, config = finder.board, finder.config
    gray = _to_gray(image)
    if board.inverted:
        gray = cv2.bitwise_not(gray)
    found = finder.find(gray)
    if found is None:
        return None, "no_board"
    ids, corners = found
    rej = rejections or _Rejections()
    rej.most_corners = max(rej.most_corners, len(ids))
    if len(ids) < config.min_corners:
        return None, "too_few_corners"
    if _collinear(board, ids):
        return None, "collinear"
    size = (gray.shape[1], gray.shape[0])
    area = _board_area_fraction(board, ids, corners, size)
    rej.largest_area = max(rej.largest_area, area)
    if area < config.min_board_area_fraction:
        return None, "too_small"
    sharpness = board_sharpness(gray, corners)
    rej.sharpest = max(rej.sharpest, sharpness)
    if sharpness < config.min_sharpness:
        return None, "blurred"
    return BoardDetection(frame, time_s, ids, corners, sharpness, area), None


def detect_board_in_image(
    image: np.ndarray,
    board: Board,
    config: DetectionConfig | None = None,
    frame: int = 0,
    time_s: float = 0.0,
) -> BoardDetection | None:
    """The board in one image, (H, W, 3) BGR or (H, W) gray uint8; None when absent or rejected by the
    quality gates of ``config`` (corner count, collinearity, size, sharpness)."""
    detection, _ = _judge(_Finder(board, config or DetectionConfig()), image, frame, time_s)
    return detection


def detect_board_in_source(
    camera: str,
    source: Path,
    board: Board,
    config: DetectionConfig | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> CameraDetections:
    """Every kept board view in a recording (video file, image folder or image), streamed frame by frame.

    progress(frames_read, frames_total) is called after each examined frame (total None if unknown).
    Raises BoardNotFoundError, whose message names the camera and the file and says why the board was not
    found and what to change in the board file, when no frame gives a kept view.
    """
    config = config or DetectionConfig()
    source = Path(source)
    info = probe(source)
    total = -(-info.frame_count // config.frame_step) if info.frame_count > 0 else None
    if total is not None and config.max_frames is not None:
        total = min(total, config.max_frames)
    # Frames kept for a possible diagnosis: a handful spread over the recording, never the whole of it.
    spread = max(1, (total or config.diagnosis_frames) // config.diagnosis_frames)
    samples: list[np.ndarray] = []
    finder = _Finder(board, config)
    rejections = _Rejections()
    detections: list[BoardDetection] = []
    frames_read = 0
    image_size = info.size
    for frame in open_frames(source, step=config.frame_step, max_frames=config.max_frames):
        image_size = (frame.image.shape[1], frame.image.shape[0])
        detection, reason = _judge(finder, frame.image, frame.index, frame.time_s, rejections)
        if detection is not None:
            detections.append(detection)
        else:
            rejections.counts[reason] += 1
            if frames_read % spread == 0 and len(samples) < config.diagnosis_frames and not detections:
                samples.append(_to_gray(frame.image))
        frames_read += 1
        if progress is not None:
            progress(frames_read, total)
    log.info(
        "%s: board %s kept in %d of %d frames (%s)",
        camera,
        board.name,
        len(detections),
        frames_read,
        ", ".join(f"{k} {v}" for k, v in rejections.counts.items() if v) or "none rejected",
    )
    if not detections:
        raise BoardNotFoundError(
            _not_found_message(camera, source, board, config, frames_read, rejections, samples)
        )
    return CameraDetections(
        camera, source, image_size, tuple(detections), frames_read, dict(rejections.counts)
    )


# --------------------------------------------------------------------------------------------------
# Diagnosis
# --------------------------------------------------------------------------------------------------
def _where(board: Board) -> str:
    return f"the board file {board.source}" if board.source else f"the definition of board {board.name!r}"


def _not_found_message(
    camera: str,
    source: Path,
    board: Board,
    config: DetectionConfig,
    frames_read: int,
    rejections: _Rejections,
    samples: list[np.ndarray],
) -> str:
    head = (
        f"camera {camera}: board {board.name!r} was not found in any of the {frames_read} frames read "
        f"from {source}.\nBoard: {board.describe()}.\n"
    )
    counts = {k: v for k, v in rejections.counts.items() if v}
    seen = frames_read - counts.get("no_board", 0)
    if seen == 0:
        return head + diagnose_board(samples, board, config)
    lines = [f"The board was seen in {seen} frame(s), but every view was rejected:"]
    if counts.get("too_few_corners"):
        lines.append(
            f"- {counts['too_few_corners']} with too few corners (at most {rejections.most_corners} seen, "
            f"min_corners = {config.min_corners}): show more of the board, or lower min_corners."
        )
    if counts.get("collinear"):
        lines.append(
            f"- {counts['collinear']} with all corners on one line: show more than one row of the board."
        )
    if counts.get("too_small"):
        lines.append(
            f"- {counts['too_small']} too small (largest board outline {100 * rejections.largest_area:.2f} % "
            f"of the image, min_board_area_fraction = {100 * config.min_board_area_fraction:.2f} %): "
            "bring the "
            "board closer or print it larger (bigger square_size_m)."
        )
    if counts.get("blurred"):
        lines.append(
            f"- {counts['blurred']} blurred (sharpest {rejections.sharpest:.3f} /px, min_sharpness = "
            f"{config.min_sharpness}): move the board slowly, add light or shorten the exposure, and "
            "check focus."
        )
    if counts.get("no_board"):
        lines.append(f"- {counts['no_board']} frame(s) showed no board at all.")
    return head + "\n".join(lines)


def _detect_markers(gray: np.ndarray, dictionary_name: str) -> np.ndarray:
    detector = cv2.aruco.ArucoDetector(aruco_dictionary(dictionary_name), cv2.aruco.DetectorParameters())
    _, ids, _ = detector.detectMarkers(gray)
    return np.zeros(0, dtype=int) if ids is None else ids.reshape(-1).astype(int)


def _family_name(family: str, sizes: tuple[int, ...], max_id: int) -> str:
    for size in sizes:
        if max_id < size:
            return f"{family}_{size}"
    return f"{family}_{sizes[-1]}" if sizes else family


def _format_ids(ids: Sequence[int]) -> str:
    ids = sorted(set(int(i) for i in ids))
    text = ", ".join(str(i) for i in ids[:20])
    return text + (f", ... ({len(ids)} ids)" if len(ids) > 20 else "")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def diagnose_board(images: list[np.ndarray], board: Board, config: DetectionConfig | None = None) -> str:
    """Why ``board`` is (not) found in ``images`` (each (H, W, 3) BGR or (H, W) uint8), and what to change.

    Tries the board as defined; then the markers of its dictionary in both polarities (inverted flag), the
    other legacy layout and swapped squares_x / squares_y; then the common dictionaries; and reports
    brightness and contrast when nothing at all is seen. Returns a multi-line, human-readable text.
    """
    if not images:
        raise ValueError("images must hold at least one image")
    config = config or DetectionConfig()
    grays = [_to_gray(im, f"images[{i}]") for i, im in enumerate(images)]
    n = len(grays)
    permissive = dataclasses.replace(config, min_corners=1, min_board_area_fraction=0.0, min_sharpness=0.0)
    found = _found_in(grays, board, permissive)
    if found:
        return _diagnose_quality(found, n, board, config)
    lines = [f"The board was not found in {n} sampled frame(s)."]
    if board.kind == "checkerboard":
        lines += _diagnose_checkerboard(grays, board)
    else:
        lines += _diagnose_markers(grays, board, permissive)
    return "\n".join(lines)


def _found_in(grays: list[np.ndarray], board: Board, config: DetectionConfig) -> list[BoardDetection]:
    finder = _Finder(board, config)
    return [d for i, g in enumerate(grays) if (d := _judge(finder, g, i, float("nan"))[0]) is not None]


def _diagnose_quality(found: list[BoardDetection], n: int, board: Board, config: DetectionConfig) -> str:
    best = max(found, key=lambda d: len(d.ids))
    lines = [
        f"The board is detected in {len(found)} of {n} sampled frame(s) (up to {len(best.ids)} of "
        f"{board.n_corners} corners, board outline up to "
        f"{100 * max(d.area_fraction for d in found):.2f} % of the "
        f"image, sharpness up to {max(d.sharpness for d in found):.3f} /px)."
    ]
    kept = [d for d in found if _passes(d, config)]
    if kept:
        lines.append(f"{len(kept)} of these views pass the quality gates.")
        return "\n".join(lines)
    if all(len(d.ids) < config.min_corners for d in found):
        lines.append(f"Too few corners for min_corners = {config.min_corners}: show more of the board.")
    if all(d.area_fraction < config.min_board_area_fraction for d in found):
        lines.append(
            "The board is too small in the image (min_board_area_fraction = "
            f"{config.min_board_area_fraction}):"
            " bring it closer or print it with larger squares."
        )
    if all(d.sharpness < config.min_sharpness for d in found):
        lines.append(
            f"The board is blurred (min_sharpness = {config.min_sharpness}): move it slowly, add "
            "light, check focus."
        )
    return "\n".join(lines)


def _passes(d: BoardDetection, config: DetectionConfig) -> bool:
    return (
        len(d.ids) >= config.min_corners
        and d.area_fraction >= config.min_board_area_fraction
        and d.sharpness >= config.min_sharpness
    )


def _diagnose_markers(grays: list[np.ndarray], board: Board, permissive: DetectionConfig) -> list[str]:
    where = _where(board)
    polarity = {
        True: "inverted image (white markers on black)",
        False: "image as recorded (black markers on white)",
    }
    own: dict[bool, list[int]] = {}
    for inverted in (board.inverted, not board.inverted):
        ids: list[int] = []
        for g in grays:
            ids += _detect_markers(cv2.bitwise_not(g) if inverted else g, board.dictionary).tolist()
        own[inverted] = ids
    lines: list[str] = []
    if own[board.inverted]:
        ids = own[board.inverted]
        lines.append(
            f"Markers of {board.dictionary} are seen in the {polarity[board.inverted]}: ids "
            f"{_format_ids(ids)}."
        )
        lines += _diagnose_layout(grays, board, ids, permissive)
        return lines
    lines.append(f"No {board.dictionary} marker is seen in the {polarity[board.inverted]}.")
    if own[not board.inverted]:
        lines.append(
            f"But {len(own[not board.inverted])} {board.dictionary} markers (ids "
            f"{_format_ids(own[not board.inverted])})"
            f" are seen in the {polarity[not board.inverted]}: the board is printed "
            f"{'inverted' if not board.inverted else 'not inverted'}. "
            f"Fix: set inverted = {_flag(not board.inverted)} in {where}."
        )
        flipped = dataclasses.replace(board, inverted=not board.inverted)
        if not _found_in(grays, flipped, permissive):
            lines += _diagnose_layout(grays, flipped, own[not board.inverted], permissive)
        return lines
    matches = _other_dictionaries(grays, board)
    if matches:
        (name, inverted, ids), *rest = matches
        lines.append(
            f"Markers of another dictionary are seen: {name} (ids {_format_ids(ids)}) in the "
            f"{polarity[inverted]}. "
            f'Fix: set dictionary = "{name}"'
            + (f" and inverted = {_flag(inverted)}" if inverted != board.inverted else "")
            + f" in {where}."
        )
        for other, inv, other_ids in rest[:2]:
            lines.append(f"(Also seen, fewer: {other} in the {polarity[inv]}, ids {_format_ids(other_ids)}.)")
        return lines
    lines.append(_brightness_hint(grays))
    return lines


def _diagnose_layout(
    grays: list[np.ndarray], board: Board, ids: list[int], permissive: DetectionConfig
) -> list[str]:
    """The markers are seen in the right polarity and dictionary but no corner is made: find out why."""
    where = _where(board)
    outside = sorted({i for i in ids if i >= board.n_markers})
    if outside and len(outside) == len(set(ids)):
        return [
            f"None of them belongs to this board, which uses ids 0..{board.n_markers - 1} "
            f"({board.squares_x} x {board.squares_y} "
            f"{'markers' if board.kind == 'aruco_grid' else 'squares'}): "
            f"the printed board is a different, larger board. Fix squares_x / squares_y in {where}."
        ]
    lines = []
    if outside:
        lines.append(
            f"Ids {_format_ids(outside)} are beyond this board's 0..{board.n_markers - 1}: the printed "
            "board has "
            f"more squares than squares_x x squares_y = {board.squares_x} x {board.squares_y}; check {where}."
        )
    if board.kind == "charuco":
        legacy = dataclasses.replace(board, legacy_pattern=not board.legacy_pattern)
        if _found_in(grays, legacy, permissive):
            lines.append(
                "The corners appear with the other ChArUco layout (the board was made by "
                f"{'OpenCV >= 4.6' if board.legacy_pattern else 'OpenCV < 4.6 or calib.io'}). "
                f"Fix: set legacy_pattern = {_flag(not board.legacy_pattern)} in {where}."
            )
            return lines
    swapped = _swapped(board)
    if swapped is not None and _found_in(grays, swapped, permissive):
        lines.append(
            "The corners appear with squares_x and squares_y swapped. Fix: set squares_x = "
            f"{board.squares_y} "
            f"and squares_y = {board.squares_x} in {where}."
        )
        return lines
    per_frame = max(
        len(set(_detect_markers(g if not board.inverted else cv2.bitwise_not(g), board.dictionary)))
        for g in grays
    )
    if board.kind == "charuco" and per_frame < 2:
        lines.append(
            "At most one marker per frame: a ChArUco corner needs two neighbouring markers. Show more of the "
            "board, closer, and sharper."
        )
    else:
        lines.append(
            "The markers do not form this board's corners: check squares_x, squares_y and the ratio of "
            f"marker_size_m to square_size_m against the printed board, and the marker ids, in {where}."
        )
    return lines


def _swapped(board: Board) -> Board | None:
    if board.squares_x == board.squares_y:
        return None
    try:
        return dataclasses.replace(board, squares_x=board.squares_y, squares_y=board.squares_x)
    except ValueError:
        return None


def _other_dictionaries(grays: list[np.ndarray], board: Board) -> list[tuple[str, bool, list[int]]]:
    """(dictionary name, inverted, ids) of other dictionaries whose markers are seen, most markers first."""
    hits = []
    for family, sizes in _FAMILIES:
        largest = f"{family}_{sizes[-1]}" if sizes else family
        for inverted in (board.inverted, not board.inverted):
            ids: list[int] = []
            for g in grays:
                ids += _detect_markers(cv2.bitwise_not(g) if inverted else g, largest).tolist()
            # One stray decode in a few frames is noise (big dictionaries accept more false positives).
            if len(ids) >= 2 * len(grays) or len(ids) >= 4:
                hits.append((_family_name(family, sizes, max(ids)), inverted, ids))
    return sorted(hits, key=lambda h: -len(h[2]))


def _brightness_hint(grays: list[np.ndarray]) -> str:
    mean = float(np.mean([g.mean() for g in grays]))
    spread = float(np.mean([np.percentile(g, 95) - np.percentile(g, 5) for g in grays]))
    text = (
        "No ArUco marker of any common dictionary is seen, in either polarity "
        f"(mean brightness {mean:.0f}/255, contrast {spread:.0f}). "
    )
    if mean < 40:
        return text + "The frames are very dark: add light or lengthen the exposure."
    if mean > 215:
        return text + "The frames are overexposed: shorten the exposure or reduce the light."
    if spread < 40:
        return text + "The frames have little contrast (fog, glare or a blank view)."
    return text + (
        "Check that this recording shows the board, that it is in focus and large enough in the image "
        "(a square should span at least ~20 px), and that the board was printed from this definition."
    )


def _diagnose_checkerboard(grays: list[np.ndarray], board: Board) -> list[str]:
    where = _where(board)
    nx, ny = board.inner_corners
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    # Off-by-one square counts (inner corners typed as squares, or the reverse) are the common mistake.
    for dx in (1, -1, 2, -2):
        size = (nx + dx, ny + dx)
        if min(size) < 2:
            continue
        if any(cv2.findChessboardCorners(g, size, flags=flags)[0] for g in grays):
            return [
                f"A checkerboard with {size[0]} x {size[1]} inner corners is found instead of {nx} x {ny}. "
                f"Fix: set squares_x = {size[0] + 1} and squares_y = {size[1] + 1} (squares, not inner "
                "corners) "
                f"in {where}."
            ]
    for family, sizes in _FAMILIES[:4]:
        largest = f"{family}_{sizes[-1]}"
        for inverted in (False, True):
            if sum(len(_detect_markers(cv2.bitwise_not(g) if inverted else g, largest)) for g in grays) >= 4:
                return [
                    f"ArUco markers ({family}) are seen: this is a ChArUco board or ArUco grid, not a plain "
                    f"checkerboard. Set kind, dictionary and marker_size_m in {where}."
                ]
    return [
        f"No checkerboard with {nx} x {ny} inner corners (nor one square more or fewer) is seen. The whole "
        "checkerboard must be in view (a checkerboard cannot be detected partially; a ChArUco board can). "
        + _brightness_hint(grays)
    ]
