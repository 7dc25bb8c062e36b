"""One standard deviation for each body measurement, from what the 3D keypoints tell about the body's shape.

The route (a Laplace approximation of the shape's posterior):

1. the noise of each keypoint, from the fit's own residuals (observed minus fitted keypoints, robust: the
   median squared residual), and how correlated it is from frame to frame (the lag-one autocorrelation rho of
   the residuals: a smoothed track of T frames carries about T (1 - rho) / (1 + rho) frames' information);
2. the Fisher information of the shape parameters: every frame's keypoints' derivatives with respect to the
   shape, each frame's pose an unknown eliminated by a Schur complement (as benchmarks/shape_information.py
   does for the Cramer-Rao bound), plus the Hessian of the model's shape prior;
3. its inverse, the shape's covariance, carried through each measurement's derivatives with respect to the
   shape (central differences of :func:`measure_body` in the model's unconstrained shape variables).

What it leaves out: what the 2D views add beyond their triangulation, and any error the keypoints share
over the whole take (a detector that places a landmark differently from the model's definition of it: the fit
takes such offsets for surface landmarks, not for joints). The coverage of the stated sigma is measured on
virtual-studio takes by benchmarks/measurement_coverage.py.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from mocap_studio.reconstruction.body import fit_skeleton as F
from mocap_studio.reconstruction.body.measurements import (
    DEFINITIONS,
    MEASUREMENT_NAMES,
    TRUST_LIMITS_M,
    Measurements,
    measure_body,
    trust,
)
from mocap_studio.reconstruction.body.torch_rotations import rotvec_to_rotmat
from torch.func import jacfwd

MAX_INFO_FRAMES = 300
"""Frames (spread over the take) the shape information is computed on; a longer take's is scaled up (memory)."""
RIDGE = 1e-9
"""Each frame's pose information gets this times its largest diagonal entry added before the pose is eliminated: a
pose direction the keypoints barely see (held in the fit by its pose prior, joint limits and temporal term) then
takes up no shape information. The Cramer-Rao bound as posed (benchmarks/shape_information.py) uses 1e-15: the
girths' sigma is about 2.3 times this one's there (seed 3)."""
CHI2_3_MEDIAN = 2.3660
"""Median of a chi-square with 3 degrees of freedom: median(|r|^2) / this is the per-axis variance."""
DEFAULT_OFFSET_SIGMA_M = 0.003
"""The effective spread (per axis, metres) of the detector's joints about the model's definition of them, constant
over a take. The fit's surface-landmark offsets spread 14-18 mm on virtual-studio takes, but the fit does not move
its shape as a linear least-squares fit of the 3D keypoints alone would for offsets that large (robust weights, the
2D views): this is the smallest value, in 1 mm steps, under which the sigmas covered more than 80 % of the true
errors on the takes of seeds 111-120 (77 % at 2 mm, 64 % at 0); it is checked on seeds 101-110
(benchmarks/measurement_coverage.py)."""

SILHOUETTE_INFORMATION_SCALE = 100.0
"""The silhouette refinement's loss read as a negative log-likelihood overstates what it knows: its outline distances
are correlated along the outline and from view to view (a pose or a mask a little off moves a whole stretch), a
detector's mask is not the body's outline (MediaPipe's segmentation, 2 cm a pixel on the takes below), and the body
model cannot match a body exactly. Its information is divided by this. Set on full-pipeline virtual-studio takes
(benchmarks/measurement_takes.py seeds 101-104: MediaPipe keypoints and masks, fitted with ``mocap.demo.DEMO_FIT``;
benchmarks/measurement_coverage.py --silhouettes --seeds 101 102 103 104): at 70 the stated sigma covered 68 % of
the 40 errors and the median |error| / sigma was 0.67 (a Gaussian's: 0.674); 100 for a margin (70 %). True masks
tell far more: on the silhouette scenes (benchmarks/silhouette_scene.py) 10 would do (62 %, median 0.67), so there
the sigmas are wide. Checked again with full-size masks and the fit's defaults since stop 32 (ten starts) on the ten
full-size takes 101-110: 70 % of the 100 errors within one sigma, median |error| / sigma 0.69. With the starts
spread over the phenotypes (stop 34), which put every one of twenty takes in its truth's valley, the sigmas cover
90 % of those takes' 200 errors (median 0.34): wider than need be (40 would cover 76 %, 25 64 %), kept at 100 until
real footage tells how far the studio's figures carry over."""


