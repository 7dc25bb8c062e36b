"""Several performers in one take: each with a seeded shape and clothes of its own, an exercise of its own, and
a path that crosses the others'.

Performer ``i`` of ``n`` moves back and forth along a line through the centre of the studio at
``i * 180 / n`` degrees (plus :data:`LINE_START_DEG`), ``amplitude_m`` either side, with a period of ``period_s``
and a phase of ``i * pi / n``: every line crosses every other at the centre, and the performers reach it one
after another (three performers: one every 0.83 s with the default period), never together; their body centres
stay at least ``amplitude_m * sin(pi / n)`` apart (0.87 m for three). The body moves over the floor with the
exercise performed on top (the feet glide along the line, as on a moving walkway), so every performer is always
doing something and always moving: the cameras see their views of the people cross and overlap again and again.

Performer 0 keeps the single-performer take's shape, clothes and motion; the others draw their shape from
``[seed, 90, i]``, wear :data:`PALETTES` and perform the exercises of :data:`MOTIONS` in turn.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from mocap_studio.studio.performer import Performance

PALETTES = (
    {},  # performer 0: the studio's own clothes (blue shirt)
    {"skin": (0.62, 0.45, 0.33), "hair": (0.10, 0.08, 0.06), "shirt": (0.20, 0.60, 0.22), "trousers": (0.55, 0.45, 0.30)},
    {"skin": (0.90, 0.72, 0.60), "hair": (0.60, 0.25, 0.10), "shirt": (0.85, 0.70, 0.10), "trousers": (0.12, 0.12, 0.12)},
    {"skin": (0.45, 0.30, 0.22), "hair": (0.05, 0.05, 0.05), "shirt": (0.60, 0.20, 0.65), "trousers": (0.30, 0.32, 0.35)},
    {"skin": (0.75, 0.58, 0.45), "hair": (0.85, 0.80, 0.70), "shirt": (0.90, 0.45, 0.15), "trousers": (0.15, 0.25, 0.20)},
)
"""Region colours per performer (missing regions keep the studio's own); performers past the list reuse it."""
MOTIONS = ("walk_on_the_spot", "lunge", "squat", "arm_circles", "jumping_jack")
"""Performers 1, 2, ... perform these in turn (performer 0 performs the take's own motions)."""
LINE_START_DEG = 30.0
"""Performer 0's line, degrees from +X (counter-clockwise seen from above)."""


def person_ids(count: int) -> tuple[str, ...]:
    """The performers' ids, ``p0`` .. ``p<count-1>`` (the truth's folder names)."""
    return tuple(f"p{i}" for i in range(count))


def crossing_offsets(times_s: np.ndarray, index: int, count: int, amplitude_m: float = 1.0,
                     period_s: float = 5.0) -> np.ndarray:
    """(T, 3) where performer ``index`` of ``count`` stands over the floor at common times ``times_s`` (T,),
    relative to the centre (Z 0). One performer stays at the centre."""
    t = np.asarray(times_s, float)
    if count <= 1:
        return np.zeros((len(t), 3))
    heading = np.radians(LINE_START_DEG) + np.pi * index / count
    along = amplitude_m * np.sin(2 * np.pi * t / period_s + np.pi * index / count)
    return np.stack([np.cos(heading) * along, np.sin(heading) * along, np.zeros_like(along)], -1)


def performer_motions(motions: tuple[str, ...], index: int) -> tuple[str, ...]:
    """The exercises performer ``index`` performs: the take's own for performer 0, :data:`MOTIONS` in turn for
    the others."""
    return tuple(motions) if index == 0 else (MOTIONS[(index - 1) % len(MOTIONS)],)


def on_path(perf: Performance, index: int, count: int, amplitude_m: float = 1.0, period_s: float = 5.0) -> Performance:
    """``perf`` carried along performer ``index``'s line (:func:`crossing_offsets`)."""
    return replace(perf, trans=perf.trans + crossing_offsets(perf.times_s, index, count, amplitude_m, period_s))


def min_separation_m(count: int, amplitude_m: float = 1.0, period_s: float = 5.0) -> float:
    """The least distance between two performers' centres over a period (inf for one performer)."""
    if count <= 1:
        return float("inf")
    t = np.linspace(0.0, period_s, 2001)
    paths = [crossing_offsets(t, i, count, amplitude_m, period_s)[:, :2] for i in range(count)]
    return float(min(np.linalg.norm(paths[i] - paths[j], axis=-1).min()
                     for i in range(count) for j in range(i + 1, count)))


__all__ = ["LINE_START_DEG", "MOTIONS", "PALETTES", "crossing_offsets", "min_separation_m", "on_path",
           "performer_motions", "person_ids"]
