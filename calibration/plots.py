"""Pictures of a calibration for the take's report: board coverage per camera, reprojection residuals
per camera, and the rig seen from above and from the side. Each function writes one PNG atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mocap_studio.calibration.camera import CameraRig  # noqa: E402
from mocap_studio.calibration.intrinsics import coverage_grid  # noqa: E402
from mocap_studio.calibration.observations import BoardObservations  # noqa: E402
from mocap_studio.common.fileio import write_with  # noqa: E402


def _save(fig, path: Path) -> Path:
    def writer(tmp: Path) -> None:
        fig.savefig(tmp, format="png")

    out = write_with(path, writer)
    plt.close(fig)
    return out


def coverage_picture(obs: BoardObservations, c: int, path: Path, grid: tuple[int, int] = (8, 6),
                     title: str = "") -> Path:
    """Where the board's corners fell in camera ``c``'s image, over the coverage grid."""
    w, h = obs.image_sizes[c]
    uv = obs.uv[obs.camera_rows(c)]
    cells = coverage_grid(uv, (w, h), grid)
    fig, ax = plt.subplots(figsize=(6, 6 * h / w + 0.6), dpi=100)
    ax.imshow(cells > 0, extent=(0, w, h, 0), cmap="Greens", alpha=0.35, vmin=0, vmax=1.5)
    ax.scatter(uv[:, 0], uv[:, 1], s=1, c="tab:blue")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_title(title or f"{obs.camera_names[c]}: board corners ({float(np.mean(cells > 0)):.0%} of the image)")
    fig.tight_layout()
    return _save(fig, path)


def residuals_picture(obs: BoardObservations, residuals_px: np.ndarray, inliers: np.ndarray, path: Path) -> Path:
    """Distribution of reprojection errors per camera (box plot; outliers rejected by the solver in red)."""
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * obs.n_cameras + 2), 4), dpi=100)
    data = [residuals_px[(obs.cam == c) & inliers] for c in range(obs.n_cameras)]
    ax.boxplot(data, showfliers=False)
    for c in range(obs.n_cameras):
        bad = residuals_px[(obs.cam == c) & ~inliers]
        ax.scatter(np.full(len(bad), c + 1), bad, s=6, c="tab:red")
    ax.set_xticks(range(1, obs.n_cameras + 1), obs.camera_names, rotation=45, ha="right")
    ax.set_ylabel("reprojection error (px)")
    ax.set_yscale("log")
    ax.set_title("Board corner reprojection error per camera (red: rejected)")
    fig.tight_layout()
    return _save(fig, path)


def rig_picture(rig: CameraRig, board_poses: np.ndarray, path: Path, board_extent_m: tuple[float, float]) -> Path:
    """The cameras (position and viewing direction) and the board's path, from above and from the side."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), dpi=100)
    centres = rig.centers
    forward = np.stack([c.R[2] for c in rig])
    board_centres = board_poses[:, :3, 3] + board_poses[:, :3, :2] @ (np.array(board_extent_m) / 2)
    span = max(1.0, float(np.ptp(centres, axis=0).max()))
    for ax, (i, j, labels) in zip(axes, [(0, 1, ("X (m)", "Y (m)")), (0, 2, ("X (m)", "Z (m)"))], strict=True):
        ax.scatter(board_centres[:, i], board_centres[:, j], s=4, c="0.6", label="board")
        ax.scatter(centres[:, i], centres[:, j], s=30, c="tab:blue", label="cameras")
        ax.quiver(centres[:, i], centres[:, j], forward[:, i], forward[:, j], color="tab:blue", angles="xy",
                  scale_units="xy", scale=2.0 / (0.15 * span), width=0.004)
        for name, c in zip(rig.names, centres, strict=True):
            ax.annotate(name, (c[i], c[j]), fontsize=8, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    axes[0].set_title("from above")
    axes[1].set_title("from the side (floor at Z = 0)")
    axes[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