@dataclass(frozen=True)
class KeypointNoise:
    """Per keypoint of the skeleton (K,): ``sigma_m`` the noise per axis (metres, NaN where never seen),
    ``rho`` the lag-one autocorrelation of its residual, ``frames`` the frames that saw it."""

    sigma_m: np.ndarray
    rho: np.ndarray
    frames: np.ndarray


def keypoint_noise(observed: np.ndarray, fitted: np.ndarray) -> KeypointNoise:
    """Noise of each keypoint from the fit's residuals: observed (T, K, 3) with NaN where missing, fitted (T, K, 3)."""
    obs, fit = np.asarray(observed, dtype=float), np.asarray(fitted, dtype=float)
    if obs.ndim != 3 or obs.shape[-1] != 3 or obs.shape != fit.shape:
        raise ValueError(f"observed and fitted keypoints must both have shape (T, K, 3), got {obs.shape} and {fit.shape}")
    r = obs - fit
    seen = np.isfinite(r).all(-1)
    sq = np.where(seen, (np.nan_to_num(r) ** 2).sum(-1), np.nan)
    with warnings.catch_warnings():  # a keypoint never seen: all-NaN column, sigma NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        sigma = np.sqrt(np.nanmedian(sq, axis=0) / CHI2_3_MEDIAN)
        mean = np.nanmean(np.where(seen[..., None], r, np.nan), axis=0, keepdims=True)
    rc = r - mean
    both = seen[1:] & seen[:-1]
    rho = np.zeros(r.shape[1])
    for k in range(r.shape[1]):
        if both[:, k].sum() < 5:
            continue
        a, b = rc[1:][both[:, k], k], rc[:-1][both[:, k], k]
        den = np.sqrt((a * a).sum() * (b * b).sum())
        rho[k] = float(np.clip((a * b).sum() / den, 0.0, 0.99)) if den > 0 else 0.0
    return KeypointNoise(sigma, rho, seen.sum(0))


@dataclass(frozen=True)
class ShapeInformation:
    """What the keypoints tell about the shape (S,): ``info`` (S, S) the Fisher information with every frame's pose
    eliminated, each keypoint weighted by 1 / sigma^2 and by (1 - rho) / (1 + rho) for its correlation over frames;
    ``info_fit`` (S, S) the same without that discount (as a fit weighs them); ``offset_response`` (S, 3 K) how far
    a fit weighing as ``info_fit`` (plus the prior) moves the shape per metre of a constant offset of each joint
    keypoint in the body's root frame (surface landmarks, whose offsets the fit solves for, respond 0);
    ``info_poses_known`` (S, S) the discounted information were every frame's pose known; ``offset_cross`` (S, 3 K)
    the pull of those offsets on the shape (``offset_response`` is the solve of ``info_fit`` plus the prior with it)."""

    info: np.ndarray
    info_fit: np.ndarray
    offset_response: np.ndarray
    info_poses_known: np.ndarray
    offset_cross: np.ndarray


