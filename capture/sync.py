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

METHODS = ("audio", "flash", "keypoints", "timestamps", "none")
SYNC_FILE_VERSION = 1


class SyncError(ValueError):
    """A camera that cannot be synchronized: the message names the camera and what to do."""


@dataclass(frozen=True)
class SyncConfig:
    """The ``[sync]`` table of session.toml."""

    methods: tuple[str, ...] = ("audio", "keypoints")
    """Methods to try, in order of preference; the first that finds every camera's offset with confidence wins.
    "none" declares the take recorded in sync (every offset 0), e.g. hardware-triggered or genlocked cameras."""
    max_offset_s: float = 1.0
    """Search window: the largest offset (seconds, either sign) between a camera and the reference."""
    reference: str = ""
    """The camera whose clock is the common timeline (offset 0); empty means the first camera."""
    audio_rate_hz: int = 16000
    """Audio is resampled to this rate (mono) before computing onset envelopes."""
    envelope_rate_hz: int = 4000
    """Rate of the onset envelope that is cross-correlated (its sample is the coarse resolution)."""
    min_overlap_s: float = 2.0
    """Shortest stretch both signals must share to be correlated (audio, flash, keypoint image speed). The
    epipolar keypoint method (with a calibration) needs only 20 frames seen by both cameras of a pair."""
    min_confidence: float = 0.3
    """Audio and flash: below this normalized correlation peak an offset is not trusted."""
    min_epipolar_confidence: float = 0.5
    """Keypoints with a calibration (epipolar): below this ``1 - cost_best / cost_3_frames_away`` an offset is not
    trusted (the best shift must fit twice as well as any 3 frames away; synthetic takes reach 0.6-0.8, a
    half-size phone take 0.31 for an offset half a frame off)."""
    zero_when_evident: bool = True
    """When no method finds the offsets with confidence, use offsets of zero if the recordings show they are in
    sync (equal frame counts and stream start times, keypoint motion consistent with zero), with a warning in
    the report; False stops instead."""
    min_agreement: float = 0.99
    """Keypoints: an offset's confidence is the share of surrogate matches (the motion reversed and turned, so
    it cannot match) that correlate less than the real one does; below this the offset is not applied."""
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
        if "none" in self.methods and len(self.methods) > 1:
            raise ValueError(f"methods {list(self.methods)}: 'none' (recorded in sync) cannot be combined with others")
        if not 0 < self.min_agreement <= 1:
            raise ValueError(f"min_agreement must be in (0, 1], got {self.min_agreement}")


@dataclass(frozen=True)
class CameraOffset:
    """One camera's estimated offset: ``common_time = camera_time + offset_s``."""

    camera: str
    offset_s: float
    confidence: float
    """How sure the offset is, 0..1: audio and flash, the normalized correlation at the peak; keypoints, the
    share of surrogate matches it beats; 1 for the reference, recorded timestamps and "none"."""
    method: str
    zero_support: float = math.nan
    """Keypoints: how consistent offset 0 is with the motion (share of surrogates whose peak stands higher above
    their lag 0 than the real peak does; high: as consistent as the chosen offset). NaN for other methods."""


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


