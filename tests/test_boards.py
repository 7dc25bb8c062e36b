"""Board definitions, presets, rendering and the printable output of ``mocap board``."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
from mocap_studio.calibration.boards import Board, board_image, list_presets, load_board, write_board_printout
from mocap_studio.calibration.detect import detect_board_in_image
from mocap_studio.cli import main
from mocap_studio.common.config import ConfigError
from PIL import Image

CALISCOPE = Path(__file__).resolve().parents[2] / "shared" / "data" / "caliscope_charuco_4cam"


def test_presets_load_and_describe_themselves():
    names = list_presets()
    for required in ("charuco_5x7_dict4x4_100", "caliscope_charuco_4x5", "checkerboard_9x6"):
        assert required in names
    for name in names:
        board = load_board(name)
        assert board.name == name and board.source.endswith(f"{name}.toml")
        assert board.object_points.shape == (board.n_corners, 3)
        assert np.all(board.object_points[:, 2] == 0)
        assert board.kind in board.describe()
    default = load_board("charuco_5x7_dict4x4_100")
    assert default.square_size_m >= 0.1  # a 4 cm square is never detected at 4 m in 720p (DESIGN.md)


def test_object_points_follow_opencv_ids():
    charuco = load_board("charuco_5x7_dict4x4_100")
    np.testing.assert_allclose(charuco.object_points, charuco.cv_board().getChessboardCorners(), atol=1e-7)
    assert charuco.n_corners == 4 * 6
    grid = load_board("aruco_grid_4x5_dict4x4_50")
    quads = np.asarray(grid.cv_board().getObjPoints()).reshape(-1, 3)
    np.testing.assert_allclose(grid.object_points, quads, atol=1e-7)  # id = 4 * marker + k
    checker = load_board("checkerboard_9x6")
    assert checker.inner_corners == (9, 6) and checker.n_corners == 54 and checker.cv_board() is None
    np.testing.assert_allclose(checker.object_points[10], [0.050, 0.050, 0.0])  # row 1, column 1


@pytest.mark.skipif(not CALISCOPE.exists(), reason=f"real data not present at {CALISCOPE}")
def test_caliscope_preset_matches_caliscope_file():
    with open(CALISCOPE / "charuco.toml", "rb") as fh:
        theirs = tomllib.load(fh)
    board = load_board("caliscope_charuco_4x5")
    assert (board.squares_x, board.squares_y) == (theirs["columns"], theirs["rows"])
    assert board.square_size_m == pytest.approx(theirs["square_size_override_cm"] / 100)
    assert board.marker_size_m == pytest.approx(board.square_size_m * theirs["aruco_scale"])
    assert board.dictionary == theirs["dictionary"] and board.inverted == theirs["inverted"]


def test_load_board_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown board 'nope'.*charuco_5x7_dict4x4_100"):
        load_board("nope")
    path = tmp_path / "mine.toml"
    path.write_text(
        'kind = "charuco"\nsquares_x = 5\nsquares_y = 7\nsquare_size_m = 0.1\nmarker_size_m = 0.07\n'
        'dictionary = "DICT_4X4_50"\nmarker_size = 3\n'
    )
    with pytest.raises(ConfigError, match=r"mine.toml.*unknown key.*marker_size"):
        load_board(path)
    path.write_text(
        'kind = "charuco"\nsquares_x = 5\nsquares_y = 7\nsquare_size_m = 100\nmarker_size_m = 70\n'
        'dictionary = "DICT_4X4_50"\n'
    )
    with pytest.raises(ConfigError, match="millimetres"):
        load_board(path)
    path.write_text(
        'kind = "charuco"\nsquares_x = 5\nsquares_y = 7\nsquare_size_m = 0.1\nmarker_size_m = 0.07\n'
        'dictionary = "DICT_4X4_5"\n'
    )
    with pytest.raises(ConfigError, match="unknown aruco dictionary 'DICT_4X4_5'.*DICT_4X4_50"):
        load_board(path)
    path.write_text('kind = "charuco"\nsquares_x = 5\nsquares_y = 7\n')
    with pytest.raises(ConfigError, match="missing key"):
        load_board(path)
    with pytest.raises(ValueError, match="only 50"):
        Board("big", "charuco", 12, 12, 0.05, 0.03, "DICT_4X4_50")
    with pytest.raises(ValueError, match="marker_size_m"):
        Board("m", "charuco", 5, 7, 0.05, 0.05, "DICT_4X4_50")


def test_board_file_name_defaults_to_stem(tmp_path):
    path = tmp_path / "my_board.toml"
    path.write_text('kind = "checkerboard"\nsquares_x = 8\nsquares_y = 6\nsquare_size_m = 0.03\n')
    board = load_board(str(path))
    assert board.name == "my_board" and board.inner_corners == (7, 5)
    assert board == Board("my_board", "checkerboard", 8, 6, 0.03)  # the source is not part of identity


def test_board_image_size_polarity_and_legacy_layout():
    board = load_board("charuco_desk_5x7_a4")
    image = board_image(board, 50)
    assert image.shape == (350, 250) and image.dtype == np.uint8
    inverted = board_image(Board("i", "charuco", 5, 7, 0.035, 0.026, "DICT_4X4_50", inverted=True), 50)
    np.testing.assert_array_equal(inverted, 255 - image)
    for legacy in (False, True):  # an even number of rows is where the layouts differ
        even = Board("e", "charuco", 5, 6, 0.1, 0.07, "DICT_4X4_50", legacy_pattern=legacy)
        mine = board_image(even, 100)
        np.testing.assert_array_equal(mine, even.cv_board().generateImage(mine.shape[::-1]))


def _pdf_boxes(pdf: bytes) -> tuple[list[float], list[float]]:
    media = [float(v) for v in re.search(rb"/MediaBox \[([^\]]+)\]", pdf).group(1).split()]
    cm = [float(v) for v in re.search(rb"q ([\d. ]+) cm /Im0 Do", pdf).group(1).split()]
    return media, cm


@pytest.mark.parametrize("name", ["charuco_5x7_dict4x4_100", "caliscope_charuco_4x5", "checkerboard_9x6"])
def test_mocap_board_writes_exact_size_pdf_and_detectable_png(tmp_path, name):
    board = load_board(name)
    margin = 12.0
    assert main(["board", name, "--out", str(tmp_path), "--dpi", "60", "--margin-mm", str(margin)]) == 0
    pdf = (tmp_path / f"{name}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    media, cm = _pdf_boxes(pdf)
    mm = 25.4 / 72
    width_mm, height_mm = (s * 1000 for s in board.size_m)
    assert (
        abs(media[2] * mm - (width_mm + 2 * margin)) < 0.5
        and abs(media[3] * mm - (height_mm + 2 * margin)) < 0.5
    )
    assert abs(cm[0] * mm - width_mm) < 0.5 and abs(cm[3] * mm - height_mm) < 0.5  # the board itself
    assert abs(cm[4] * mm - margin) < 0.5 and abs(cm[5] * mm - margin) < 0.5
    text = pdf.decode("latin-1")
    assert board.describe().replace("(", "\\(") in text  # the definition is printed on the page

    png = Image.open(tmp_path / f"{name}.png")
    dpi = png.info["dpi"][0]
    square_px = board.square_size_m * 1000 / 25.4 * dpi
    assert abs(png.size[0] / dpi * 25.4 - (width_mm + 2 * margin)) < 0.5
    assert abs(png.size[1] / dpi * 25.4 - (height_mm + 2 * margin)) < 0.5
    image = np.asarray(png)
    detection = detect_board_in_image(image, board)
    assert detection is not None and len(detection.ids) == board.n_corners
    # Corners land where the physical layout says: margin plus object point, at the file's resolution.
    expected = (board.object_points[detection.ids, :2] * 1000 + margin) / 25.4 * dpi - 0.5
    assert np.median(np.linalg.norm(detection.corners - expected, axis=1)) < 0.02 * square_px + 0.6


def test_inverted_board_prints_inverted(tmp_path):
    inverted = load_board("caliscope_charuco_4x5")
    plain = dataclasses.replace(inverted, name="plain", inverted=False)
    pages = [write_board_printout(b, tmp_path, dpi=60, margin_mm=10) for b in (inverted, plain)]
    images = [np.asarray(Image.open(p.png)) for p in pages]
    margin_px = round(10 / 25.4 * pages[0].dpi)
    inside = (slice(margin_px, -margin_px), slice(margin_px, -margin_px))
    np.testing.assert_array_equal(images[0][inside], 255 - images[1][inside])  # the pattern is inverted
    assert images[0][: margin_px // 2].mean() > 250  # the paper margin and its text are not
    with pytest.raises(ValueError, match="margin_mm"):
        write_board_printout(load_board("checkerboard_9x6"), tmp_path, margin_mm=3)


def test_cli_unknown_board_is_an_error(tmp_path, capsys):
    assert main(["board", "no_such_board", "--out", str(tmp_path)]) == 1
    assert not list(tmp_path.iterdir())
