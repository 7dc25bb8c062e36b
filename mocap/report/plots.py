"""The report's figures: matplotlib (Agg, no display) rendered to PNG bytes, embedded in the page.

Every function takes plain arrays with their shapes documented and returns PNG bytes; none reads files.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 80
COLOURS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _png(fig) -> bytes:  # noqa: ANN001 - a matplotlib Figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _figure(rows: int = 1, cols: int = 1, width: float = 11.0, height: float = 3.2, **kw):  # noqa: ANN202
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False, **kw)
    return fig, axes


def camera_layout(names: Sequence[str], centres_m: np.ndarray, forward: np.ndarray,
                  path_xy_m: np.ndarray | None = None) -> bytes:
    """Top view of the rig: camera centres (C, 3), viewing directions (C, 3), and the performer's path
    (T, 2) on the floor when known."""
    fig, axes = _figure(width=5.5, height=5.0)
    ax = axes[0, 0]
    centres_m, forward = np.asarray(centres_m, float), np.asarray(forward, float)
    for i, name in enumerate(names):
        c, f = centres_m[i], forward[i]
        ax.plot(c[0], c[1], "s", color=COLOURS[i % len(COLOURS)], ms=9)
        ax.annotate("", xy=(c[0] + 0.8 * f[0], c[1] + 0.8 * f[1]), xytext=(c[0], c[1]),
                    arrowprops={"arrowstyle": "->", "color": COLOURS[i % len(COLOURS)]})
        ax.text(c[0], c[1] + 0.15, name, ha="center", fontsize=9)
    if path_xy_m is not None and np.isfinite(path_xy_m).any():
        ax.plot(path_xy_m[:, 0], path_xy_m[:, 1], "-", color="k", lw=1, label="performer (hips)")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title("camera layout, seen from above")
    ax.grid(alpha=0.3)
    return _png(fig)


def sync_offsets(names: Sequence[str], offsets_s: Sequence[float], confidence: Sequence[float]) -> bytes:
    """Bars of each camera's offset (ms), coloured by the confidence of the estimate (0..1)."""
    fig, axes = _figure(1, 2, width=11.0, height=3.0)
    conf = np.nan_to_num(np.asarray(confidence, float), nan=0.0)
    colours = plt.cm.RdYlGn(np.clip(conf, 0, 1))
    axes[0, 0].bar(names, 1000 * np.asarray(offsets_s, float), color=colours)
    axes[0, 0].set_ylabel("offset (ms)")
    axes[0, 0].set_title("time offset (common = camera + offset)")
    axes[0, 1].bar(names, conf, color=colours)
    axes[0, 1].set_ylim(0, 1.05)
    axes[0, 1].set_title("confidence")
    for ax in axes[0]:
        ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def per_camera_over_time(times_s: np.ndarray, values: np.ndarray, names: Sequence[str], ylabel: str, title: str,
                         ylim: tuple[float, float] | None = None) -> bytes:
    """One line per camera: values (C, T) at times (T,) or a list of (T_c,) times per camera."""
    fig, axes = _figure(height=3.0)
    ax = axes[0, 0]
    for c, name in enumerate(names):
        t = times_s[c] if isinstance(times_s, list | tuple) else times_s
        ax.plot(t, values[c], lw=1.2, label=name, color=COLOURS[c % len(COLOURS)])
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=min(len(names), 8), loc="lower left")
    return _png(fig)


def heatmap(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str, unit: str) -> bytes:
    """A (R, K) matrix with row and column names; NaN cells grey, values written in small cells."""
    matrix = np.asarray(matrix, float)
    fig, axes = _figure(width=min(2 + 0.42 * len(cols), 16), height=0.9 + 0.35 * len(rows))
    ax = axes[0, 0]
    cmap = plt.cm.viridis.copy()
    cmap.set_bad("#cccccc")
    vmax = np.nanpercentile(matrix, 98) if np.isfinite(matrix).any() else 1.0
    im = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, aspect="auto", vmin=0, vmax=max(vmax, 1e-6))
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=unit, fraction=0.03)
    return _png(fig)


def bars(labels: Sequence[str], values: Sequence[float], ylabel: str, title: str, horizontal_line: float | None = None) -> bytes:
    """A bar per label."""
    fig, axes = _figure(width=max(4.0, min(0.45 * len(labels) + 2, 16)), height=3.0)
    ax = axes[0, 0]
    ax.bar(labels, np.nan_to_num(np.asarray(values, float)), color=COLOURS[0])
    if horizontal_line is not None:
        ax.axhline(horizontal_line, color="r", lw=1, ls="--")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=60, labelsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def lines(times_s: np.ndarray, series: Mapping[str, np.ndarray], ylabel: str, title: str,
          bands: Sequence[tuple[float, float]] = ()) -> bytes:
    """Named series, each (T,) at times (T,); optional shaded time bands [(start, end)]."""
    fig, axes = _figure(height=3.0)
    ax = axes[0, 0]
    for a, b in bands:
        ax.axvspan(a, b, color="#f4d9a6", alpha=0.6, lw=0)
    for i, (name, y) in enumerate(series.items()):
        ax.plot(times_s, y, lw=1.2, label=name, color=COLOURS[i % len(COLOURS)])
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8, ncol=4, loc="upper left")
    return _png(fig)


