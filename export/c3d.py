"""C3D files of 3D points: writer and a small reader, from the format's public description (c3d.org).

A C3D file is a sequence of 512-byte blocks, all 16-bit words little-endian for the Intel processor type
that we write:

- block 1, the header: word 1 = parameter block number (2) and the key 0x50; point count; analog
  channels x samples per frame; first and last frame (1-based); maximum interpolation gap; the point scale
  (float; negative means the points are stored as floats); the first data block; analog samples per frame;
  the frame rate (float); word 150 = 12345 (four-character event labels), no events.
- the parameter section, from block 2: a 4-byte preamble (0x01, key 0x50, block count, processor type
  84 = Intel), then groups and parameters. Each record: name length (signed byte; negative = locked), id
  (negative for a group, the group's positive id for its parameters), the upper-case name, a 16-bit offset
  to the next record counted from the offset word itself (0 ends the section), then for a group its
  description, and for a parameter its type (-1 char, 1 byte, 2 int16, 4 float), dimension count,
  dimensions (bytes, first one varying fastest) and data, then the description.
- the data section, from ``POINT:DATA_START``: per frame, per point, X, Y, Z and a fourth word, all
  float32 when the scale is negative. The fourth word's integer value holds the camera mask in its high byte
  (bit i: camera i+1 saw the point) and the residual divided by |scale| in its low byte; -1 marks an
  invalid (missing) point, 0 an interpolated one.

We write points in millimetres (``POINT:UNITS 'mm'``) in the world axes (Z up), with POINT LABELS, UNITS,
RATE, SCALE, USED, DATA_START, FRAMES, X_SCREEN/Y_SCREEN, an empty ANALOG group, TRIAL
ACTUAL_START_FIELD/ACTUAL_END_FIELD, and MANUFACTURER. The reader handles Intel-format files with float or
integer points, which covers the Vicon, Qualisys and Optotrak files in ../shared/data.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mocap_studio.common.fileio import write_bytes_atomic
from mocap_studio.reconstruction.keypoints import Keypoints3D

log = logging.getLogger(__name__)

BLOCK = 512
KEY = 0x50
INTEL = 84
PROCESSORS = {84: "Intel", 85: "DEC", 86: "MIPS"}
CHAR, BYTE, INT16, FLOAT = -1, 1, 2, 4
RESIDUAL_SCALE_MM = 0.1
"""|POINT:SCALE| we write: the residual's unit in the fourth word, millimetres."""
MAX_CAMERAS_IN_MASK = 7


class C3DError(ValueError):
    """A C3D file that cannot be read or written; the message names the file and what is wrong."""


@dataclass(frozen=True)
class C3DParam:
    """One parameter: its type code (-1 char, 1 byte, 2 int16, 4 float), dimensions and decoded value."""

    type_code: int
    dims: tuple[int, ...]
    value: np.ndarray | str | list[str]
    description: str = ""


@dataclass(frozen=True)
class C3DData:
    """What :func:`read_c3d` returns.

    points: (T, N, 3) in the file's units (``units``), NaN where invalid; residual: (T, N) in the same
    units (-1 where invalid, 0 where interpolated); camera_mask: (T, N) int, bit i = camera i+1.
    """

    labels: tuple[str, ...]
    points: np.ndarray
    residual: np.ndarray
    camera_mask: np.ndarray
    frame_rate: float
    first_frame: int
    units: str
    scale: float
    parameters: dict[str, dict[str, C3DParam]] = field(default_factory=dict)
    truncated: bool = False
    """True when the file ended before the last frame its header announces (the frames present are kept)."""

    def param(self, group: str, name: str) -> C3DParam:
        """The parameter ``group:name`` (case-insensitive; KeyError when the file has none)."""
        try:
            return self.parameters[group.upper()][name.upper()]
        except KeyError:
            raise KeyError(f"no parameter {group}:{name} in the file") from None


# ----------------------------------------------------------------------------------------------- writing
def _name(text: str) -> bytes:
    raw = text.upper().encode("ascii")
    if not 0 < len(raw) < 128:
        raise C3DError(f"C3D group/parameter names must have 1 to 127 characters: {text!r}")
    return raw


def _group_record(gid: int, name: str, description: str) -> bytes:
    desc = description.encode("ascii", "replace")[:255]
    body = bytes([len(desc)]) + desc
    nm = _name(name)
    return struct.pack("<bb", len(nm), -gid) + nm + struct.pack("<h", 2 + len(body)) + body