def _joint_ncc(ref: np.ndarray, sig: np.ndarray, max_lag: int, min_overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint normalized cross-correlation: ref (N, J), sig (M, J) on one grid, NaN where not seen.

    Returns lags (L,) = -max_lag..max_lag and ncc (L, J) where ``sig[n] ~ ref[n + lag]``; NaN where a joint
    shares fewer than ``min_overlap`` seen samples at that lag. Every lag at once: the sums over each lag's
    overlap (counts, sums, squares and products over the samples both see) are six FFT correlations.
    """
    from scipy.signal import fftconvolve

    N, M = ref.shape[0], sig.shape[0]
    lags = np.arange(-max_lag, max_lag + 1)
    ma, mb = np.isfinite(ref).astype(float), np.isfinite(sig).astype(float)
    a, b = np.where(ma > 0, ref, 0.0), np.where(mb > 0, sig, 0.0)

    def corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # sum_n x[n + lag] y[n], at ``lags``
        full = fftconvolve(x, y[::-1], mode="full", axes=0)
        k = lags + M - 1
        inside = (k >= 0) & (k < N + M - 1)
        out = np.zeros((lags.size, x.shape[1]))
        out[inside] = full[k[inside]]
        return out

    n = np.rint(corr(ma, mb))
    sa, sb = corr(a, mb), corr(ma, b)
    saa, sbb, sab = corr(a * a, mb), corr(ma, b * b), corr(a, b)
    with np.errstate(all="ignore"):
        cov = sab - sa * sb / n
        va, vb = saa - sa * sa / n, sbb - sb * sb / n
        ncc = cov / np.sqrt(va * vb)
    ok = (n >= min_overlap) & (va > 1e-12 * np.maximum(saa, 1e-300)) & (vb > 1e-12 * np.maximum(sbb, 1e-300))
    return lags, np.where(ok, np.clip(ncc, -1.0, 1.0), np.nan)


@dataclass(frozen=True)
class _JointLag:
    lag: int
    """Whole-sample lag of the joints' mean correlation peak."""
    peak: float
    confidence: float
    """Share of null peaks (from surrogates that keep each signal's own rhythm but break their relation) below
    ``peak``: 1 - p-value of the match."""
    at_zero: float
    """The mean correlation at lag 0."""
    null_sd: float
    """Spread (standard deviation) of the surrogates' correlations: how far apart two lags' values may lie by
    chance."""


def _mean_curve(ncc: np.ndarray) -> np.ndarray:
    valid = np.isfinite(ncc)
    n = valid.sum(1)
    return np.where(n > 0, np.nan_to_num(ncc).sum(1) / np.maximum(n, 1), -np.inf)


def _joint_lag(ref: np.ndarray, sig: np.ndarray, window: int, min_overlap: int, surrogates: int = 99
               ) -> _JointLag | None:
    """The lag of ``sig`` (M, J) against ``ref`` (N, J) from the joints' mean correlation, and how sure it is.

    The real correlation curve is compared with those of surrogate pairs: ``sig`` reversed in time and turned
    circularly, which keeps its own rhythm (how often and how fast things happen) but cannot match ``ref``. On
    a short take a curve of two unrelated motions often peaks at 0.3-0.4; only a peak above the surrogates'
    counts as a match.
    """
    lags, ncc = _joint_ncc(ref, sig, window, min_overlap)
    curve = _mean_curve(ncc)
    best = int(np.argmax(curve))
    if not np.isfinite(curve[best]):
        return None
    zero = int(np.flatnonzero(lags == 0)[0]) if (lags == 0).any() else best
    reversed_sig = sig[::-1]
    shifts = np.linspace(0, sig.shape[0], surrogates, endpoint=False).astype(int)
    nulls = [_mean_curve(_joint_ncc(ref, np.roll(reversed_sig, shift, axis=0), window, min_overlap)[1])
             for shift in shifts]
    nulls = [n for n in nulls if np.isfinite(n).any()]
    if not nulls:
        return None
    peaks = np.array([np.max(n) for n in nulls])
    values = np.concatenate([n[np.isfinite(n)] for n in nulls])
    return _JointLag(int(lags[best]), float(curve[best]), float(np.mean(peaks < curve[best])), float(curve[zero]),
                     float(np.std(values)))


def _zero_support(found: _JointLag, offset_s: float, dt: float, min_agreement: float) -> float:
    """How consistent offset 0 is with a pair's motion, 0..1: for a sure match, whether its offset lies within
    1.5 frames of 0 (a short take's precision); for an unsure one, the two-sided chance that the peak stands
    as far above lag 0 as it does by chance alone (from the surrogates' spread)."""
    if found.confidence >= min_agreement:
        return float(abs(offset_s) <= 1.5 * dt)
    z = (found.peak - found.at_zero) / max(found.null_sd, 1e-9)
    return float(math.erfc(z / math.sqrt(2.0)))


def _overlap_frames(lengths: Sequence[int], rate: float, config: SyncConfig) -> tuple[int, int]:
    """(window, min_overlap) in grid samples for keypoint tracks of these lengths: the window never leaves
    less than ``min_overlap_s`` shared."""
    min_overlap = int(config.min_overlap_s * rate)
    window = min(int(math.ceil(config.max_offset_s * rate)), min(lengths) - min_overlap)
    return max(window, 0), max(min_overlap, 8)


def keypoint_offsets(
    xy: Mapping[str, np.ndarray],
    times: Mapping[str, np.ndarray],
    confidence: Mapping[str, np.ndarray] | None = None,
    config: SyncConfig | None = None,
) -> dict[str, CameraOffset]:
    """Offsets from the motion of 2D keypoints. Per camera (own rate and length allowed):
    xy[camera] (T_c, J, 2) px with NaN where not seen, times[camera] (T_c,) s on the camera's clock,
    confidence[camera] (T_c, J) optional.

    Each joint's image speed is cross-correlated on a grid at the fastest camera's frame interval (whole
    frames) and the joints' mean correlation gives the lag; surrogate pairs (a camera's motion reversed and
    turned, so it keeps its rhythm but cannot match) say how sure that lag is (the offset's ``confidence``) and
    whether offset 0 fits as well (``zero_support``). The shift is
    then refined continuously on cubic splines of the joints' speeds (sub-frame). Image speed depends on the
    view (a joint moving towards a camera hardly moves in its image), so this needs takes of several seconds;
    :func:`epipolar_offsets` (with a calibration) handles short ones.
    """
    config = config or SyncConfig()
    names = list(xy)
    per_joint: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for c in names:
        pts, t = _check_series(xy[c], times[c], c)
        if confidence is not None and c in confidence:
            conf = np.asarray(confidence[c], float)
            if conf.shape != pts.shape[:2]:
                raise ValueError(f"camera {c}: confidence must have shape {pts.shape[:2]}, got {conf.shape}")
            pts = np.where((conf >= config.min_keypoint_confidence)[..., None], pts, np.nan)
        duration = float(t[-1] - t[0]) if len(t) > 1 else 0.0
        if duration < config.min_overlap_s + 0.1:
            raise SyncError(
                f"camera {c}: the keypoint track lasts {duration:.2f} s, too short to correlate image speeds (needs "
                f"more than min_overlap_s = {config.min_overlap_s} s); with the take's calibration.toml the epipolar "
                "method synchronizes short takes; if the cameras were recorded in sync, set [sync] methods = ['none'] "
                "(`mocap sync --none`); else record a longer take with a few claps")
        speeds = joint_speeds(pts, t, config.keypoint_smoothing_frames)
        if (np.isfinite(speeds).any(1)).sum() < 10:
            raise SyncError(f"camera {c}: the performer is seen in too few frames to synchronize by motion")
        per_joint[c] = (t, speeds)
    dt = min(float(np.median(np.diff(t))) for t, _ in per_joint.values())
    grids = {c: (float(t[0]), interpolate_gaps(t, v, np.arange(t[0], t[-1] + 0.5 * dt, dt)))
             for c, (t, v) in per_joint.items()}
    window, min_overlap = _overlap_frames([g.shape[0] for _, g in grids.values()], 1.0 / dt, config)
    ref = _reference(names, config)
    pairs: dict[tuple[int, int], tuple[float, float]] = {}
    support: dict[tuple[int, int], float] = {}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            (si, gi), (sj, gj) = grids[names[i]], grids[names[j]]
            found = _joint_lag(gi, gj, window, min_overlap)
            if found is None:
                continue
            coarse = found.lag * dt + si - sj
            d, _ = _refine_shift(per_joint[names[i]], per_joint[names[j]], coarse, dt)
            pairs[(i, j)] = (d, found.confidence)
            support[(i, j)] = _zero_support(found, d, dt, config.min_agreement) if abs(si - sj) < 0.5 * dt \
                else math.nan
    r = names.index(ref)
    for k, name in enumerate(names):
        if k != r and not any(k in p for p in pairs):
            raise SyncError(f"camera {name}: its keypoint motion shares too little with the other cameras to correlate")
    offsets, conf = _consensus(names, ref, pairs, 2.0 * dt, config.min_agreement)
    out = {}
    for k, c in enumerate(names):
        z = 1.0 if k == r else support.get((min(k, r), max(k, r)), math.nan)
        out[c] = CameraOffset(c, float(offsets[k]), float(conf[k]), "keypoints", float(z))
    return out


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


def _epipolar_cost(a: np.ndarray, b: np.ndarray, F: np.ndarray, cap_px: float) -> tuple[float, int]:
    """Mean truncated symmetric epipolar distance of matched points a (N, J, 2) in camera i and b in camera j
    (ideal pixels, ``u_j^T F u_i = 0``), and how many pairs were seen in both."""
    ok = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)
    if not ok.any():
        return math.inf, 0
    pa = np.concatenate([a[ok], np.ones((int(ok.sum()), 1))], 1)
    pb = np.concatenate([b[ok], np.ones((int(ok.sum()), 1))], 1)
    line_b, line_a = pa @ F.T, pb @ F
    num = np.abs(np.sum(pb * line_b, 1))
    d = 0.5 * (num / np.maximum(np.linalg.norm(line_b[:, :2], axis=1), 1e-12)
               + num / np.maximum(np.linalg.norm(line_a[:, :2], axis=1), 1e-12))
    return float(np.mean(np.minimum(d, cap_px))), int(ok.sum())