def trajectories(times_s: np.ndarray, series: Mapping[str, np.ndarray]) -> bytes:
    """x, y, z over time of named joints, each (T, 3) metres, one panel per axis."""
    fig, axes = _figure(3, 1, height=2.3, sharex=True)
    for k, axis in enumerate("xyz"):
        ax = axes[k, 0]
        for i, (name, xyz) in enumerate(series.items()):
            ax.plot(times_s, xyz[:, k], lw=1.1, label=name, color=COLOURS[i % len(COLOURS)])
        ax.set_ylabel(f"{axis} (m)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=len(series), loc="upper left")
    axes[0, 0].set_title("joint trajectories (world, Z up)")
    axes[-1, 0].set_xlabel("time (s)")
    return _png(fig)


def angle_panels(times_s: np.ndarray, groups: Mapping[str, Mapping[str, np.ndarray]],
                 bands: Mapping[str, Sequence[tuple[float, float]]] | None = None) -> bytes:
    """One panel per group (name -> {angle name: (T,) degrees}); ``bands`` shades counted repetitions."""
    fig, axes = _figure(len(groups), 1, height=2.2, sharex=True)
    for r, (group, series) in enumerate(groups.items()):
        ax = axes[r, 0]
        for a, b in (bands or {}).get(group, ()):
            ax.axvspan(a, b, color="#f4d9a6", alpha=0.6, lw=0)
        for i, (name, y) in enumerate(series.items()):
            ax.plot(times_s, y, lw=1.1, label=name.replace("_", " "), color=COLOURS[i % len(COLOURS)])
        ax.set_ylabel(f"{group} (deg)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=4, loc="upper left")
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].set_title("joint angles (shaded: counted repetitions)")
    return _png(fig)


def repetition_signal(times_s: np.ndarray, signal: np.ndarray, enter: float, exit_: float,
                      intervals: np.ndarray, title: str) -> bytes:
    """A counting signal (T,) with its thresholds and the counted repetitions (N, 3) shaded and numbered."""
    fig, axes = _figure(height=2.4)
    ax = axes[0, 0]
    for n, (a, peak, b) in enumerate(np.asarray(intervals).reshape(-1, 3), start=1):
        ax.axvspan(a, b, color="#f4d9a6", alpha=0.7, lw=0)
        ax.text(peak, enter, str(n), ha="center", va="bottom", fontsize=9, weight="bold")
    ax.plot(times_s, signal, lw=1.3, color=COLOURS[0])
    ax.axhline(enter, color="g", ls="--", lw=1, label=f"start above {enter:g}")
    ax.axhline(exit_, color="r", ls="--", lw=1, label=f"done below {exit_:g}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("deg")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    return _png(fig)


def silhouettes(vertices_m: np.ndarray) -> bytes:
    """Front and side views of a rest mesh's vertices (V, 3) metres, Z up."""
    v = np.asarray(vertices_m, float)
    fig, axes = _figure(1, 2, width=6.0, height=5.0)
    step = max(1, len(v) // 6000)
    for ax, (k, label) in zip(axes[0], ((0, "front (x)"), (1, "side (y)")), strict=True):
        ax.scatter(v[::step, k], v[::step, 2], s=0.3, color=COLOURS[1])
        ax.set_aspect("equal")
        ax.set_xlabel(f"{label} (m)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("z (m)")
    axes[0, 0].set_title("fitted body at rest")
    return _png(fig)


def measurement_errorbars(names: Sequence[str], values_cm: Sequence[float], sigma_mm: Sequence[float],
                          trustworthy: Sequence[bool], limit_mm: Sequence[float]) -> bytes:
    """Each measurement (M,) with its one-sigma error bar (left, cm) and its sigma against the limit under which it
    is trustworthy (right, mm); the untrustworthy ones in red. NaN sigma: no bar."""
    n = len(names)
    y = np.arange(n)[::-1]
    v, s = np.asarray(values_cm, float), np.asarray(sigma_mm, float)
    ok = np.asarray(trustworthy, bool)
    colour = np.where(ok, COLOURS[2], "#c0392b")
    fig, axes = _figure(1, 2, width=10.0, height=0.35 * n + 1.2, gridspec_kw={"width_ratios": [3, 2]})
    left, right = axes[0]
    for i in range(n):
        left.errorbar(v[i], y[i], xerr=None if not np.isfinite(s[i]) else s[i] / 10, fmt="o", color=colour[i], capsize=4)
    left.set_yticks(y, [nm.replace("_", " ") for nm in names])
    left.set_xlabel("value +- one sigma (cm)")
    left.grid(alpha=0.3)
    right.barh(y, np.nan_to_num(s), color=colour)
    right.scatter(np.asarray(limit_mm, float), y, marker="|", s=200, color="black", label="trust limit")
    right.set_yticks(y, [""] * n)
    right.set_xscale("log")
    right.set_xlabel("one sigma (mm, log)")
    right.legend(loc="lower right", fontsize=8)
    right.grid(alpha=0.3)
    left.set_title("measurements at rest (red: not trustworthy)")
    return _png(fig)


def image_png(image_bgr: np.ndarray) -> bytes:
    """A BGR image (H, W, 3) uint8 as PNG bytes."""
    import cv2

    ok, buf = cv2.imencode(".png", image_bgr)
    if not ok:
        raise RuntimeError("could not encode an overlay frame as PNG")
    return buf.tobytes()


def image_jpeg(image_bgr: np.ndarray, quality: int = 85) -> bytes:
    """A BGR image (H, W, 3) uint8 as JPEG bytes (video frames are far smaller this way)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("could not encode an overlay frame as JPEG")
    return buf.tobytes()