def _param_record(
    gid: int, name: str, type_code: int, dims: tuple[int, ...], data: bytes, desc: str
) -> bytes:
    if any(not 0 <= d <= 255 for d in dims):
        raise C3DError(f"parameter {name}: each dimension must fit in a byte (0..255), got {dims}")
    d = desc.encode("ascii", "replace")[:255]
    body = struct.pack("<bB", type_code, len(dims)) + bytes(dims) + data + bytes([len(d)]) + d
    nm = _name(name)
    return struct.pack("<bb", len(nm), gid) + nm + struct.pack("<h", 2 + len(body)) + body


def _chars(texts: list[str], width: int | None = None) -> tuple[tuple[int, ...], bytes]:
    """A char parameter: one string -> dims (len,), several -> (width, count), space padded."""
    enc = [t.encode("ascii", "replace") for t in texts]
    if len(texts) == 1 and width is None:
        return (len(enc[0]),), enc[0]
    w = width or max([len(e) for e in enc] + [1])
    return (w, len(enc)), b"".join(e[:w].ljust(w) for e in enc)


def _params_section(params: list[tuple[int, str, str, list[tuple]]]) -> bytes:
    """Groups ``(id, name, description, [(param name, type, dims, data bytes, description), ...])``."""
    records = []
    for gid, gname, gdesc, items in params:
        records.append(_group_record(gid, gname, gdesc))
        for pname, type_code, dims, data, pdesc in items:
            records.append(_param_record(gid, pname, type_code, dims, data, pdesc))
    # the last record's "next" offset is 0: the end of the parameter section
    last = bytearray(records[-1])
    nlen = abs(struct.unpack("<b", last[:1])[0])
    last[2 + nlen : 4 + nlen] = struct.pack("<h", 0)
    records[-1] = bytes(last)
    return b"".join(records)


def _i16(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}h", *values)


def _u16(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}H", *values)