def epipolar_offsets(
    xy: Mapping[str, np.ndarray],
    times: Mapping[str, np.ndarray],
    fundamental: Mapping[tuple[str, str], np.ndarray],
    confidence: Mapping[str, np.ndarray] | None = None,
    config: SyncConfig | None = None,
    cap_px: float = 25.0,
) -> dict[str, CameraOffset]:
    """Offsets from 2D keypoints and the calibration: the shift at which every pair of cameras sees the same
    joints on each other's epipolar lines. View-invariant (unlike image speed), so short takes synchronize.

    xy[camera] (T_c, J, 2) ideal (undistorted) pixels, NaN where not seen; times[camera] (T_c,) s on the
    camera's clock; fundamental[(a, b)] (3, 3) with ``u_b^T F u_a = 0`` for every pair of cameras in ``xy``'s
    order (a before b). An offset's confidence is ``1 - cost_best / cost_elsewhere``, where cost is the mean
    epipolar distance (truncated at ``cap_px``) and "elsewhere" is the best shift at least 3 frames away: 0 when
    the performer hardly moves (every shift fits), near 1 for a clear match. ``zero_support`` is the smallest
    ``cost_best / cost_at_zero`` over the camera's pairs.
    """
    config = config or SyncConfig()
    names = list(xy)
    pts = {}
    for c in names:
        p, t = _check_series(xy[c], times[c], c)
        if confidence is not None and c in confidence:
            p = np.where((np.asarray(confidence[c], float) >= config.min_keypoint_confidence)[..., None], p, np.nan)
        if len(t) < 30:
            raise SyncError(f"camera {c}: {len(t)} frames are too few to synchronize by keypoints (needs 30); if the "
                            "cameras were recorded in sync, set [sync] methods = ['none'] (`mocap sync --none`)")
        pts[c] = (p, t)
    dt = min(float(np.median(np.diff(t))) for _, t in pts.values())
    ref = _reference(names, config)
    pairs: dict[tuple[int, int], tuple[float, float]] = {}
    support: dict[tuple[int, int], float] = {}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if (names[i], names[j]) not in fundamental:
                raise ValueError(f"no fundamental matrix for cameras {names[i]} and {names[j]}")
            found = _epipolar_pair(pts[names[i]], pts[names[j]], fundamental[(names[i], names[j])], dt, config,
                                   cap_px)
            if found is not None:
                pairs[(i, j)] = found[:2]
                support[(i, j)] = found[2]
    r = names.index(ref)
    for k, name in enumerate(names):
        if k != r and not any(k in p for p in pairs):
            raise SyncError(f"camera {name}: it shares too few seen joints with the other cameras to synchronize")
    offsets, conf = _consensus(names, ref, pairs, 2.0 * dt, config.min_epipolar_confidence)
    out = {}
    for k, c in enumerate(names):
        # every offset zero needs every pair to fit zero: the camera's least supportive pair speaks for it
        z = min((v for p, v in support.items() if k in p and np.isfinite(v)), default=math.nan)
        out[c] = CameraOffset(c, float(offsets[k]), float(conf[k]), "epipolar", float(z))
    return out


