"""Board detection in images and recordings, with quality gates; when no view is kept, :mod:`calibration.diagnose` says why.

ChArUco boards go through OpenCV 5's ``cv2.aruco.CharucoDetector``, ArUco grids through ``ArucoDetector``,
checkerboards through ``findChessboardCornersSB`` and, in each frame where it finds nothing, through
``findChessboardCorners`` (adaptive threshold, normalized image), both followed by ``cornerSubPix``. Neither
detector finds every board the other does: on OpenCV's 640x480 stereo photos SB finds 22 of 26 boards and the
classic detector all 26; on the same photos enlarged 4x (as a phone's photos are large) SB finds 4 of 8; on
small boards (the photos shrunk to a third) the classic detector finds 16 of 26 and SB all 26.
Inverted boards (white markers on black) are detected in the inverted grayscale image, which turns them back
into an ordinary board. Corner ids are the board's (see :attr:`calibration.boards.Board.object_points`).

Pixel coordinates follow OpenCV: the centre of the top-left pixel is (0, 0).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from mocap_studio.calibration.boards import Board
from mocap_studio.calibration.recordings import image_files
from mocap_studio.capture.frames import open_frames, probe

log = logging.getLogger(__name__)


REJECT_REASONS: tuple[str, ...] = ("no_board", "too_few_corners", "collinear", "too_small", "blurred")
CHECKERBOARD_METHODS: tuple[str, ...] = ("auto", "sb", "classic")


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
    checkerboard_method: str = "auto"
    """Checkerboards: "auto" (``findChessboardCornersSB`` first, then, in a frame where it finds nothing,
    ``findChessboardCorners``: the board is kept wherever either detector finds it), "sb" (SB only: robust to
    blur and small boards, misses some large or unevenly lit ones) or "classic" (``findChessboardCorners``
    only: fast when the board is present, misses small boards). "auto" costs a second detector in frames
    without a board (about 0.4 s per 1920x1080 frame on 2 cores): for long board videos, a frame_step or
    "sb" keeps it short."""
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
        if self.checkerboard_method not in CHECKERBOARD_METHODS:
            raise ValueError(
                f"checkerboard_method must be one of {', '.join(map(repr, CHECKERBOARD_METHODS))}, "
                f"got {self.checkerboard_method!r}"
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
    found_by: dict[str, int] = field(default_factory=dict)
    """Checkerboards: frames in which each detector ("sb", "classic") found the board (kept or not)."""


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
        self.found_by: dict[str, int] = {}
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
        method = self.config.checkerboard_method
        corners, found_by = None, ""
        if method in ("sb", "auto"):
            corners, found_by = _checkerboard_sb(gray, pattern), "sb"
        if corners is None and method in ("classic", "auto"):
            corners, found_by = _checkerboard_classic(gray, pattern), "classic"
        if corners is None:
            return None
        self.found_by[found_by] = self.found_by.get(found_by, 0) + 1
        # Both detectors leave ~0.3 px of error on a slightly blurred board (measured on rendered views);
        # cornerSubPix with a window a fifth of the corner spacing brings it to ~0.06 px.
        spacing = float(np.min(np.linalg.norm(np.diff(corners.reshape(*pattern[::-1], 2), axis=1), axis=-1)))
        corners = _refine(gray, corners, int(np.clip(spacing / 5, 2, 5)))
        # the two detectors may start the grid at different corners: one orientation rule for both
        corners = _orient_checkerboard(gray, corners, self.board)
        return np.arange(len(corners)), corners


def _checkerboard_sb(gray: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """(n, 2) inner corners by ``findChessboardCornersSB``, or None."""
    ok, corners = cv2.findChessboardCornersSB(gray, pattern, flags=0)  # NORMALIZE_IMAGE loses blurred boards
    return np.asarray(corners, dtype=np.float64).reshape(-1, 2) if ok and corners is not None else None


def _checkerboard_classic(gray: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """(n, 2) inner corners by ``findChessboardCorners`` (adaptive threshold, normalized image), or None.
    No FAST_CHECK: it can miss real boards, and it saved no time on frames without one (1920x1080, measured)."""
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    ok, corners = cv2.findChessboardCorners(gray, pattern, flags=flags)
    return np.asarray(corners, dtype=np.float64).reshape(-1, 2) if ok and corners is not None else None


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
        size = (frame.image.shape[1], frame.image.shape[0])
        if size != image_size:
            where = image_files(source)[frame.index].name if source.is_dir() else f"frame {frame.index}"
            raise ValueError(
                f"camera {camera!r}: {source} holds images of different sizes ({image_size[0]}x{image_size[1]} "
                f"first, {size[0]}x{size[1]} in {where}); one camera's images must share one size and "
                "orientation (portrait photos among landscape ones?): rotate or remove the odd ones"
            )
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
        "%s: board %s kept in %d of %d frames (%s)%s",
        camera,
        board.name,
        len(detections),
        frames_read,
        ", ".join(f"{k} {v}" for k, v in rejections.counts.items() if v) or "none rejected",
        "; found by " + ", ".join(f"{k} {v}" for k, v in finder.found_by.items()) if finder.found_by else "",
    )
    if not detections:
        from mocap_studio.calibration.diagnose import not_found_message  # diagnose builds on this module

        raise BoardNotFoundError(
            not_found_message(camera, source, board, config, frames_read, rejections, samples)
        )
    return CameraDetections(
        camera, source, image_size, tuple(detections), frames_read, dict(rejections.counts), dict(finder.found_by)
    )