def shape_information(model, shape: np.ndarray, pose_rotvec: np.ndarray, trans: np.ndarray, skeleton: str,  # noqa: ANN001
                      noise: KeypointNoise, seen: np.ndarray, ridge: float = RIDGE, max_frames: int = MAX_INFO_FRAMES
                      ) -> ShapeInformation:
    """The information about the shape parameters (S,) from keypoints of ``skeleton`` seen as ``seen`` (T, K) bool in
    the frames posed by pose_rotvec (T, J, 3) and trans (T, 3); see :class:`ShapeInformation` (and :data:`RIDGE`).
    Takes longer than ``max_frames`` are read at that many frames spread evenly over them, the information scaled
    up to the whole take's frames."""
    red, basis = F._fit_setup(model, skeleton)
    T = len(pose_rotvec)
    K = basis.P0.shape[0] - len(red.sole_ids)
    seen = np.asarray(seen, dtype=bool)
    if seen.shape != (T, K):
        raise ValueError(f"seen must have shape ({T}, {K}) for {skeleton}, got {seen.shape}")
    scale = 1.0
    if T > max_frames:
        pick = np.linspace(0, T - 1, max_frames).round().astype(int)
        pose_rotvec, trans, seen = np.asarray(pose_rotvec)[pick], np.asarray(trans)[pick], seen[pick]
        scale, T = T / max_frames, max_frames
    s = torch.as_tensor(np.asarray(shape, dtype=float), dtype=F.DT)

    def coeff(x: torch.Tensor) -> torch.Tensor:
        return model.blend_coefficients(x.to(model.dtype)).to(F.DT)

    ok = np.isfinite(noise.sigma_m) & (noise.sigma_m > 0)
    w_fit = np.where(ok, 1.0 / np.where(ok, noise.sigma_m, 1.0), 0.0)
    discount = np.sqrt((1 - noise.rho) / (1 + noise.rho))
    with torch.no_grad():
        rest = F._rest(basis, coeff(s))
        rot = rotvec_to_rotmat(torch.as_tensor(np.asarray(pose_rotvec)[:, red.free.numpy()], dtype=F.DT))
        posed = F._forward(model, red, rest, rot, torch.as_tensor(np.asarray(trans), dtype=F.DT))
        dc = jacfwd(coeff)(s)
        dP = torch.einsum("cs,ckjd->skjd", dc, basis.Pc)
        dJ = torch.einsum("cs,cjd->sjd", dc, basis.Jc)
        jp = F._pose_jacobian(red, rest, posed)[:, :K]  # (T, K, 3, n)
        js = F._shape_jacobian(red, rest, posed, dP, dJ)[:, :K]  # (T, K, 3, S)
        out = []
        for w in (w_fit * discount, w_fit):
            weight = torch.as_tensor(seen * w[None], dtype=F.DT)[..., None, None]  # sqrt of each residual's weight
            a, b = (jp * weight).reshape(T, 3 * K, -1), (js * weight).reshape(T, 3 * K, -1)
            i_ff = a.transpose(1, 2) @ a
            damp = ridge * torch.eye(i_ff.shape[-1], dtype=F.DT) * (1 + i_ff.diagonal(dim1=-2, dim2=-1).amax(-1))[:, None, None]
            # each frame's shape derivatives with the part its pose can take up projected out
            proj = b - a @ torch.linalg.solve(i_ff + damp, a.transpose(1, 2) @ b)  # (T, 3K, S)
            out.append((proj, weight))
        info = [scale * (p.transpose(1, 2) @ p).sum(0) for p, _ in out]
        b_known = (js * out[0][1]).reshape(T, 3 * K, -1)
        known = scale * (b_known.transpose(1, 2) @ b_known).sum(0)
        # a constant offset d_k of keypoint k in the root's frame shifts its target by R_root(t) d_k in frame t
        proj, weight = out[1]
        r_root = posed.rg[:, 0]  # (T, 3, 3)
        joint = torch.ones(K, dtype=F.DT)
        if len(red.marker_k):
            joint[red.marker_k] = 0.0
        wr = weight * joint[None, :, None, None] * r_root[:, None]  # (T, K, 3, 3)
        cross = scale * torch.einsum("tkas,tkab->skb", proj.reshape(T, K, 3, -1), wr).reshape(-1, 3 * K)  # (S, 3K)
    prior = prior_hessian(model, shape)
    response = np.linalg.solve(info[1].numpy() + prior, cross.numpy())
    sym = [0.5 * (i + i.T).numpy() for i in (*info, known)]
    return ShapeInformation(sym[0], sym[1], response, sym[2], cross.numpy())