def _epipolar_pair(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], F: np.ndarray, dt: float,
                   config: SyncConfig, cap_px: float) -> tuple[float, float, float] | None:
    """(o_b - o_a, confidence, zero support) for one pair, or None when they share too little."""
    (xa, ta), (xb, tb) = a, b
    shorter = min(len(ta), len(tb))
    min_overlap = min(int(config.min_overlap_s / dt), max(20, int(0.2 * shorter)))

    def cost(d: float) -> float:
        moved = interpolate_gaps(ta, xa, tb + d)  # camera a at the instants of camera b's frames
        value, n = _epipolar_cost(moved, xb, F, cap_px)
        frames = int((np.isfinite(moved).all(-1) & np.isfinite(xb).all(-1)).any(-1).sum())
        return value if frames >= min_overlap and n > 0 else math.inf

    span = config.max_offset_s
    shifts = np.arange(-span, span + 0.5 * dt, dt) + (ta[0] - tb[0]) - round((ta[0] - tb[0]) / dt) * dt
    costs = np.array([cost(d) for d in shifts])
    if not np.isfinite(costs).any():
        return None
    k = int(np.argmin(costs))
    res = optimize.minimize_scalar(cost, bounds=(shifts[k] - dt, shifts[k] + dt), method="bounded",
                                   options={"xatol": 1e-4 * dt})
    best, c1 = (float(res.x), float(res.fun)) if res.success and res.fun <= costs[k] else (float(shifts[k]), costs[k])
    far = np.abs(shifts - best) >= 3 * dt
    c2 = float(np.min(costs[far])) if far.any() and np.isfinite(costs[far]).any() else math.inf
    c0 = cost(0.0)
    confidence = 1.0 - c1 / c2 if np.isfinite(c2) and c2 > 0 else 0.0
    zero = c1 / c0 if np.isfinite(c0) and c0 > 0 else math.nan
    return best, float(max(confidence, 0.0)), float(min(zero, 1.0))


