"""Camera synchronization on plain arrays: audio onsets, a flash, 2D keypoint motion, recorded timestamps.

Convention: every camera has its own clock (its video's frame times). A camera's ``offset_s`` maps it onto
the common timeline::

    common_time = camera_time + offset_s

so an event at common time ``g`` appears in camera ``c`` at ``g - offset_s[c]``. Offsets are relative to a
reference camera (offset 0), the first one given unless chosen.

Each estimator takes one signal per camera (their own sampling, their own length), finds the lag of each
camera against the reference by cross-correlation over a search window (``max_offset_s``), and refines the
lag below one sample (parabolic interpolation of the correlation peak, or a continuous shift search on
interpolated curves for keypoint speed). :func:`resample_series` then puts per-camera keypoint series on one
timeline (linear interpolation, NaN in gaps), so cameras at different rates triangulate together.

This module imports no other stage: keypoints come in as arrays, audio and brightness are read with PyAV.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from mocap_studio.capture.frames import FrameSourceError, open_frames
from mocap_studio.common.fileio import write_json_atomic
from scipy import interpolate, optimize

log = logging.getLogger(__name__)

METHODS = ("audio", "flash", "keypoints", "timestamps")
SYNC_FILE_VERSION = 1


class SyncError(ValueError):
    """A camera that cannot be synchronized: the message names the camera and what to do."""


@dataclass(frozen=True)
class SyncConfig:
    """The ``[sync]`` table of session.toml."""

    methods: tuple[str, ...] = ("audio", "keypoints")
    """Methods to try, in order of preference; a camera takes the first that works for every camera."""
    max_offset_s: float = 1.0
    """Search window: the largest offset (seconds, either sign) between a camera and the reference."""
    reference: str = ""
    """The camera whose clock is the common timeline (offset 0); empty means the first camera."""
    audio_rate_hz: int = 16000
    """Audio is resampled to this rate (mono) before computing onset envelopes."""
    envelope_rate_hz: int = 4000
    """Rate of the onset envelope that is cross-correlated (its sample is the coarse resolution)."""
    min_overlap_s: float = 2.0
    """Shortest stretch both signals must share to be correlated."""
    min_confidence: float = 0.3
    """Below this normalized correlation peak a camera's offset is reported with a warning."""
    keypoint_smoothing_frames: float = 1.5
    """Gaussian smoothing (sigma, in frames of each camera) of keypoint positions before taking speed."""
    min_keypoint_confidence: float = 0.3
    """Keypoints with a lower detector confidence count as missing when computing speed."""

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods {list(self.methods)}: each must be one of {list(METHODS)}")
        if self.max_offset_s <= 0:
            raise ValueError(f"max_offset_s must be > 0, got {self.max_offset_s}")


@dataclass(frozen=True)
class CameraOffset:
    """One camera's estimated offset: ``common_time = camera_time + offset_s``."""

    camera: str
    offset_s: float
    confidence: float
    """Normalized correlation at the peak (1 for the reference and for recorded timestamps)."""
    method: str


# ------------------------------------------------------------------------------------------------
# Lag estimation shared by every signal
# ------------------------------------------------------------------------------------------------
def _parabolic(y_minus: float, y0: float, y_plus: float) -> float:
    """Sub-sample position (-0.5..0.5) of the vertex of the parabola through three samples."""
    denom = y_minus - 2.0 * y0 + y_plus
    if denom >= 0 or not np.isfinite(denom):
        return 0.0
    return float(np.clip(0.5 * (y_minus - y_plus) / denom, -0.5, 0.5))