def prior_hessian(model, shape: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """(S, S) Hessian of the model's negative log shape prior at ``shape`` (S,)."""
    s = torch.as_tensor(np.asarray(shape, dtype=float), dtype=torch.float64)
    return torch.autograd.functional.hessian(lambda x: model.shape_prior(x), s).numpy()


def measurement_jacobian(model, shape: np.ndarray, step: float = 0.02) -> tuple[np.ndarray, Measurements]:  # noqa: ANN001
    """(M, S) derivatives of the measurements (metres, :data:`MEASUREMENT_NAMES` order) with respect to the shape
    parameters (S,), and the measurements at ``shape``.

    Finite differences of ``step`` on each side, kept inside the shape's range (Anny's phenotypes lie in [0, 1]).
    Where the two one-sided differences disagree (a landmark that jumps, such as the crotch level found on the other
    side of a mesh edge), the smaller is taken: a jump is not a derivative."""
    shape = np.asarray(shape, dtype=float)
    lo = model.shape_from_free(torch.full((len(shape),), -30.0, dtype=torch.float64)).numpy()
    hi = model.shape_from_free(torch.full((len(shape),), 30.0, dtype=torch.float64)).numpy()
    base = measure_body(model, shape)
    m0 = base.as_array()
    jac = np.zeros((len(MEASUREMENT_NAMES), len(shape)))
    for i in range(len(shape)):
        sides = []
        for sign in (1.0, -1.0):
            s = shape.copy()
            s[i] = np.clip(shape[i] + sign * step, lo[i], hi[i])
            if abs(s[i] - shape[i]) > 0.25 * step:
                sides.append((measure_body(model, s).as_array() - m0) / (s[i] - shape[i]))
        if not sides:
            continue
        if len(sides) == 1:
            jac[:, i] = sides[0]
            continue
        a, b = sides
        agree = (np.sign(a) == np.sign(b)) & (np.abs(a - b) <= 0.5 * np.maximum(np.abs(a), np.abs(b)) + 1e-6)
        jac[:, i] = np.where(agree, 0.5 * (a + b), np.where(np.abs(a) < np.abs(b), a, b))
    return jac, base


@dataclass(frozen=True)
class MeasurementUncertainty:
    """Measurements with one standard deviation each (metres, :data:`MEASUREMENT_NAMES` order): ``values`` (M,),
    ``sigma`` (M,), ``shape_cov`` (S, S) the shape's covariance, ``jacobian`` (M, S), ``method`` in words, the
    keypoint noise it was read from (median over keypoints, metres, and the median rho), ``sigma_noise`` (M,) the
    part of sigma from the keypoints' noise alone, ``offset_sigma_m`` the joints' assumed offset spread, and
    ``sigma_valleys`` (M,) the part from the shape fit's other valleys (:func:`valley_spread`; None without them)."""

    values: Measurements
    sigma: np.ndarray
    shape_cov: np.ndarray
    jacobian: np.ndarray
    method: str
    noise_m: float
    rho: float
    sigma_noise: np.ndarray
    offset_sigma_m: float
    sigma_valleys: np.ndarray | None = None

    def sigma_of(self, name: str) -> float:
        """Sigma (metres) of the measurement ``name``."""
        return float(self.sigma[MEASUREMENT_NAMES.index(name)])


def measurement_uncertainty(model, shape: np.ndarray, pose_rotvec: np.ndarray, trans: np.ndarray,  # noqa: ANN001
                            observed: np.ndarray, skeleton: str, offset_sigma_m: float = DEFAULT_OFFSET_SIGMA_M,
                            silhouette_info: np.ndarray | None = None,
                            valleys: list[tuple[np.ndarray, float]] | None = None) -> MeasurementUncertainty:
    """Measurements of the fitted ``shape`` (S,) with their sigmas, from the keypoints ``observed`` (T, K, 3) of
    ``skeleton`` (NaN where missing) that the fit posed as pose_rotvec (T, J, 3) and trans (T, 3).

    ``offset_sigma_m``: how far (per axis, metres) the detector's joints may sit from the model's definition of them,
    the same in every frame (:data:`DEFAULT_OFFSET_SIGMA_M`). ``silhouette_info`` (S, S): what the silhouettes told
    the shape fit beyond the keypoints (``JointRefinement.shape_information``, in the fit's figures), added at
    :data:`SILHOUETTE_INFORMATION_SCALE`; None where the shape was fitted to the keypoints alone. ``valleys``: the
    shapes (S,) the silhouette fit's restarts ended at, with their losses (the fit's ``restarts``), whose spread is
    added to each measurement's variance (:func:`valley_spread`); None or empty: none."""
    obs = np.asarray(observed, dtype=float)
    if obs.ndim != 3 or obs.shape[0] != len(pose_rotvec) or len(trans) != len(pose_rotvec):
        raise ValueError(f"observed keypoints {obs.shape}, poses {np.shape(pose_rotvec)} and translations {np.shape(trans)} "
                         "must cover the same frames")
    fitted = np.concatenate([model.keypoints(shape, pose_rotvec[i:i + 500], trans[i:i + 500], skeleton)
                             for i in range(0, len(obs), 500)])
    noise = keypoint_noise(obs, fitted)
    seen = np.isfinite(obs).all(-1)
    si = shape_information(model, shape, pose_rotvec, trans, skeleton, noise, seen)
    prior = prior_hessian(model, shape)
    response = si.offset_response
    extra = np.zeros_like(prior)
    if silhouette_info is not None:
        extra = np.asarray(silhouette_info, dtype=float) / SILHOUETTE_INFORMATION_SCALE
        if extra.shape != prior.shape:
            raise ValueError(f"silhouette_info must have shape {prior.shape}, got {extra.shape}")
        response = np.linalg.solve(si.info_fit + prior + extra, si.offset_cross)
    cov_noise = np.linalg.inv(si.info + prior + extra)
    cov = cov_noise + offset_sigma_m**2 * response @ response.T
    jac, values = measurement_jacobian(model, shape)
    variance = np.clip(np.einsum("ms,st,mt->m", jac, cov, jac), 0, None)
    spread = valley_spread(model, valleys) if valleys else None
    sigma = np.sqrt(variance + (0 if spread is None else spread))
    sigma_noise = np.sqrt(np.clip(np.einsum("ms,st,mt->m", jac, cov_noise, jac), 0, None))
    used = np.isfinite(noise.sigma_m) & (noise.frames > 0)
    silhouettes = "" if silhouette_info is None else (
        f" plus what the silhouettes added in the shape fit (its Gauss-Newton information, poses eliminated, over "
        f"{SILHOUETTE_INFORMATION_SCALE:g})")
    if spread is not None:
        silhouettes += (f", and the spread of the {len(valleys)} valleys the shape fit's restarts ended in, each weighted "
                        f"by exp(-loss above the lowest / {SILHOUETTE_INFORMATION_SCALE:g})")
    return MeasurementUncertainty(
        values, sigma, cov, jac,
        "Laplace: the 3D keypoints' information about the shape (poses eliminated; noise and its frame-to-frame "
        f"correlation from the fit's residuals){silhouettes} plus the shape prior, and the shape's response to the "
        f"detector's joints sitting {1000 * offset_sigma_m:.0f} mm (per axis) from the model's, carried through each "
        "measurement's derivatives with respect to the shape",
        float(np.median(noise.sigma_m[used])) if used.any() else float("nan"),
        float(np.median(noise.rho[used])) if used.any() else float("nan"),
        sigma_noise, offset_sigma_m, None if spread is None else np.sqrt(spread),
    )


def restart_valleys(restarts: list[dict]) -> list[tuple[np.ndarray, float]]:
    """The shapes (S,) and losses the silhouette fit's restarts ended at (its figures' ``restarts``), for
    :func:`valley_spread`."""
    return [(np.asarray(r["shape"], dtype=float), float(r["loss"])) for r in restarts]


def valley_spread(model, valleys: list[tuple[np.ndarray, float]]) -> np.ndarray:  # noqa: ANN001
    """(M,) the variance (metres squared) the shape fit's other valleys add to each measurement. The silhouette fit's
    restarts (:func:`fit_silhouette._restarts`: the winner and the runs restarted along the weak directions, the same
    iterations each) end at shapes (S,) with losses: each is weighted by exp(-(loss - lowest) /
    :data:`SILHOUETTE_INFORMATION_SCALE`), the loss read as a negative log-likelihood at the scale the sigmas already
    use, and the weighted mean square of its measurements about the lowest one's is the variance added (the lowest
    then runs on, ``silhouette_restart_finish``; the spread is taken where all had run alike). A valley far above the
    lowest adds nothing; one about as low adds about half the squared distance between the two. The Laplace
    approximation sees one valley's curvature only: on the sixteen studio takes of stop 40 and the demo, the stated
    sigmas covered 151 of the 170 true errors without this and 157 with it (the neck 8 and 11 of 17), widened by a
    median 1.8 % (README, "Sigmas that include the valleys")."""
    loss = np.array([float(v[1]) for v in valleys])
    ok = np.isfinite(loss)
    if not ok.any():
        return np.zeros(len(MEASUREMENT_NAMES))
    lowest = int(np.argmin(np.where(ok, loss, np.inf)))
    w = np.zeros(len(loss))
    w[ok] = np.exp(-(loss[ok] - loss[lowest]) / SILHOUETTE_INFORMATION_SCALE)
    w /= w.sum()
    base = measure_body(model, np.asarray(valleys[lowest][0], dtype=float)).as_array()
    spread = np.zeros(len(MEASUREMENT_NAMES))
    for i, ((shape, _), wi) in enumerate(zip(valleys, w, strict=True)):
        if i != lowest and wi > 1e-6:
            spread += wi * (measure_body(model, np.asarray(shape, dtype=float)).as_array() - base) ** 2
    return spread



REST_POSE = "the model's rest pose: upright, arms down and away from the trunk (A-pose), feet at Z = 0"
"""The pose every measurement is taken in."""


def measurements_document(values: Measurements, model_name: str, unc: MeasurementUncertainty | None = None,
                          why_no_sigma: str = "") -> dict:
    """measurements.json (version 2): per measurement its value and sigma (metres), unit, ISO 8559-1 name, how it
    was taken, and whether it is trustworthy and why not; the body model and the pose. ``unc`` None: no sigma
    (``why_no_sigma`` says why) and nothing is called trustworthy."""
    out = {}
    for i, name in enumerate(MEASUREMENT_NAMES):
        d = DEFINITIONS[name]
        sigma = None if unc is None else float(unc.sigma[i])
        ok, reason = trust(name, sigma) if sigma is not None else (False, why_no_sigma or "no uncertainty was computed")
        out[name] = {"value": round(float(getattr(values, name)), 4), "sigma": None if sigma is None else round(sigma, 4),
                     "unit": "m", "kind": d.kind, "iso_8559_1": d.iso_name, "definition": d.landmarks,
                     "trustworthy": ok, "reason": reason}
    doc = {"format": "mocap-measurements", "version": 2, "units": "m", "body_model": model_name, "pose": REST_POSE,
           "standard": "ISO 8559-1 (measurement names and landmarks; see reconstruction/body/measurements.py)",
           "measurements": out}
    if unc is not None:
        doc["uncertainty"] = {"sigma": "one standard deviation", "method": unc.method,
                              "keypoint_noise_mm": round(1000 * unc.noise_m, 1),
                              "keypoint_noise_autocorrelation": round(unc.rho, 2),
                              "joint_offset_sigma_mm": round(1000 * unc.offset_sigma_m, 1),
                              "limits_mm": {k: 1000 * v for k, v in TRUST_LIMITS_M.items()}}
    return doc


def untrusted_warning(doc: dict) -> str | None:
    """A warning naming the measurements of a measurements.json document (version 2) that are not trustworthy, or None."""
    bad = [(n, m) for n, m in doc.get("measurements", {}).items() if not m.get("trustworthy", True)]
    if not bad:
        return None
    def label(m: dict) -> str:
        return "no sigma" if m.get("sigma") is None else f"+-{1000 * m['sigma']:.0f} mm"

    shown = ", ".join(f"{n.replace('_', ' ')} ({label(m)})" for n, m in bad)
    return (f"measurements not trustworthy (one sigma over {1000 * TRUST_LIMITS_M['girth']:.0f} mm for a girth, "
            f"{1000 * TRUST_LIMITS_M['length']:.0f} mm for a length): {shown}; what the fit read tells the body's shape too "
            "poorly for these: do not size garments by them")