def _f32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def encode_c3d(
    xyz_m: np.ndarray,
    labels: tuple[str, ...] | list[str],
    frame_rate: float,
    residual_m: np.ndarray | None = None,
    camera_mask: np.ndarray | None = None,
    interpolated: np.ndarray | None = None,
    descriptions: tuple[str, ...] | list[str] | None = None,
    software: str = "mocap-studio",
) -> bytes:
    """The bytes of a C3D file holding points ``xyz_m`` (T, N, 3) metres, world frame (Z up), NaN = missing.

    ``residual_m`` (T, N) metres (default: one residual unit, 0.1 mm, i.e. "measured"); ``camera_mask``
    (T, N) int, bit i = camera i+1 saw the point (cameras 1..7); ``interpolated`` (T, N) bool writes residual
    0 (the C3D mark for a filled-in point). Points are written in millimetres as float32.
    """
    xyz = np.asarray(xyz_m, dtype=float)
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"xyz_m must have shape (T, N, 3), got {xyz.shape}")
    n_frames, n_points = xyz.shape[:2]
    labels = [str(x) for x in labels]
    if len(labels) != n_points:
        raise ValueError(f"{len(labels)} labels for {n_points} points on axis 1 of xyz_m")
    if not 0 < n_points <= 255:
        raise ValueError(f"C3D POINT:LABELS holds 1..255 points here, got {n_points}")
    if not 0 < n_frames <= 0xFFFF * 0xFFFF:
        raise ValueError(f"need at least one frame, got {n_frames}")
    if not (np.isfinite(frame_rate) and frame_rate > 0):
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    if np.isinf(xyz).any():
        raise ValueError("xyz_m holds infinite values; use NaN for missing points")
    shape2 = (n_frames, n_points)
    res = np.full(shape2, RESIDUAL_SCALE_MM / 1000.0) if residual_m is None else np.asarray(residual_m, float)
    mask = np.zeros(shape2, np.int64) if camera_mask is None else np.asarray(camera_mask, np.int64)
    interp = np.zeros(shape2, bool) if interpolated is None else np.asarray(interpolated, bool)
    for arr, nm in ((res, "residual_m"), (mask, "camera_mask"), (interp, "interpolated")):
        if arr.shape != shape2:
            raise ValueError(f"{nm} must have shape {shape2}, got {arr.shape}")
    missing = np.isnan(xyz).any(-1)
    res_units = np.clip(np.rint(np.nan_to_num(res, nan=0.0) * 1000.0 / RESIDUAL_SCALE_MM), 1, 255)
    res_units = np.where(interp, 0, res_units)
    word4 = ((mask & 0x7F) << 8) | res_units.astype(np.int64)
    word4 = np.where(missing, -1, word4).astype(np.float32)
    frames = np.concatenate(
        [np.where(missing[..., None], 0.0, xyz * 1000.0).astype(np.float32), word4[..., None]], axis=-1
    )

    descs = list(descriptions) if descriptions is not None else [""] * n_points
    if len(descs) != n_points:
        raise ValueError(f"{len(descs)} descriptions for {n_points} points")
    last = min(n_frames, 0xFFFF)
    frames_word = n_frames if n_frames <= 0xFFFF else 0xFFFF

    def point_group(data_start: int) -> list[tuple]:
        label_dims, label_data = _chars(labels, max(4, max(len(s) for s in labels)))
        desc_dims, desc_data = _chars(descs, max(1, max(len(s) for s in descs)))
        return [
            ("USED", INT16, (), _u16(n_points), "number of points"),
            ("FRAMES", INT16, (), _u16(frames_word), "number of frames (see TRIAL for more than 65535)"),
            ("DATA_START", INT16, (), _u16(data_start), "first block of the point data"),
            ("SCALE", FLOAT, (), _f32(-RESIDUAL_SCALE_MM), "negative: float data; residual unit in mm"),
            ("RATE", FLOAT, (), _f32(frame_rate), "frames per second"),
            ("UNITS", CHAR, *_chars(["mm"]), "point units"),
            ("LABELS", CHAR, label_dims, label_data, "point names"),
            ("DESCRIPTIONS", CHAR, desc_dims, desc_data, "point descriptions"),
            ("X_SCREEN", CHAR, *_chars(["+X"]), "screen right"),
            ("Y_SCREEN", CHAR, *_chars(["+Z"]), "screen up: the world is Z up"),
        ]

    def groups(data_start: int) -> list[tuple[int, str, str, list[tuple]]]:
        return [
            (1, "POINT", "3D point parameters", point_group(data_start)),
            (
                2,
                "ANALOG",
                "analog data parameters (none)",
                [
                    ("USED", INT16, (), _i16(0), "number of analog channels"),
                    ("RATE", FLOAT, (), _f32(frame_rate), "analog sample rate"),
                    ("GEN_SCALE", FLOAT, (), _f32(1.0), "general scale"),
                ],
            ),
            (
                3,
                "TRIAL",
                "trial parameters",
                [
                    ("ACTUAL_START_FIELD", INT16, (2,), _u16(1, 0), "first frame (low, high word)"),
                    ("ACTUAL_END_FIELD", INT16, (2,), _u16(n_frames & 0xFFFF, n_frames >> 16), "last frame"),
                    ("CAMERA_RATE", FLOAT, (), _f32(frame_rate), "frames per second"),
                ],
            ),
            (
                4,
                "MANUFACTURER",
                "the software that wrote the file",
                [
                    ("COMPANY", CHAR, *_chars([software]), "writer"),
                    ("SOFTWARE", CHAR, *_chars([software]), "writer"),
                ],
            ),
        ]

    # the parameter section's size fixes DATA_START; DATA_START's value does not change that size
    section = _params_section(groups(0))
    n_param_blocks = -(-(4 + len(section)) // BLOCK)
    data_start = 2 + n_param_blocks
    if data_start > 0xFFFF:
        raise ValueError("parameter section too large")
    section = _params_section(groups(data_start))
    param_bytes = (bytes([1, KEY, n_param_blocks, INTEL]) + section).ljust(n_param_blocks * BLOCK, b"\0")

    header = bytearray(BLOCK)
    header[0], header[1] = 2, KEY
    struct.pack_into("<HHHHH", header, 2, n_points, 0, 1, last, 0)
    struct.pack_into("<f", header, 12, -RESIDUAL_SCALE_MM)
    struct.pack_into("<HH", header, 16, data_start, 1)  # analog samples per frame: ANALOG:RATE / RATE
    struct.pack_into("<f", header, 20, frame_rate)
    struct.pack_into("<H", header, 2 * 149, 12345)  # word 150: four-character event labels, no events
    data = frames.astype("<f4").tobytes()
    data = data.ljust(-(-len(data) // BLOCK) * BLOCK, b"\0")
    return bytes(header) + param_bytes + data


def write_c3d(
    path: str | os.PathLike,
    xyz_m: np.ndarray,
    labels: tuple[str, ...] | list[str],
    frame_rate: float,
    **kwargs: object,
) -> Path:
    """Write :func:`encode_c3d`'s bytes to ``path``; the file appears complete or not at all."""
    data = encode_c3d(xyz_m, labels, frame_rate, **kwargs)  # type: ignore[arg-type]
    out = write_bytes_atomic(Path(path), data)
    log.debug("wrote %s (%d bytes)", out, len(data))
    return out


def write_c3d_keypoints(path: str | os.PathLike, keypoints: Keypoints3D, frame_rate: float) -> Path:
    """Write a :class:`Keypoints3D`: labels = joint names, camera mask from ``cameras_used`` (the first
    seven cameras, in the keypoints' camera order), interpolated points with residual 0. The residual word
    holds no 3D residual (we measure reprojection error in pixels), so it is one unit (0.1 mm) for measured
    points."""
    used = keypoints.cameras_used[..., :MAX_CAMERAS_IN_MASK].astype(np.int64)
    mask = (used << np.arange(used.shape[-1])).sum(-1) if used.shape[-1] else None
    return write_c3d(
        path,
        keypoints.xyz,
        keypoints.format.joints,
        frame_rate,
        camera_mask=mask,
        interpolated=keypoints.interpolated,
    )


# ----------------------------------------------------------------------------------------------- reading
def _decode_param(type_code: int, dims: tuple[int, ...], raw: bytes) -> np.ndarray | str | list[str]:
    if type_code == CHAR:
        text = raw.decode("latin-1")
        if len(dims) <= 1:
            return text.rstrip(" \0")
        width = dims[0]
        count = int(np.prod(dims[1:]))
        return [text[i * width : (i + 1) * width].rstrip(" \0") for i in range(count)]
    dtype = {BYTE: "<u1", INT16: "<i2", FLOAT: "<f4"}[type_code]
    arr = np.frombuffer(raw, dtype=dtype)
    return arr.reshape(tuple(reversed(dims))) if dims else arr.reshape(())


def _read_parameters(buf: bytes, start: int, path: Path) -> dict[str, dict[str, C3DParam]]:
    if len(buf) < start + 4:
        raise C3DError(f"{path}: file ends inside the parameter section")
    proc = buf[start + 3]
    if proc != INTEL:
        raise C3DError(
            f"{path}: processor type {proc} ({PROCESSORS.get(proc, 'unknown')}); this reader handles "
            "Intel (84) files only: convert the file with a C3D tool (e.g. ezc3d) first"
        )
    n_blocks = buf[start + 2]
    end = min(len(buf), start + max(n_blocks, 1) * BLOCK)
    groups: dict[int, str] = {}
    pending: list[tuple[int, str, C3DParam]] = []
    pos = start + 4
    while pos + 2 <= end:
        nlen, gid = struct.unpack_from("<bb", buf, pos)
        nlen = abs(nlen)
        if nlen == 0:
            break
        name = buf[pos + 2 : pos + 2 + nlen].decode("latin-1").upper()
        off_at = pos + 2 + nlen
        (nxt,) = struct.unpack_from("<h", buf, off_at)
        body = off_at + 2
        if gid < 0:
            groups[-gid] = name
        else:
            type_code, ndim = struct.unpack_from("<bB", buf, body)
            dims = tuple(buf[body + 2 : body + 2 + ndim])
            size = abs(type_code) * int(np.prod(dims)) if dims else abs(type_code)
            data_at = body + 2 + ndim
            value = _decode_param(type_code, dims, buf[data_at : data_at + size])
            dlen = buf[data_at + size] if data_at + size < len(buf) else 0
            desc = buf[data_at + size + 1 : data_at + size + 1 + dlen].decode("latin-1")
            pending.append((gid, name, C3DParam(type_code, dims, value, desc)))
        if nxt <= 0:
            break
        pos = off_at + nxt
    out: dict[str, dict[str, C3DParam]] = {name: {} for name in groups.values()}
    for gid, name, param in pending:
        out.setdefault(groups.get(gid, f"GROUP_{gid}"), {})[name] = param
    return out


def _scalar(params: dict[str, dict[str, C3DParam]], group: str, name: str, default: float) -> float:
    p = params.get(group, {}).get(name)
    if p is None or isinstance(p.value, (str, list)) or np.size(p.value) == 0:
        return default
    v = float(np.ravel(p.value)[0])
    return v + 65536 if p.type_code == INT16 and v < 0 else v


def _labels(params: dict[str, dict[str, C3DParam]], n_points: int) -> tuple[str, ...]:
    labels: list[str] = []
    point = params.get("POINT", {})
    for key in ["LABELS"] + [f"LABELS{i}" for i in range(2, 100)]:
        if key not in point:
            break
        value = point[key].value
        labels.extend([value] if isinstance(value, str) else list(value))  # type: ignore[arg-type]
    labels = [s.strip() for s in labels[:n_points]]
    labels += [f"point_{i + 1}" for i in range(len(labels), n_points)]
    return tuple(labels)


def _first_text(value: np.ndarray | str | list[str]) -> str:
    """A char parameter's first string (some writers store POINT:UNITS once per point)."""
    if isinstance(value, list):
        return value[0].strip() if value else ""
    return str(value).strip()


def read_c3d(path: str | os.PathLike) -> C3DData:
    """Read the 3D points of an Intel-format C3D file (float or integer data; analog samples skipped)."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise C3DError(f"{path}: cannot read ({e})") from e
    if len(buf) < BLOCK or buf[1] != KEY:
        raise C3DError(f"{path}: not a C3D file (byte 2 of the header must be 0x50)")
    params = _read_parameters(buf, (buf[0] - 1) * BLOCK, path)
    n_points, analog_per_frame, first, last_hdr = struct.unpack_from("<HHHH", buf, 2)
    (scale,) = struct.unpack_from("<f", buf, 12)
    data_start_hdr, analog_samples = struct.unpack_from("<HH", buf, 16)
    (rate,) = struct.unpack_from("<f", buf, 20)
    n_points = int(_scalar(params, "POINT", "USED", n_points))
    scale = _scalar(params, "POINT", "SCALE", scale)
    rate = _scalar(params, "POINT", "RATE", rate)
    data_start = int(_scalar(params, "POINT", "DATA_START", data_start_hdr))
    n_frames = last_hdr - first + 1
    end_field = params.get("TRIAL", {}).get("ACTUAL_END_FIELD")
    start_field = params.get("TRIAL", {}).get("ACTUAL_START_FIELD")
    if end_field is not None and start_field is not None and np.size(end_field.value) == 2:
        lo_hi = np.asarray(end_field.value, np.int64).ravel() & 0xFFFF
        st = np.asarray(start_field.value, np.int64).ravel() & 0xFFFF
        n_long = int(lo_hi[0] + (lo_hi[1] << 16) - (st[0] + (st[1] << 16)) + 1)
        if n_long > n_frames:
            n_frames = n_long
    is_float = scale < 0
    word = 4 if is_float else 2
    analog_words = analog_per_frame
    frame_bytes = word * (4 * n_points + analog_words)
    offset = (data_start - 1) * BLOCK
    available = max(0, (len(buf) - offset) // frame_bytes) if frame_bytes else 0
    truncated = available < n_frames
    if truncated:
        log.warning("%s: header announces %d frames, the file holds %d", path, n_frames, available)
        n_frames = available
    dtype = "<f4" if is_float else "<i2"
    raw = np.frombuffer(buf, dtype=dtype, count=n_frames * frame_bytes // word, offset=offset)
    raw = raw.reshape(n_frames, -1)[:, : 4 * n_points].reshape(n_frames, n_points, 4).astype(float)
    xyz = raw[..., :3] if is_float else raw[..., :3] * scale
    w4 = np.rint(raw[..., 3]).astype(np.int64) if is_float else raw[..., 3].astype(np.int64)
    invalid = w4 < 0
    w4 = np.where(invalid, 0, w4) & 0xFFFF
    residual = np.where(invalid, -1.0, (w4 & 0xFF) * abs(scale))
    mask = np.where(invalid, 0, (w4 >> 8) & 0x7F)
    units = params.get("POINT", {}).get("UNITS")
    return C3DData(
        labels=_labels(params, n_points),
        points=np.where(invalid[..., None], np.nan, xyz),
        residual=residual,
        camera_mask=mask,
        frame_rate=float(rate),
        first_frame=int(first),
        units=_first_text(units.value) if units is not None else "",
        scale=float(scale),
        parameters=params,
        truncated=truncated,
    )


def points_m(data: C3DData) -> np.ndarray:
    """(T, N, 3) points in metres, from the file's ``POINT:UNITS`` (mm, cm or m)."""
    factor = {"mm": 1e-3, "cm": 1e-2, "m": 1.0}.get(data.units.lower())
    if factor is None:
        raise C3DError(f"unknown POINT:UNITS {data.units!r}; expected mm, cm or m")
    return data.points * factor