def none_offsets(names: Sequence[str], config: SyncConfig | None = None) -> dict[str, CameraOffset]:
    """Offsets of a take recorded in sync (hardware trigger, genlock, or the user says so): every camera 0."""
    _reference(names, config or SyncConfig())
    return {c: CameraOffset(c, 0.0, 1.0, "none") for c in names}


@dataclass(frozen=True)
class InSyncEvidence:
    """What the recordings themselves say about being in sync already, when no method found offsets."""

    frame_counts: dict[str, int]
    start_times_s: dict[str, float]
    """Each video stream's first time stamp (NaN for image folders)."""
    zero_support: dict[str, float]
    """Per camera, from the keypoint motion: share of resamples in which offset 0 fits as well (NaN: unknown)."""

    def reasons_against(self, min_zero_support: float = 0.5) -> list[str]:
        """Why offsets of zero are not supported (empty when they are)."""
        against = []
        counts = set(self.frame_counts.values())
        if len(counts) > 1:
            against.append(f"the recordings have different frame counts ({self.frame_counts})")
        starts = [v for v in self.start_times_s.values() if np.isfinite(v)]
        if starts and max(starts) - min(starts) > 1e-3:
            against.append(f"the video streams start at different times ({self.start_times_s})")
        contradicted = [c for c, z in self.zero_support.items() if np.isfinite(z) and z < min_zero_support]
        if contradicted:
            against.append(f"the keypoint motion of camera(s) {contradicted} does not fit offsets of zero")
        if not any(np.isfinite(z) for z in self.zero_support.values()) and len(self.frame_counts) > 1:
            against.append("there is no keypoint motion to check offsets of zero against")
        return against

    def describe(self) -> str:
        """One line for the report: the evidence that the take is in sync."""
        support = {c: round(z, 2) for c, z in self.zero_support.items() if np.isfinite(z)}
        return (f"equal frame counts ({next(iter(self.frame_counts.values()), 0)}), equal stream start times, and "
                f"keypoint motion consistent with offsets of zero (support per camera {support})")


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
        if np.isfinite(o.zero_support):
            entry["zero_support"] = round(o.zero_support, 4)
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
            c: CameraOffset(c, float(e["offset_s"]), float(e["confidence"]), str(e["method"]),
                            float(e.get("zero_support", math.nan)))
            for c, e in data["cameras"].items()
        }
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no synchronization; run `mocap sync` first") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SyncError(f"{path}: not a valid sync file ({e}); run `mocap sync --overwrite`") from e


__all__ = [
    "CameraOffset", "InSyncEvidence", "SyncConfig", "SyncError", "epipolar_offsets", "none_offsets",
    "audio_offsets", "brightness_curve",
    "flash_offsets", "flash_time", "interpolate_gaps", "keypoint_offsets", "keypoint_speed", "onset_envelope",
    "read_audio", "read_sync", "timestamp_offsets", "write_sync",
]
