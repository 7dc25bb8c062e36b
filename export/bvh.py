"""BVH (Biovision hierarchy) reader and writer.

Reading: any channel order and rotation order per joint (0 to 3 rotation channels, position channels on the
root), ``End Site`` blocks, any whitespace layout. Files are Y-up; the reader turns them into the project's
Z-up world (``x, y, z`` in the file -> ``x, -z, y``) and scales them to metres by ``unit_m`` (centimetres by
default). Channel ``Zrotation Xrotation Yrotation`` means ``R = Rz @ Rx @ Ry``. Root position channels
give the root's position (the root OFFSET is its rest position), as Blender reads them.

Writing: Y-up, in the unit given (centimetres by default), with one rotation order for all joints or, for
a motion read from BVH, each joint's original channel layout, so read-write-read returns the same motion.
BVH has no place to state axes or units; they are the conventional Y-up and centimetres.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mocap_studio.common.fileio import atomic_path
from mocap_studio.common.rotations import euler_to_rotmat, rotmat_to_euler
from mocap_studio.export.motion import Y_UP_TO_Z_UP, Z_UP_TO_Y_UP, Motion, unwrap_degrees

log = logging.getLogger(__name__)

_POS = {"XPOSITION": "Xposition", "YPOSITION": "Yposition", "ZPOSITION": "Zposition"}
_ROT = {"XROTATION": "Xrotation", "YROTATION": "Yrotation", "ZROTATION": "Zrotation"}


class BvhError(ValueError):
    """A BVH file that cannot be read, with the file and line in the message."""


@dataclass
class _Joint:
    name: str
    parent: int
    offset: np.ndarray
    channels: tuple[str, ...] = ()
    end_site: np.ndarray | None = None


def _tokens(text: str) -> list[tuple[str, int]]:
    """Whitespace tokens with their line numbers; braces are tokens even when glued to words."""
    out: list[tuple[str, int]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for tok in re.findall(r"[{}]|[^\s{}]+", line):
            out.append((tok, lineno))
    return out


def _parse_hierarchy(tokens: list[tuple[str, int]], path: Path) -> tuple[list[_Joint], int]:
    """Joints in file order (parents first) and the index of the token after the hierarchy."""
    joints: list[_Joint] = []
    i = 0

    def expect(word: str) -> None:
        nonlocal i
        if i >= len(tokens) or tokens[i][0].upper() != word.upper():
            got, line = tokens[i] if i < len(tokens) else ("end of file", tokens[-1][1] if tokens else 0)
            raise BvhError(f"{path}: line {line}: expected {word!r}, found {got!r}")
        i += 1

    def number() -> float:
        nonlocal i
        tok, line = tokens[i]
        try:
            value = float(tok)
        except ValueError:
            raise BvhError(f"{path}: line {line}: expected a number, found {tok!r}") from None
        i += 1
        return value

    def offset() -> np.ndarray:
        expect("OFFSET")
        return np.array([number(), number(), number()])

    def block(parent: int) -> None:
        nonlocal i
        # i points at the joint name
        name_line = tokens[i][1]
        name_parts = []
        while i < len(tokens) and tokens[i][1] == name_line and tokens[i][0] != "{":
            name_parts.append(tokens[i][0])
            i += 1
        name = " ".join(name_parts)
        expect("{")
        joint = _Joint(name=name, parent=parent, offset=offset())
        index = len(joints)
        joints.append(joint)
        if i < len(tokens) and tokens[i][0].upper() == "CHANNELS":
            i += 1
            count = int(number())
            chans = []
            for _ in range(count):
                tok, line = tokens[i]
                key = tok.upper()
                if key not in _POS and key not in _ROT:
                    raise BvhError(f"{path}: line {line}: unknown channel {tok!r} in joint {name!r}")
                chans.append(_POS.get(key) or _ROT[key])
                i += 1
            joint.channels = tuple(chans)
        while i < len(tokens) and tokens[i][0] != "}":
            word = tokens[i][0].upper()
            if word == "JOINT":
                i += 1
                block(index)
            elif word == "END":
                i += 1
                expect("Site")
                expect("{")
                site = offset()
                expect("}")
                if joint.end_site is not None:
                    log.warning("%s: joint %r has more than one End Site; keeping the first", path, name)
                else:
                    joint.end_site = site
            else:
                raise BvhError(f"{path}: line {tokens[i][1]}: unexpected {tokens[i][0]!r} in joint {name!r}")
        expect("}")

    expect("HIERARCHY")
    expect("ROOT")
    block(-1)
    if i < len(tokens) and tokens[i][0].upper() == "ROOT":
        raise BvhError(
            f"{path}: line {tokens[i][1]}: more than one ROOT; only single-root files are supported"
        )
    return joints, i


def read_bvh(path: str | os.PathLike, unit_m: float = 0.01) -> Motion:
    """Read a BVH file into a :class:`Motion` (Z-up, metres; ``unit_m`` metres per file unit).

    Raises :class:`BvhError` (a ValueError) naming the file and line for malformed files.
    """
    path = Path(path)
    if not unit_m > 0:
        raise ValueError(f"unit_m must be positive, got {unit_m}")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: BVH file not found") from None
    parts = re.split(r"^\s*MOTION\s*$", text, maxsplit=1, flags=re.MULTILINE)
    if len(parts) != 2:
        raise BvhError(f"{path}: no MOTION section; is this a BVH file?")
    head, motion_text = parts
    joints, _ = _parse_hierarchy(_tokens(head), path)
    n_frames, frame_time, values = _parse_motion(motion_text, path)
    n_channels = sum(len(j.channels) for j in joints)
    if values.size < n_frames * n_channels:
        raise BvhError(
            f"{path}: the header says {n_frames} frames of {n_channels} channels ({n_frames * n_channels} "
            f"numbers) but the file has {values.size}; the file is truncated"
        )
    if values.size > n_frames * n_channels:
        log.warning(
            "%s: %d numbers after the last frame are ignored", path, values.size - n_frames * n_channels
        )
    data = values[: n_frames * n_channels].reshape(n_frames, n_channels)
    return _build_motion(joints, data, frame_time, unit_m, path)


def _parse_motion(text: str, path: Path) -> tuple[int, float, np.ndarray]:
    m_frames = re.search(r"Frames:\s*(\d+)", text)
    m_time = re.search(r"Frame\s+Time:\s*([-+0-9.eE]+)", text)
    if not m_frames or not m_time:
        raise BvhError(f"{path}: the MOTION section needs 'Frames:' and 'Frame Time:' lines")
    n_frames, frame_time = int(m_frames.group(1)), float(m_time.group(1))
    if not frame_time > 0:
        raise BvhError(f"{path}: Frame Time must be positive, got {frame_time}")
    body = text[max(m_frames.end(), m_time.end()) :]
    try:
        values = np.array(body.split(), dtype=float)
    except ValueError as e:
        raise BvhError(f"{path}: the frame data contains something that is not a number ({e})") from e
    return n_frames, frame_time, values


def _build_motion(
    joints: list[_Joint], data: np.ndarray, frame_time: float, unit_m: float, path: Path
) -> Motion:
    n_frames, n_joints = data.shape[0], len(joints)
    offsets = np.array([j.offset for j in joints]) * unit_m
    root_trans = np.broadcast_to(offsets[0], (n_frames, 3)).copy()
    local = np.empty((n_frames, n_joints, 3, 3))
    col = 0
    for index, joint in enumerate(joints):
        rot_axes = "".join(c[0] for c in joint.channels if c in _ROT.values())
        rot_cols = [col + k for k, c in enumerate(joint.channels) if c in _ROT.values()]
        pos_cols = {c[0]: col + k for k, c in enumerate(joint.channels) if c in _POS.values()}
        local[:, index] = euler_to_rotmat(np.radians(data[:, rot_cols]), rot_axes)
        if pos_cols:
            trans = np.broadcast_to(joint.offset * unit_m, (n_frames, 3)).copy()
            for axis, c in pos_cols.items():
                trans[:, "XYZ".index(axis)] = data[:, c] * unit_m
            if index == 0:
                root_trans = trans
            elif np.abs(trans - joint.offset * unit_m).max() > 1e-9:
                raise BvhError(
                    f"{path}: joint {joint.name!r} has animated position channels; only the root may move "
                    "(convert the file with the translations baked into the root)"
                )
        col += len(joint.channels)
    ends = np.array([np.full(3, np.nan) if j.end_site is None else j.end_site for j in joints]) * unit_m
    motion = Motion(
        joint_names=tuple(j.name for j in joints),
        parents=np.array([j.parent for j in joints]),
        rest_offsets_m=offsets,
        local_rotmat=local,
        root_translation_m=root_trans,
        frame_rate=1.0 / frame_time,
        end_sites_m=ends,
        bvh_channels=tuple(j.channels for j in joints),
        name=path.stem,
    )
    return motion.transformed(Y_UP_TO_Z_UP)


def _default_channels(joint: int, rotation_order: str) -> tuple[str, ...]:
    rot = tuple(f"{a}rotation" for a in rotation_order)
    return (("Xposition", "Yposition", "Zposition") + rot) if joint == 0 else rot


def _layout(motion: Motion, rotation_order: str | None) -> list[tuple[str, ...]]:
    """Channel names per joint: the motion's own layout when it can carry the motion, else the default."""
    order = (rotation_order or "ZXY").upper()
    if rotation_order is None and motion.bvh_channels is not None:
        layout = []
        for j, chans in enumerate(motion.bvh_channels):
            n_rot = sum(c.endswith("rotation") for c in chans)
            has_pos = any(c.endswith("position") for c in chans)
            fits = n_rot == 3 or (
                n_rot == 0 and np.allclose(motion.local_rotmat[:, j], np.eye(3), atol=1e-12)
            )
            if j == 0 and not has_pos:
                fits = fits and np.allclose(motion.root_translation_m, motion.rest_offsets_m[0], atol=1e-12)
            layout.append(chans if fits else _default_channels(j, order))
        return layout
    return [_default_channels(j, order) for j in range(motion.num_joints)]