def _normalized_xcorr(ref: np.ndarray, sig: np.ndarray, max_lag: int, min_overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """NCC(lag) for lags -max_lag..max_lag, where sig[n] ~ ref[n + lag]; NaN where the overlap is too short.

    Each lag's correlation is normalized by the energies of the overlapping parts, so partial overlaps at
    the ends of the window are not favoured.
    """
    a = np.nan_to_num(ref - np.nanmean(ref))
    b = np.nan_to_num(sig - np.nanmean(sig))
    n = len(a) + len(b) - 1
    size = 1 << (n - 1).bit_length()
    fa, fb = np.fft.rfft(a, size), np.fft.rfft(b, size)
    full = np.fft.irfft(fa * np.conj(fb), size)  # full[k] = sum a[m + k] b[m]
    ea = np.concatenate([[0.0], np.cumsum(a * a)])
    eb = np.concatenate([[0.0], np.cumsum(b * b)])
    lags = np.arange(-max_lag, max_lag + 1)
    # overlap for each lag k: m in [max(0, -k), min(len(b), len(a) - k))
    lo = np.maximum(0, -lags)
    hi = np.minimum(len(b), len(a) - lags)
    ok = hi - lo >= min_overlap
    lo, hi = np.where(ok, lo, 0), np.where(ok, hi, 0)
    den = np.sqrt(np.maximum(ea[hi + lags * ok] - ea[lo + lags * ok], 0) * (eb[hi] - eb[lo]))
    num = full[lags % size]
    with np.errstate(all="ignore"):
        out = np.where(ok & (den > 0), num / np.where(den > 0, den, 1.0), np.nan)
    return lags, out


@dataclass(frozen=True)
class _PairLag:
    lag: float
    """Sub-sample lag in samples: ``sig[n] ~ ref[n + lag]``."""
    peak: float
    """NCC at the lag."""
    outside_lag: float
    """Best lag beyond the search window (NaN if none was searched)."""
    outside_peak: float


def _find_lag(ref: np.ndarray, sig: np.ndarray, window: int, min_overlap: int) -> _PairLag | None:
    """Lag of ``sig`` against ``ref`` within ``|lag| <= window`` (parabolic sub-sample peak), and the best
    match beyond the window (searched where the signals share at least half the shorter one), so that an
    offset larger than the window is recognized rather than mistaken for a weak match. None if too short.
    """
    lags, ncc = _normalized_xcorr(ref, sig, window, min_overlap)
    if not np.isfinite(ncc).any():
        return None
    best = int(np.nanargmax(ncc))
    frac = 0.0
    if 0 < best < len(lags) - 1 and np.isfinite(ncc[best - 1 : best + 2]).all():
        frac = _parabolic(ncc[best - 1], ncc[best], ncc[best + 1])
    out_lag, out_peak = math.nan, math.nan
    wide_overlap = max(min_overlap, min(len(ref), len(sig)) // 2)
    wide = max(len(ref), len(sig)) - wide_overlap
    if wide > window:
        wlags, wncc = _normalized_xcorr(ref, sig, wide, wide_overlap)
        wncc = np.where(np.abs(wlags) > window, wncc, np.nan)
        if np.isfinite(wncc).any():
            k = int(np.nanargmax(wncc))
            out_lag, out_peak = float(wlags[k]), float(wncc[k])
    return _PairLag(float(lags[best] + frac), float(ncc[best]), out_lag, out_peak)


def _consensus(
    names: Sequence[str], ref: str, pairs: Mapping[tuple[int, int], tuple[float, float]], tolerance_s: float,
    min_confidence: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (C,) from pairwise differences ``pairs[(i, j)] = (o_j - o_i, confidence)``, reference 0.

    Weighted least squares over every pair (weight confidence squared), then again without the pairs that
    disagree with the solution by more than ``tolerance_s``. A camera that correlates poorly with the
    reference still lands right through the cameras it does correlate with. Returns (offsets, confidence):
    a camera's confidence is its best pair's among those kept.
    """
    C = len(names)
    r = list(names).index(ref)
    keep = {k: v for k, v in pairs.items() if v[1] >= min_confidence} or dict(pairs)
    offsets = np.zeros(C)
    for _ in range(2):
        rows, rhs, w = [], [], []
        for (i, j), (d, conf) in keep.items():
            row = np.zeros(C)
            row[j], row[i] = 1.0, -1.0
            rows.append(row)
            rhs.append(d)
            w.append(max(conf, 1e-3) ** 2)
        A = np.array(rows)[:, [k for k in range(C) if k != r]]
        sw = np.sqrt(np.array(w))[:, None]
        sol = np.linalg.lstsq(A * sw, np.array(rhs) * sw[:, 0], rcond=None)[0]
        offsets = np.insert(sol, r, 0.0)
        agree = {k: v for k, v in keep.items() if abs(offsets[k[1]] - offsets[k[0]] - v[0]) <= tolerance_s}
        if len(agree) == len(keep) or not agree:
            break
        keep = agree
    confidence = np.zeros(C)
    confidence[r] = 1.0
    for (i, j), (_, conf) in keep.items():
        confidence[i] = max(confidence[i], conf) if i != r else 1.0
        confidence[j] = max(confidence[j], conf) if j != r else 1.0
    return offsets, confidence


def _pairwise_offsets(
    names: Sequence[str], signals: Sequence[tuple[float, np.ndarray]], rate: float, config: SyncConfig,
    what: str, refine=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (C,) and confidences (C,) from signals sampled at ``rate`` (start time s, values (N,)).

    ``refine(i, j, coarse_s) -> (offset_s, ncc)`` optionally improves each pair's sub-sample estimate.
    SyncError naming the camera when a camera matches nothing inside the window but something beyond it,
    or when its signal is too short.
    """
    ref = _reference(names, config)
    window = int(math.ceil(config.max_offset_s * rate))
    min_overlap = int(config.min_overlap_s * rate)
    pairs: dict[tuple[int, int], tuple[float, float]] = {}
    beyond: dict[int, tuple[float, float]] = {}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            found = _find_lag(signals[i][1], signals[j][1], window, min_overlap)
            if found is None:
                continue
            coarse = found.lag / rate + signals[i][0] - signals[j][0]
            d, conf = refine(i, j, coarse) if refine else (coarse, found.peak)
            pairs[(i, j)] = (d, max(conf, found.peak) if refine else conf)
            if found.outside_peak > max(1.3 * found.peak, found.peak + 0.2):
                for k in (i, j):
                    beyond[k] = (found.outside_lag / rate, found.outside_peak)
    r = list(names).index(ref)
    for k, name in enumerate(names):
        mine = [v[1] for p, v in pairs.items() if k in p]
        if k != r and not mine:
            raise SyncError(f"camera {name}: the {what} is too short to correlate with the other cameras")
        if k != r and max(mine) < config.min_confidence and k in beyond:
            lag_s = beyond[k][0]
            raise SyncError(
                f"camera {name}: the {what} matches best about {abs(lag_s):.2f} s away, beyond the search "
                f"window of +-{config.max_offset_s} s; raise [sync] max_offset_s (e.g. to "
                f"{math.ceil(abs(lag_s) + 0.5)}) and run again"
            )
    return _consensus(names, ref, pairs, 2.0 / rate, config.min_confidence)


def _check_offset(camera: str, offset_s: float, confidence: float, config: SyncConfig, method: str) -> CameraOffset:
    if confidence < config.min_confidence:
        log.warning(
            "camera %s: weak %s match (correlation %.2f); check the offset, or use another method",
            camera, method, confidence,
        )
    return CameraOffset(camera, float(offset_s), float(confidence), method)


def _reference(names: Sequence[str], config: SyncConfig) -> str:
    if not names:
        raise SyncError("no cameras to synchronize")
    if config.reference and config.reference not in names:
        raise SyncError(f"reference camera {config.reference!r} is not among the cameras {list(names)}")
    return config.reference or names[0]


# ------------------------------------------------------------------------------------------------
# (a) audio
# ------------------------------------------------------------------------------------------------
def read_audio(path: str | Path, rate_hz: int = 16000, camera: str = "") -> tuple[np.ndarray, float]:
    """Read the first audio track of a video or audio file as mono float32 at ``rate_hz``.

    Returns (samples (N,), start_s): start_s is the first audio sample's time on the file's clock (the
    video's frame times use the same clock). SyncError naming the camera if the file has no audio.
    """
    path = Path(path)
    who = f"camera {camera} ({path})" if camera else str(path)
    if not path.exists():
        raise FileNotFoundError(f"{who}: no such file; record it again or remove the camera")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise SyncError(f"{who}: cannot open ({type(e).__name__}: {e}); the file may be damaged: copy it again") from e
    try:
        if not container.streams.audio:
            raise SyncError(
                f"{who}: no audio track; record with sound, put a WAV recorded by this camera beside the video "
                "(videos/<camera>.wav), or synchronize with another method ([sync] methods = ['keypoints'])"
            )
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate_hz)
        chunks: list[np.ndarray] = []
        start_s = math.nan
        for frame in container.decode(stream):
            if math.isnan(start_s) and frame.pts is not None and frame.time_base is not None:
                start_s = float(frame.pts * frame.time_base)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as e:
        raise SyncError(f"{who}: decoding the audio failed ({e}); the file is damaged: copy it again") from e
    finally:
        container.close()
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise SyncError(f"{who}: the audio track is empty; record with sound or use another method")
    return samples, (0.0 if math.isnan(start_s) else start_s)


def onset_envelope(samples: np.ndarray, rate_hz: float, envelope_rate_hz: float = 4000) -> np.ndarray:
    """Onset strength of mono audio (N,) -> (M,) at ``envelope_rate_hz``: the rise of the log energy.

    Claps, slates and footfalls are sharp rises in energy; the rise (not the level) is what is shared by
    microphones at different distances and gains.
    """
    x = np.asarray(samples, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"samples must have shape (N,), got {x.shape}")
    hop = max(1, int(round(rate_hz / envelope_rate_hz)))
    # energy in short windows (about 2 ms), then log compresses the gain difference between microphones
    win = max(hop, int(round(rate_hz * 0.002)))
    energy = np.convolve(x * x, np.ones(win) / win, mode="same")[::hop]
    level = np.log(energy + 1e-8 * (energy.max() + 1e-12))
    rise = np.maximum(np.diff(level, prepend=level[:1]), 0.0)
    return rise


def audio_offsets(
    audio: Mapping[str, tuple[np.ndarray, float]], rate_hz: float, config: SyncConfig | None = None
) -> dict[str, CameraOffset]:
    """Offsets from audio. ``audio``: camera -> (samples (N,), start_s) at ``rate_hz``, in camera order.

    Cross-correlates onset envelopes, with parabolic interpolation of the peak (sub-sample precision).
    """
    config = config or SyncConfig()
    names = list(audio)
    env_rate = float(config.envelope_rate_hz)
    hop = max(1, int(round(rate_hz / env_rate)))
    env_rate = rate_hz / hop
    for c, (samples, _) in audio.items():
        _check_length(c, len(samples) / rate_hz, config, "audio")
    signals = [(audio[c][1], onset_envelope(audio[c][0], rate_hz, env_rate)) for c in names]
    offsets, conf = _pairwise_offsets(names, signals, env_rate, config, "audio")
    return {c: _check_offset(c, offsets[k], conf[k], config, "audio") for k, c in enumerate(names)}


def _check_length(camera: str, duration_s: float, config: SyncConfig, what: str) -> None:
    if duration_s < config.min_overlap_s + 0.1:
        raise SyncError(
            f"camera {camera}: the {what} lasts {duration_s:.2f} s, too short to correlate (needs more than "
            f"min_overlap_s = {config.min_overlap_s} s of shared signal); record a longer take with a few "
            "claps or movements, or lower [sync] min_overlap_s"
        )


# ------------------------------------------------------------------------------------------------
# (b) flash / brightness step
# ------------------------------------------------------------------------------------------------
def brightness_curve(path: str | Path, camera: str = "", max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean brightness per frame of a video or image folder, streamed: (times (T,), brightness (T,))."""
    times, values = [], []
    try:
        for frame in open_frames(path, max_frames=max_frames):
            small = frame.image[::4, ::4]
            times.append(frame.time_s)
            values.append(float(small.mean()))
    except FrameSourceError as e:
        raise SyncError(f"camera {camera}: {e}") from e
    return np.asarray(times, float), np.asarray(values, float)


def flash_time(times: np.ndarray, brightness: np.ndarray, camera: str = "") -> tuple[float, float]:
    """Time (s, camera clock) of the largest brightness step, sub-frame, and a confidence in [0, 1].

    times, brightness: (T,), a frame's time being the start of its exposure. A flash that starts during a
    frame's exposure brightens that frame partly; the fraction lit (brightness between the levels before
    and after the step) places the flash within the frame, assuming the exposure spans the frame interval
    (a shorter shutter shifts every camera alike at one frame rate).
    """
    t = np.asarray(times, float)
    b = np.asarray(brightness, float)
    if t.ndim != 1 or t.shape != b.shape:
        raise ValueError(f"times and brightness must both have shape (T,), got {t.shape} and {b.shape}")
    if len(b) < 6:
        raise SyncError(f"camera {camera}: {len(b)} frames, too few to find a flash; record a longer take")
    d = np.diff(b)
    k = int(np.argmax(np.abs(d)))
    sign = np.sign(d[k])
    # the step may spread over two frames (partial exposure): walk outwards while it keeps rising
    lo, hi = k, k + 1
    while lo > 0 and sign * (b[lo] - b[lo - 1]) > 0.2 * abs(d[k]):
        lo -= 1
    while hi < len(b) - 1 and sign * (b[hi + 1] - b[hi]) > 0.2 * abs(d[k]):
        hi += 1
    before = float(np.median(b[max(0, lo - 5) : lo + 1]))
    after = float(np.median(b[hi : hi + 6]))
    # the fraction of each frame's exposure after the flash; with exposures spanning the frame interval
    # (frame time = start of exposure) they sum to (t_hi + interval - flash) / interval
    lit = np.clip((b[lo : hi + 1] - before) / (after - before), 0.0, 1.0)
    interval = float(np.median(np.diff(t[max(0, lo - 3) : hi + 4])))
    step_time = float(t[hi] + interval - interval * lit.sum())
    noise = float(np.median(np.abs(np.diff(np.delete(d, k))))) + 1e-9
    confidence = float(1.0 - math.exp(-abs(after - before) / (10.0 * noise)))
    return step_time, confidence


def flash_offsets(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], config: SyncConfig | None = None
) -> dict[str, CameraOffset]:
    """Offsets from a flash seen by every camera. curves: camera -> (times (T,), brightness (T,))."""
    config = config or SyncConfig()
    names = list(curves)
    ref = _reference(names, config)
    events = {c: flash_time(t, b, c) for c, (t, b) in curves.items()}
    out = {}
    for c in names:
        offset = events[ref][0] - events[c][0]  # common = camera + offset, the flash is one common instant
        if abs(offset) > config.max_offset_s:
            raise SyncError(
                f"camera {c}: the flash is {offset:+.2f} s from the reference's, beyond the search window of "
                f"+-{config.max_offset_s} s; raise [sync] max_offset_s or check that both saw the same flash"
            )
        conf = 1.0 if c == ref else min(events[c][1], events[ref][1])
        out[c] = _check_offset(c, offset, conf, config, "flash")
    return out


# ------------------------------------------------------------------------------------------------
# (c) 2D keypoint motion
# ------------------------------------------------------------------------------------------------
def _check_series(xy: np.ndarray, times: np.ndarray, camera: str) -> tuple[np.ndarray, np.ndarray]:
    xy = np.asarray(xy, float)
    times = np.asarray(times, float)
    if xy.ndim != 3 or xy.shape[-1] != 2:
        raise ValueError(f"camera {camera}: keypoints must have shape (T, J, 2), got {xy.shape}")
    if times.shape != xy.shape[:1]:
        raise ValueError(f"camera {camera}: times must have shape ({xy.shape[0]},), got {times.shape}")
    if xy.shape[0] > 1 and not (np.diff(times) > 0).all():
        raise ValueError(f"camera {camera}: frame times must increase")
    return xy, times


def keypoint_speed(xy: np.ndarray, times: np.ndarray, smoothing_frames: float = 1.5) -> np.ndarray:
    """Per-frame speed curve of one camera's keypoints: xy (T, J, 2) px, times (T,) s -> (T,): the mean
    over visible joints of :func:`joint_speeds` (NaN where no joint is visible)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(joint_speeds(xy, times, smoothing_frames), axis=1)


def joint_speeds(xy: np.ndarray, times: np.ndarray, smoothing_frames: float = 1.5) -> np.ndarray:
    """Image speed of each joint: xy (T, J, 2) px, times (T,) s -> (T, J), NaN where not seen.

    Each track is smoothed (Gaussian, ``smoothing_frames`` sigma, ignoring missing points), differentiated
    against the frame times (so any rate works), and divided by its median speed, so every joint weighs
    alike whatever its distance to the camera.
    """
    xy, times = _check_series(xy, times, "?")
    T = xy.shape[0]
    if T < 3:
        return np.full(xy.shape[:2], np.nan)
    from scipy.ndimage import gaussian_filter1d

    valid = np.isfinite(xy).all(-1)  # (T, J)
    filled = np.where(valid[..., None], xy, 0.0)
    w = valid.astype(float)
    if smoothing_frames > 0:
        # normalized convolution: smoothing that ignores missing points instead of pulling towards zero
        num = gaussian_filter1d(filled, smoothing_frames, axis=0, mode="nearest")
        den = gaussian_filter1d(w, smoothing_frames, axis=0, mode="nearest")[..., None]
        smooth = np.where(den > 0.5, num / np.maximum(den, 1e-9), np.nan)
    else:
        smooth = np.where(valid[..., None], xy, np.nan)
    vel = np.gradient(smooth, times, axis=0)  # (T, J, 2)
    speed = np.linalg.norm(vel, axis=-1)  # (T, J)
    with np.errstate(all="ignore"):
        scale = np.nanmedian(speed, axis=0)
        return speed / np.where(scale > 0, scale, np.nan)


def _shift_score(ref_t: np.ndarray, ref_v: np.ndarray, spline, t_lo: float, t_hi: float, shift: float) -> float:
    """Minus the mean over joints of the NCC between the reference's joint speeds (N, J) and the camera's
    (a spline over time) moved by ``shift`` seconds."""
    t = ref_t - shift
    inside = (t >= t_lo) & (t <= t_hi)
    if inside.sum() < 8:
        return 0.0
    a = ref_v[inside]
    b = spline(t[inside])
    ok = np.isfinite(a) & np.isfinite(b)
    n = ok.sum(0)
    a = np.where(ok, a, 0.0)
    b = np.where(ok, b, 0.0)
    a = np.where(ok, a - a.sum(0) / np.maximum(n, 1), 0.0)
    b = np.where(ok, b - b.sum(0) / np.maximum(n, 1), 0.0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    use = (n >= 8) & (den > 0)
    if not use.any():
        return 0.0
    return -float(np.mean((a * b).sum(0)[use] / den[use]))


def keypoint_offsets(
    xy: Mapping[str, np.ndarray],
    times: Mapping[str, np.ndarray],
    confidence: Mapping[str, np.ndarray] | None = None,
    config: SyncConfig | None = None,
) -> dict[str, CameraOffset]:
    """Offsets from the motion of 2D keypoints. Per camera (own rate and length allowed):
    xy[camera] (T_c, J, 2) px with NaN where not seen, times[camera] (T_c,) s on the camera's clock,
    confidence[camera] (T_c, J) optional.

    Speed curves are cross-correlated on a grid at the fastest camera's frame interval (coarse, whole
    frames), then the shift is refined continuously by maximizing the correlation of the reference curve
    with a cubic spline of the camera's curve (sub-frame).
    """
    config = config or SyncConfig()
    names = list(xy)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    per_joint: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for c in names:
        pts, t = _check_series(xy[c], times[c], c)
        if confidence is not None and c in confidence:
            conf = np.asarray(confidence[c], float)
            if conf.shape != pts.shape[:2]:
                raise ValueError(f"camera {c}: confidence must have shape {pts.shape[:2]}, got {conf.shape}")
            pts = np.where((conf >= config.min_keypoint_confidence)[..., None], pts, np.nan)
        duration = float(t[-1] - t[0]) if len(t) > 1 else 0.0
        _check_length(c, duration, config, "keypoint track")
        speed = keypoint_speed(pts, t, config.keypoint_smoothing_frames)
        if np.isfinite(speed).sum() < 10:
            raise SyncError(f"camera {c}: the performer is seen in too few frames to synchronize by motion")
        curves[c] = (t, speed)
        per_joint[c] = (t, joint_speeds(pts, t, config.keypoint_smoothing_frames))
    dt = min(float(np.median(np.diff(t))) for t, _ in curves.values())
    grid = [_on_grid(*curves[c], dt) for c in names]
    signals = [(start, _fill(v)) for start, v in grid]

    def refine(i: int, j: int, coarse: float) -> tuple[float, float]:
        return _refine_shift(per_joint[names[i]], per_joint[names[j]], coarse, dt)

    offsets, conf = _pairwise_offsets(names, signals, 1.0 / dt, config, "keypoint motion", refine)
    return {c: _check_offset(c, offsets[k], conf[k], config, "keypoints") for k, c in enumerate(names)}


def _refine_shift(
    ref: tuple[np.ndarray, np.ndarray], cam: tuple[np.ndarray, np.ndarray], coarse: float, dt: float
) -> tuple[float, float]:
    """Continuous shift (s) near ``coarse`` maximizing the mean per-joint NCC of the reference's joint
    speeds (T, J) with a cubic spline of the camera's; returns (shift, NCC at it). Comparing joint by
    joint keeps each joint's own timing instead of a view-dependent blend of all of them."""
    t_c, v_c = cam
    seen = np.isfinite(v_c)
    filled = np.empty_like(v_c)
    for j in range(v_c.shape[1]):
        filled[:, j] = np.interp(t_c, t_c[seen[:, j]], v_c[seen[:, j], j]) if seen[:, j].sum() > 1 else np.nan
    spline = interpolate.make_interp_spline(t_c, np.nan_to_num(filled), k=3)
    gone = ~seen.any(0)

    def camera_curve(t: np.ndarray) -> np.ndarray:
        out = spline(t)
        out[:, gone] = np.nan
        return out

    t_lo, t_hi = float(t_c[0]), float(t_c[-1])
    res = optimize.minimize_scalar(
        lambda s: _shift_score(ref[0], ref[1], camera_curve, t_lo, t_hi, s),
        bounds=(coarse - 1.5 * dt, coarse + 1.5 * dt), method="bounded", options={"xatol": 1e-5 * dt},
    )
    return (float(res.x), -float(res.fun)) if res.success else (coarse, 0.0)


def _on_grid(t: np.ndarray, v: np.ndarray, dt: float) -> tuple[float, np.ndarray]:
    """Resample a curve onto a uniform grid starting at t[0]: (start, values) with NaN in gaps."""
    grid = np.arange(t[0], t[-1] + 0.5 * dt, dt)
    return float(t[0]), interpolate_gaps(t, v, grid)


def _fill(v: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(v), v, np.nanmean(v))


# ------------------------------------------------------------------------------------------------
# (d) recorded timestamps
# ------------------------------------------------------------------------------------------------
def timestamp_offsets(
    host_times: Mapping[str, np.ndarray], video_times: Mapping[str, np.ndarray], config: SyncConfig | None = None
) -> dict[str, CameraOffset]:
    """Offsets from recorded host timestamps (one shared clock, e.g. ``mocap record``).

    host_times[camera] (T_c,) s: when each frame arrived on the host; video_times[camera] (T_c,) s: the
    same frames' times in the camera's video. The offset is the median difference, relative to the
    reference; confidence falls with the jitter of that difference (1 for none, 0.5 at a 5 ms spread).
    """
    config = config or SyncConfig()
    names = list(host_times)
    ref = _reference(names, config)
    diffs = {}
    for c in names:
        h, v = np.asarray(host_times[c], float), np.asarray(video_times[c], float)
        if h.ndim != 1 or h.shape != v.shape or h.size == 0:
            raise ValueError(f"camera {c}: host and video times must have the same shape (T,), got {h.shape}, {v.shape}")
        diffs[c] = h - v
    out = {}
    for c in names:
        spread = float(np.median(np.abs(diffs[c] - np.median(diffs[c]))))
        offset = float(np.median(diffs[c]) - np.median(diffs[ref]))
        out[c] = CameraOffset(c, offset, 1.0 / (1.0 + spread / 0.005), "timestamps")
    return out


# ------------------------------------------------------------------------------------------------
# Applying offsets: one timeline for every camera
# ------------------------------------------------------------------------------------------------
def interpolate_gaps(
    times: np.ndarray, values: np.ndarray, new_times: np.ndarray, tolerance_s: float = 0.0
) -> np.ndarray:
    """Linear interpolation of ``values`` (T, ...) at ``times`` (T,) onto ``new_times`` (N,) -> (N, ...).

    A new time is NaN outside [times[0] - tolerance_s, times[-1] + tolerance_s] (within the tolerance the
    end samples' line is extended) and where either neighbouring sample is NaN (a gap is never bridged); a
    new time on a sample keeps that sample even if its neighbour is missing. This is the project's one
    resampling of a series over time (sync curves, keypoints onto the common timeline, report overlays).
    """
    times = np.asarray(times, float)
    values = np.asarray(values, float)
    new_times = np.asarray(new_times, float)
    if times.ndim != 1 or values.shape[:1] != times.shape:
        raise ValueError(f"values must have shape (T, ...) with times (T,), got {values.shape} and {times.shape}")
    out_shape = new_times.shape + values.shape[1:]
    if len(times) == 0:
        return np.full(out_shape, np.nan)
    idx = np.searchsorted(times, new_times, side="right") - 1  # left neighbour
    inside = (new_times >= times[0] - tolerance_s) & (new_times <= times[-1] + tolerance_s)
    idx = np.clip(idx, 0, max(len(times) - 2, 0))
    if len(times) == 1:
        res = np.broadcast_to(values[0], out_shape).copy()
        res[~(np.abs(new_times - times[0]) <= tolerance_s)] = np.nan
        return res
    t0, t1 = times[idx], times[idx + 1]
    w = ((new_times - t0) / (t1 - t0)).reshape((-1,) + (1,) * (values.ndim - 1))
    res = values[idx] * (1.0 - w) + values[idx + 1] * w
    # an exact hit on a sample keeps that sample even if its neighbour is missing
    exact0 = (w == 0).reshape(-1)
    exact1 = (w == 1).reshape(-1)
    res[exact0] = values[idx[exact0]]
    res[exact1] = values[idx[exact1] + 1]
    res[~inside] = np.nan
    return res


# ------------------------------------------------------------------------------------------------
# sync.json
# ------------------------------------------------------------------------------------------------
def write_sync(path: str | Path, offsets: Mapping[str, CameraOffset], fps: Mapping[str, float] | None = None) -> Path:
    """Write ``sync.json`` atomically: per camera its offset (s and frames), confidence and method."""
    cameras = {}
    for c, o in offsets.items():
        entry = {"offset_s": o.offset_s, "confidence": round(o.confidence, 4), "method": o.method}
        if fps and fps.get(c):
            entry["offset_frames"] = o.offset_s * fps[c]
        cameras[c] = entry
    ref = next((c for c, o in offsets.items() if o.offset_s == 0.0), next(iter(offsets), ""))
    data = {
        "version": SYNC_FILE_VERSION,
        "convention": "common_time = camera_time + offset_s",
        "reference": ref,
        "cameras": cameras,
    }
    return write_json_atomic(path, data)


def read_sync(path: str | Path) -> dict[str, CameraOffset]:
    """Read ``sync.json``: camera -> :class:`CameraOffset`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return {
            c: CameraOffset(c, float(e["offset_s"]), float(e["confidence"]), str(e["method"]))
            for c, e in data["cameras"].items()
        }
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no synchronization; run `mocap sync` first") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SyncError(f"{path}: not a valid sync file ({e}); run `mocap sync --overwrite`") from e


__all__ = [
    "CameraOffset", "SyncConfig", "SyncError", "audio_offsets", "brightness_curve",
    "flash_offsets", "flash_time", "interpolate_gaps", "keypoint_offsets", "keypoint_speed", "onset_envelope",
    "read_audio", "read_sync", "timestamp_offsets", "write_sync",
]
