"""Calibration boards as data: ChArUco, checkerboard and ArUco grid definitions, loaded from TOML.

A board file (``configs/boards/<name>.toml``, or any path) holds exactly the fields of :class:`Board`
except ``name`` (which defaults to the file's stem) and ``source``::

    kind = "charuco"            # "charuco" | "checkerboard" | "aruco_grid"
    squares_x = 5               # squares (aruco_grid: markers) along the board's x axis (columns)
    squares_y = 7               # squares (aruco_grid: markers) along the board's y axis (rows)
    square_size_m = 0.12        # square side; aruco_grid: marker pitch (marker side + gap)
    marker_size_m = 0.09        # marker side (0 for a checkerboard)
    dictionary = "DICT_4X4_100" # an OpenCV aruco dictionary name ("" for a checkerboard)
    inverted = false            # printed white-on-black (as caliscope prints its boards)
    legacy_pattern = false      # ChArUco layout of OpenCV < 4.6 (and calib.io) for an even squares_y

Board coordinates: metres, origin at the board's top-left outer corner as printed, x to the right, y down
the page, z = 0 on the board (OpenCV's convention for every board kind, so one frame serves all three).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from mocap_studio.common.config import ConfigError, config_from_mapping, load_toml

BoardKind = Literal["charuco", "checkerboard", "aruco_grid"]
BOARD_KINDS: tuple[str, ...] = ("charuco", "checkerboard", "aruco_grid")
PRESETS_DIR = Path(str(resources.files("mocap_studio.configs") / "boards"))

#: Every predefined OpenCV aruco dictionary, by the name a board file uses.
DICTIONARY_NAMES: tuple[str, ...] = tuple(
    sorted(n for n in dir(cv2.aruco) if n.startswith("DICT_") and n.upper() == n)
)


def aruco_dictionary(name: str) -> cv2.aruco.Dictionary:
    """The OpenCV predefined dictionary ``name`` (e.g. ``"DICT_4X4_1000"``); an unknown name lists the
    valid ones."""
    if not (isinstance(name, str) and name.startswith("DICT_") and hasattr(cv2.aruco, name)):
        raise ValueError(f"unknown aruco dictionary {name!r}; valid names are {', '.join(DICTIONARY_NAMES)}")
    return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name))


@dataclass(frozen=True)
class Board:
    """A planar calibration board. Sizes in metres; see the module docstring for the file format."""

    name: str
    """Short name, printed on the board and used in messages."""
    kind: BoardKind
    """"charuco", "checkerboard" or "aruco_grid"."""
    squares_x: int
    """Squares along x (columns); aruco_grid: markers along x. A checkerboard has squares_x - 1 inner
    corners along x."""
    squares_y: int
    """Squares along y (rows). aruco_grid: markers along y."""
    square_size_m: float
    """Square side in metres. aruco_grid: the marker pitch (marker side plus the gap between markers)."""
    marker_size_m: float = 0.0
    """ArUco marker side in metres (0 for a checkerboard)."""
    dictionary: str = ""
    """OpenCV predefined dictionary name, e.g. "DICT_4X4_1000" ("" for a checkerboard)."""
    inverted: bool = False
    """Printed inverted (white markers on black): detection inverts the image first."""
    legacy_pattern: bool = False
    """ChArUco only: the layout of OpenCV < 4.6 and calib.io (differs only when squares_y is even)."""
    source: str = field(default="", compare=False)
    """Where the definition came from (a file path), for messages; not part of the board's identity."""

    def __post_init__(self) -> None:
        where = f"board {self.name!r}" + (f" ({self.source})" if self.source else "")
        if self.kind not in BOARD_KINDS:
            raise ValueError(f"{where}: kind must be one of {BOARD_KINDS}, got {self.kind!r}")
        for attr in ("squares_x", "squares_y"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 2:
                raise ValueError(f"{where}: {attr} must be an integer >= 2, got {value!r}")
        if not (np.isfinite(self.square_size_m) and self.square_size_m > 0):
            raise ValueError(f"{where}: square_size_m must be > 0 (metres), got {self.square_size_m!r}")
        if self.square_size_m > 5:
            raise ValueError(
                f"{where}: square_size_m={self.square_size_m} looks like millimetres; give metres"
            )
        if self.kind == "checkerboard":
            if self.squares_x < 3 or self.squares_y < 3:
                raise ValueError(f"{where}: a checkerboard needs at least 3x3 squares (2x2 inner corners)")
            if self.dictionary or self.marker_size_m:
                raise ValueError(
                    f"{where}: a checkerboard has no markers; remove dictionary and marker_size_m"
                )
            return
        aruco_dictionary(self.dictionary)  # raises with the list of valid names
        if not (0 < self.marker_size_m < self.square_size_m):
            raise ValueError(
                f"{where}: marker_size_m must be > 0 and smaller than square_size_m "
                f"({self.square_size_m}), got {self.marker_size_m!r}"
            )
        n_dict = _dictionary_size(self.dictionary)
        if self.n_markers > n_dict:
            raise ValueError(
                f"{where}: needs {self.n_markers} markers but {self.dictionary} has only {n_dict}"
            )
        if self.legacy_pattern and self.kind != "charuco":
            raise ValueError(f"{where}: legacy_pattern applies to charuco boards only")

    # --- geometry
    @property
    def n_markers(self) -> int:
        """Number of ArUco markers on the board (0 for a checkerboard)."""
        if self.kind == "charuco":
            return (self.squares_x * self.squares_y) // 2
        if self.kind == "aruco_grid":
            return self.squares_x * self.squares_y
        return 0

    @property
    def size_m(self) -> tuple[float, float]:
        """Printed pattern size (width, height) in metres, without any margin."""
        if self.kind == "aruco_grid":
            gap = self.square_size_m - self.marker_size_m
            return (self.squares_x * self.square_size_m - gap, self.squares_y * self.square_size_m - gap)
        return (self.squares_x * self.square_size_m, self.squares_y * self.square_size_m)

    @property
    def inner_corners(self) -> tuple[int, int]:
        """Chessboard inner corners (along x, along y) for charuco and checkerboard boards."""
        return (self.squares_x - 1, self.squares_y - 1)

    @property
    def object_points(self) -> np.ndarray:
        """(N, 3) board points in metres (z = 0), row ``i`` is corner id ``i``.

        charuco / checkerboard: the inner chessboard corners, id = row * (squares_x - 1) + column (OpenCV's
        ChArUco corner ids). aruco_grid: the 4 corners of each marker (clockwise from its top-left),
        id = 4 * marker_index + k.
        """
        return _object_points(self).copy()

    @property
    def n_corners(self) -> int:
        """Number of corner ids (rows of :attr:`object_points`)."""
        return len(_object_points(self))

    def cv_dictionary(self) -> cv2.aruco.Dictionary:
        """The OpenCV dictionary of the markers (ValueError for a checkerboard)."""
        if self.kind == "checkerboard":
            raise ValueError(f"board {self.name!r} is a checkerboard: it has no marker dictionary")
        return aruco_dictionary(self.dictionary)

    def cv_board(self) -> cv2.aruco.Board | None:
        """The OpenCV board (``CharucoBoard`` or ``GridBoard``); ``None`` for a checkerboard, which OpenCV
        describes only by its inner-corner count (:attr:`inner_corners`)."""
        return _cv_board(self)

    def describe(self) -> str:
        """One line that fully defines the board (printed on the board's margin and used in messages)."""
        text = f"{self.name}: {self.kind}, {self.squares_x} x {self.squares_y} "
        text += "markers" if self.kind == "aruco_grid" else "squares"
        text += f", {'pitch' if self.kind == 'aruco_grid' else 'square'} {self.square_size_m * 1000:g} mm"
        if self.kind != "checkerboard":
            text += f", marker {self.marker_size_m * 1000:g} mm, {self.dictionary}"
            text += f", inverted: {'yes' if self.inverted else 'no'}"
        if self.kind == "charuco":
            text += f", legacy pattern: {'yes' if self.legacy_pattern else 'no'}"
        return text


@functools.lru_cache(maxsize=64)
def _dictionary_size(name: str) -> int:
    return int(aruco_dictionary(name).bytesList.shape[0])


@functools.lru_cache(maxsize=64)
def _cv_board(board: Board) -> cv2.aruco.Board | None:
    if board.kind == "checkerboard":
        return None
    dictionary = aruco_dictionary(board.dictionary)
    if board.kind == "charuco":
        cv = cv2.aruco.CharucoBoard(
            (board.squares_x, board.squares_y), board.square_size_m, board.marker_size_m, dictionary
        )
        cv.setLegacyPattern(board.legacy_pattern)
        return cv
    gap = board.square_size_m - board.marker_size_m
    return cv2.aruco.GridBoard((board.squares_x, board.squares_y), board.marker_size_m, gap, dictionary)


@functools.lru_cache(maxsize=64)
def _object_points(board: Board) -> np.ndarray:
    if board.kind == "aruco_grid":
        points = np.asarray(_cv_board(board).getObjPoints(), dtype=float).reshape(-1, 3)
    else:
        # Same ids and positions as OpenCV's ChArUco corners, also for a checkerboard, so code that takes
        # corner ids never needs to know which kind of board made them.
        nx, ny = board.inner_corners
        col, row = np.meshgrid(np.arange(nx), np.arange(ny))
        s = board.square_size_m
        points = np.stack([(col.ravel() + 1) * s, (row.ravel() + 1) * s, np.zeros(nx * ny)], axis=-1)
    points.setflags(write=False)
    return points


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
def board_image(board: Board, pixels_per_square: int) -> np.ndarray:
    """The printed pattern as a (H, W) uint8 image (255 = paper), ``pixels_per_square`` pixels per square
    (aruco_grid: per marker pitch), without margin. Inverted boards come out inverted.

    Pixel (column c, row r) covers board x in [c, c + 1) / pixels_per_metre, so board point (X, Y) lies at
    pixel coordinates (X * ppm - 0.5, Y * ppm - 0.5) with ``ppm = pixels_per_square / square_size_m``.
    """
    pixels_per_square = int(pixels_per_square)
    if pixels_per_square < 8:
        raise ValueError(f"pixels_per_square must be >= 8 to draw markers, got {pixels_per_square}")
    ppm = pixels_per_square / board.square_size_m
    width = round(board.size_m[0] * ppm)
    height = round(board.size_m[1] * ppm)
    if board.kind == "checkerboard":
        col = np.arange(width) // pixels_per_square
        row = np.arange(height) // pixels_per_square
        # The top-left square is black, as in OpenCV's pattern images.
        image = np.where((row[:, None] + col[None, :]) % 2 == 0, 0, 255).astype(np.uint8)
    else:
        image = _draw_marker_board(board, ppm, (width, height))
    return 255 - image if board.inverted else image


def _draw_marker_board(board: Board, ppm: float, size: tuple[int, int]) -> np.ndarray:
    """ChArUco / ArUco grid image drawn from the OpenCV board's marker positions and ids.

    Drawn here rather than by ``Board.generateImage``, which in OpenCV 5.1 fails an assertion for some
    sizes (e.g. 35 mm squares, 26 mm markers at 80 px per square) through a rounding error.
    """
    cv_board = _cv_board(board)
    dictionary = board.cv_dictionary()
    bits = dictionary.markerSize + 2  # one black border bit on each side, as OpenCV prints them
    image = np.full((size[1], size[0]), 255, dtype=np.uint8)
    if board.kind == "charuco":
        # Squares that hold a marker are white; the others are black (this follows the legacy flag).
        holds_marker = np.zeros((board.squares_y, board.squares_x), dtype=bool)
        for quad in cv_board.getObjPoints():
            cx, cy = np.asarray(quad, dtype=float).reshape(4, 3)[:, :2].mean(axis=0) / board.square_size_m
            holds_marker[int(cy), int(cx)] = True
        edges_x = np.round(np.arange(board.squares_x + 1) * board.square_size_m * ppm).astype(int)
        edges_y = np.round(np.arange(board.squares_y + 1) * board.square_size_m * ppm).astype(int)
        for row, col in zip(*np.nonzero(~holds_marker), strict=True):
            image[edges_y[row] : edges_y[row + 1], edges_x[col] : edges_x[col + 1]] = 0
    for marker_id, quad in zip(
        np.asarray(cv_board.getIds()).reshape(-1), cv_board.getObjPoints(), strict=True
    ):
        quad = np.asarray(quad, dtype=float).reshape(4, 3)
        x0, y0 = np.round(quad[0, :2] * ppm).astype(int)
        x1, y1 = np.round(quad[2, :2] * ppm).astype(int)
        marker = cv2.aruco.generateImageMarker(dictionary, int(marker_id), bits, borderBits=1)
        image[y0:y1, x0:x1] = cv2.resize(marker, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return image


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
def list_presets() -> list[str]:
    """Names of the board presets in configs/boards."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_board(name_or_path: str | Path) -> Board:
    """A board from a preset name (``configs/boards/<name>.toml``) or a TOML file path.

    Unknown keys, missing keys and impossible values are errors naming the file; an unknown name lists the
    presets.
    """
    candidate = Path(name_or_path)
    if isinstance(name_or_path, Path) or candidate.suffix == ".toml" or candidate.exists():
        path = candidate
        if not path.exists():
            raise FileNotFoundError(f"board file {path} not found; presets are: {', '.join(list_presets())}")
    else:
        path = PRESETS_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise ValueError(
                f"unknown board {str(name_or_path)!r}: not a preset and not a .toml file. "
                f"Presets: {', '.join(list_presets())}; or give the path of a board TOML "
                f"(see calibration/boards.py for the format)."
            )
    mapping = load_toml(path)
    mapping.setdefault("name", path.stem)
    if "source" in mapping:
        raise ConfigError(f"{path}: 'source' is not a board file key")
    mapping["source"] = str(path)
    required = ("kind", "squares_x", "squares_y", "square_size_m")
    missing = [k for k in required if k not in mapping]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {missing}; a board file needs {list(required)}")
    return config_from_mapping(Board, mapping, source=str(path))


# --------------------------------------------------------------------------------------------------
# Printouts
# --------------------------------------------------------------------------------------------------
MM_PER_INCH = 25.4
POINTS_PER_MM = 72 / MM_PER_INCH
MIN_MARGIN_MM = 8.0


@dataclass(frozen=True)
class Printout:
    """A board printout written by :func:`write_board_printout`."""

    png: Path
    pdf: Path
    page_size_mm: tuple[float, float]
    """(width, height) of the PDF page: the board plus the margins."""
    dpi: float
    """Resolution of the PNG (and of the board image inside the PDF), chosen so a square is whole pixels."""


def write_board_printout(
    board: Board, out_dir: str | Path, dpi: float = 300.0, margin_mm: float = 15.0
) -> Printout:
    """Write ``<out_dir>/<name>.png`` and ``<name>.pdf``: the board at its exact physical size, with its
    full definition (:meth:`Board.describe`) printed in the bottom margin, so the paper and the file can
    never disagree. The PDF page measures the board plus ``margin_mm`` on every side; the PNG carries its
    resolution (pixels per metre), adjusted from ``dpi`` so that every square is a whole number of pixels.
    Inverted boards print inverted. Both files are written atomically.
    """
    from mocap_studio.common.fileio import write_bytes_atomic, write_with  # only the printout writes files

    if not 50 <= dpi <= 1200:
        raise ValueError(f"dpi must be within 50..1200, got {dpi}")
    if margin_mm < MIN_MARGIN_MM:
        raise ValueError(
            f"margin_mm must be >= {MIN_MARGIN_MM} mm to hold the board's description, got {margin_mm}"
        )
    pitch_mm = board.square_size_m * 1000
    pixels_per_square = max(8, round(pitch_mm / MM_PER_INCH * dpi))
    px_per_mm = pixels_per_square / pitch_mm
    pattern = board_image(board, pixels_per_square)
    width_mm, height_mm = (s * 1000 + 2 * margin_mm for s in board.size_m)
    lines = _printout_lines(board, (width_mm, height_mm))
    out_dir = Path(out_dir)
    png_path, pdf_path = out_dir / f"{board.name}.png", out_dir / f"{board.name}.pdf"

    page_px = _png_page(pattern, lines, px_per_mm, margin_mm)
    effective_dpi = px_per_mm * MM_PER_INCH
    write_with(png_path, lambda tmp: page_px.save(tmp, format="PNG", dpi=(effective_dpi, effective_dpi)))
    pdf = _pdf_page(pattern, lines, (width_mm, height_mm), margin_mm, board.size_m)
    write_bytes_atomic(pdf_path, pdf)
    return Printout(png_path, pdf_path, (width_mm, height_mm), effective_dpi)


def _printout_lines(board: Board, page_mm: tuple[float, float]) -> list[str]:
    unit = "marker pitch" if board.kind == "aruco_grid" else "square"
    return [
        board.describe(),
        f"Print at 100 % (no 'fit to page'): page {page_mm[0]:.1f} x {page_mm[1]:.1f} mm.",
        f"Check with a ruler: one {unit} = {board.square_size_m * 1000:g} mm. Glue flat on a rigid plate.",
    ]


def _font_mm(margin_mm: float, width_mm: float, lines: list[str]) -> float:
    """Text height that fits the lines in the bottom margin and across the board's width (Helvetica's
    characters average about half their height in width; 0.55 leaves room)."""
    longest = max(len(line) for line in lines)
    return min(4.0, margin_mm / (1.3 * len(lines) + 0.6), width_mm / (0.55 * longest))


def _png_page(pattern: np.ndarray, lines: list[str], px_per_mm: float, margin_mm: float):
    from PIL import Image, ImageDraw, ImageFont

    margin_px = round(margin_mm * px_per_mm)
    h, w = pattern.shape
    page = np.full((h + 2 * margin_px, w + 2 * margin_px), 255, dtype=np.uint8)
    page[margin_px : margin_px + h, margin_px : margin_px + w] = pattern
    image = Image.fromarray(page, mode="L")
    draw = ImageDraw.Draw(image)
    font_px = max(6, round(_font_mm(margin_mm, w / px_per_mm, lines) * px_per_mm))
    font = ImageFont.load_default(size=font_px)
    widest = max(font.getlength(line) for line in lines)
    if widest > w:  # the bundled font is wider than Helvetica: shrink to the board's width
        font_px = max(6, int(font_px * w / widest))
        font = ImageFont.load_default(size=font_px)
    y = margin_px + h + (margin_px - 1.3 * font_px * len(lines)) / 2
    for line in lines:
        draw.text((margin_px, y), line, fill=0, font=font)
        y += 1.3 * font_px
    return image


def _pdf_escape(text: str) -> str:
    text = text.encode("latin-1", errors="replace").decode("latin-1")
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _pdf_page(
    pattern: np.ndarray,
    lines: list[str],
    page_mm: tuple[float, float],
    margin_mm: float,
    board_m: tuple[float, float],
) -> bytes:
    """A one-page PDF: the pattern as a lossless 1-bit image placed at exactly ``board_m``, text in
    Helvetica. Written by hand (a dozen objects) so no PDF library is needed and nothing is resampled."""
    import zlib

    pt = POINTS_PER_MM
    page_w, page_h = page_mm[0] * pt, page_mm[1] * pt
    img_w, img_h = board_m[0] * 1000 * pt, board_m[1] * 1000 * pt
    x0 = y0 = margin_mm * pt
    h, w = pattern.shape
    bits = np.packbits(pattern > 127, axis=1)  # 1 = white in DeviceGray
    image_data = zlib.compress(bits.tobytes(), 6)
    font_pt = _font_mm(margin_mm, board_m[0] * 1000, lines) * pt
    content = [f"q {img_w:.4f} 0 0 {img_h:.4f} {x0:.4f} {y0:.4f} cm /Im0 Do Q"]
    # First baseline so that the block of lines sits in the middle of the bottom margin.
    text_y = (margin_mm * pt + 1.3 * font_pt * (len(lines) - 1)) / 2 + 0.3 * font_pt
    for i, line in enumerate(lines):
        content.append(
            f"BT /F1 {font_pt:.2f} Tf {x0:.4f} {text_y - 1.3 * font_pt * i:.4f} Td "
            f"({_pdf_escape(line)}) Tj ET"
        )
    content_data = "\n".join(content).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {page_w:.4f} {page_h:.4f}] "
            "/Resources << /XObject << /Im0 4 0 R >> /Font << /F1 5 0 R >> >> /Contents 6 0 R >>"
        ).encode(),
        (
            f"<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceGray "
            f"/BitsPerComponent 1 /Filter /FlateDecode /Length {len(image_data)} >>\nstream\n"
        ).encode()
        + image_data
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        f"<< /Length {len(content_data)} >>\nstream\n".encode() + content_data + b"\nendstream",
        f"<< /Title ({_pdf_escape(lines[0])}) /Producer (mocap-studio) >>".encode("latin-1"),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    trailer = f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 7 0 R >>\n"
    out += (trailer + f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)