def _depth_first(motion: Motion) -> list[int]:
    order: list[int] = []
    stack = [0]
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(reversed(motion.children(j)))
    return order


def _channel_values(motion: Motion, layout: list[tuple[str, ...]], unit_m: float) -> np.ndarray:
    """(T, C) channel values in file units and degrees, joints depth-first, for a motion in file axes."""
    cols = []
    for j in _depth_first(motion):
        chans = layout[j]
        rot_axes = "".join(c[0] for c in chans if c.endswith("rotation"))
        euler = (
            unwrap_degrees(np.degrees(rotmat_to_euler(motion.local_rotmat[:, j], rot_axes)))
            if len(rot_axes) == 3
            else np.zeros((motion.num_frames, 0))
        )
        k = 0
        for c in chans:
            if c.endswith("position"):
                cols.append(
                    motion.root_translation_m[:, "XYZ".index(c[0])] / unit_m
                    if j == 0
                    else np.full(motion.num_frames, motion.rest_offsets_m[j, "XYZ".index(c[0])] / unit_m)
                )
            else:
                cols.append(euler[:, k])
                k += 1
    return np.stack(cols, axis=1) if cols else np.zeros((motion.num_frames, 0))


def write_bvh(
    path: str | os.PathLike,
    motion: Motion,
    unit_m: float = 0.01,
    rotation_order: str | None = None,
    decimals: int = 6,
) -> Path:
    """Write ``motion`` as BVH (Y-up, ``unit_m`` metres per unit). The file appears complete or not at all.

    ``rotation_order`` (e.g. 'ZXY', 'XYZ') applies to every joint; None keeps a BVH-read motion's own
    channel layout and otherwise uses 'ZXY'.
    """
    if rotation_order is not None and (len(rotation_order) != 3 or set(rotation_order.upper()) != set("XYZ")):
        raise ValueError(f"rotation_order must be a permutation of 'XYZ', got {rotation_order!r}")
    if not unit_m > 0:
        raise ValueError(f"unit_m must be positive, got {unit_m}")
    motion.check_finite(f"{path}")
    local = motion.transformed(Z_UP_TO_Y_UP)
    layout = _layout(local, rotation_order)
    values = _channel_values(local, layout, unit_m)
    fmt = f"%.{decimals}f"
    lines = ["HIERARCHY"]
    kids: dict[int, list[int]] = {j: local.children(j) for j in range(local.num_joints)}

    def emit(j: int, depth: int) -> None:
        ind = "\t" * depth
        keyword = "ROOT" if j == 0 else "JOINT"
        lines.append(f"{ind}{keyword} {local.joint_names[j]}")
        lines.append(f"{ind}{{")
        off = local.rest_offsets_m[j] / unit_m
        lines.append(f"{ind}\tOFFSET " + " ".join(fmt % v for v in off))
        lines.append(f"{ind}\tCHANNELS {len(layout[j])}" + "".join(" " + c for c in layout[j]))
        for c in kids[j]:
            emit(c, depth + 1)
        end = None if local.end_sites_m is None else local.end_sites_m[j]
        if end is not None and np.all(np.isfinite(end)):
            site = end / unit_m
        elif not kids[j]:
            site = np.zeros(3)  # BVH readers expect a leaf to close with an End Site
        else:
            site = None
        if site is not None:
            lines.extend(
                [
                    f"{ind}\tEnd Site",
                    f"{ind}\t{{",
                    f"{ind}\t\tOFFSET " + " ".join(fmt % v for v in site),
                    f"{ind}\t}}",
                ]
            )
        lines.append(f"{ind}}}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {local.num_frames}", f"Frame Time: {1.0 / local.frame_rate:.9g}"]
    header = "\n".join(lines) + "\n"
    values = np.where(np.abs(values) < 0.5 * 10.0**-decimals, 0.0, values)  # no "-0.000000"
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(header)
        if values.size:
            np.savetxt(fh, values, fmt=fmt, delimiter=" ")
        else:
            fh.write("\n" * local.num_frames)
    log.debug("wrote %s (%d frames, %d joints)", path, local.num_frames, local.num_joints)
    return path
