"""Why a board is not found, and what to change: the diagnosis behind :class:`~calibration.detect.BoardNotFoundError`.

Tries the board as defined; then the markers of its dictionary in both polarities (inverted flag), the other
legacy ChArUco layout and swapped squares_x / squares_y; then the common dictionaries; and reports brightness
and contrast when nothing at all is seen. Checkerboards: off-by-one square counts, or markers (not a plain
checkerboard).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from mocap_studio.calibration.boards import Board, aruco_dictionary
from mocap_studio.calibration.detect import BoardDetection, DetectionConfig, _Finder, _judge, _Rejections, _to_gray

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


def _where(board: Board) -> str:
    return f"the board file {board.source}" if board.source else f"the definition of board {board.name!r}"


def not_found_message(
    camera: str,
    source: Path,
    board: Board,
    config: DetectionConfig,
    frames_read: int,
    rejections: _Rejections,
    samples: list[np.ndarray],
) -> str:
    """The message of a :class:`~calibration.detect.BoardNotFoundError`: what was read, and why no view was
    kept (every view rejected by a quality gate, with the figures, or the board never seen: :func:`diagnose_board`
    on the ``samples`` kept for it)."""
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
