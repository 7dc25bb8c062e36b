"""SMPL, SMPL+H and SMPL-X from the user's own model files, behind :class:`BodyModel`.

The files cannot be redistributed: users download them and put them where :func:`smpl_model_path`
looks (``<model_dir>/<kind>/<KIND>_<GENDER>.pkl|npz``, smplx's layout; the official download names are
accepted too). They are read by the restricted loader in ``smpl_pkl.py`` (no chumpy, nothing executed)
and handed to ``smplx`` as ``data_struct`` (smplx would otherwise unpickle the path itself).

Shape: the first ``num_betas`` betas. Pose: axis-angle per joint (SMPL's own convention, Y up in the
model's axes; the root rotation carries the body into the Z-up world, as in AMASS). Vertices follow
SMPL's formula, pose correctives included.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import torch
from mocap_studio.reconstruction.body.lbs import pose_feature
from mocap_studio.reconstruction.body.model import SkinnedBodyModel
from mocap_studio.reconstruction.body.regressors import ANNY_LANDMARKS_PATH, LandmarkSet, transfer_landmarks
from mocap_studio.reconstruction.body.smpl_pkl import load_model_file

logger = logging.getLogger(__name__)

SMPL_KINDS = ("smpl", "smplh", "smplx")
GENDERS = ("neutral", "female", "male")

# where each kind comes from and on what terms, one line each (shown when a file is missing)
SOURCES = {
    "smpl": ("https://smpl.is.tue.mpg.de (register, then 'Download version 1.1.0 for Python')",
             "SMPL Model License: non-commercial scientific research only; commercial use needs a licence "
             "from Meshcapade"),
    "smplh": ("https://mano.is.tue.mpg.de (register, then 'Extended SMPL+H model')",
              "MANO/SMPL+H licence: non-commercial scientific research only"),
    "smplx": ("https://smpl-x.is.tue.mpg.de (register, then 'Download SMPL-X v1.1')",
              "SMPL-X licence: non-commercial scientific research only; commercial use needs a licence "
              "from Meshcapade"),
}

# official download names, accepted as well as smplx's layout
_OFFICIAL_NAMES = {
    ("smpl", "neutral"): (
        "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl",
        "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl",
    ),
    ("smpl", "female"): ("basicmodel_f_lbs_10_207_0_v1.1.0.pkl", "basicModel_f_lbs_10_207_0_v1.0.0.pkl"),
    ("smpl", "male"): ("basicmodel_m_lbs_10_207_0_v1.1.0.pkl", "basicmodel_m_lbs_10_207_0_v1.0.0.pkl"),
}

SMPL_BODY_JOINTS = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
_HAND = ("index1", "index2", "index3", "middle1", "middle2", "middle3", "pinky1", "pinky2", "pinky3",
         "ring1", "ring2", "ring3", "thumb1", "thumb2", "thumb3")
JOINT_NAMES = {
    "smpl": SMPL_BODY_JOINTS + ("left_hand", "right_hand"),
    "smplh": SMPL_BODY_JOINTS + tuple(f"left_{h}" for h in _HAND) + tuple(f"right_{h}" for h in _HAND),
    "smplx": SMPL_BODY_JOINTS
    + ("jaw", "left_eye_smplhf", "right_eye_smplhf")
    + tuple(f"left_{h}" for h in _HAND)
    + tuple(f"right_{h}" for h in _HAND),
}
# the Y-up model stood upright in the Z-up world, facing -Y: (x, y, z) -> (x, -z, y)
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_JOINT_LANDMARKS = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


class ModelFileMissing(FileNotFoundError):
    """The SMPL-family model file is not where it is expected; the message says what to do."""


def expected_file_name(kind: str, gender: str) -> str:
    """The canonical file name for ``kind`` and ``gender``, e.g. ``SMPL_NEUTRAL.pkl`` (SMPL-X: .npz)."""
    ext = "npz" if kind == "smplx" else "pkl"
    return f"{kind.upper()}_{gender.upper()}.{ext}"


def smpl_model_path(model_dir: str | Path, kind: str = "smpl", gender: str = "neutral") -> Path:
    """The model file for ``kind`` ("smpl", "smplh", "smplx") and ``gender`` under ``model_dir``.

    Looks for ``<model_dir>/<kind>/<KIND>_<GENDER>.pkl`` or ``.npz`` (also directly in ``model_dir``) and
    the official download names; raises :class:`ModelFileMissing` naming the expected file, where it comes
    from and its licence terms.
    """
    if kind not in SMPL_KINDS:
        raise ValueError(f"kind must be one of {SMPL_KINDS}, got {kind!r}")
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
    model_dir = Path(model_dir).expanduser()
    folders = [model_dir / kind, model_dir]
    stems = [f"{kind.upper()}_{gender.upper()}"]
    names = [f"{s}.{e}" for s in stems for e in ("pkl", "npz")] + list(_OFFICIAL_NAMES.get((kind, gender), ()))
    for folder in folders:
        if not folder.is_dir():
            continue
        by_lower = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
        for name in names:
            if name.lower() in by_lower:
                return by_lower[name.lower()]
    expected = model_dir / kind / expected_file_name(kind, gender)
    found = sorted(
        str(p.relative_to(model_dir)) for f in folders if f.is_dir() for p in f.iterdir() if p.suffix in (".pkl", ".npz")
    )
    where, licence = SOURCES[kind]
    raise ModelFileMissing(
        f"{kind.upper()} model file not found: expected {expected}"
        + (f" (found {found}; rename the right one)" if found else "")
        + f". Download it from {where}. Licence: {licence}. "
        "The open body model (--model anny) works without it."
    )


def _dense(a: Any) -> np.ndarray:
    return a.toarray() if scipy.sparse.issparse(a) else np.asarray(a)


class SmplBody(SkinnedBodyModel):
    """An SMPL-family model from arrays (see :func:`load_smpl`)."""

    def __init__(
        self,
        data: dict[str, Any],
        kind: str = "smpl",
        gender: str = "neutral",
        num_betas: int = 10,
        source: str = "",
        landmarks_path: str | Path = ANNY_LANDMARKS_PATH,
        dtype: torch.dtype = torch.float32,
    ):
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise ValueError(f"{source or 'SMPL data'}: not an {kind.upper()} model file (missing keys {missing})")
        self.dtype = dtype
        self.name = kind
        self.gender = gender
        self.source = source
        self._data = data
        v_template = np.asarray(data["v_template"], dtype=float)
        V = v_template.shape[0]
        shapedirs = np.asarray(data["shapedirs"], dtype=float)
        if shapedirs.ndim != 3 or shapedirs.shape[:2] != (V, 3):
            raise ValueError(f"{source}: shapedirs must have shape ({V}, 3, S), got {shapedirs.shape}")
        num_betas = min(num_betas, shapedirs.shape[2] if kind != "smplx" else min(shapedirs.shape[2], 300))
        shapedirs = shapedirs[:, :, :num_betas]
        j_reg = _dense(data["J_regressor"]).astype(float)
        parents = np.asarray(data["kintree_table"], dtype=np.int64)[0].copy()
        parents[0] = -1
        J = len(parents)
        names = JOINT_NAMES.get(kind, ())
        self.joint_names = names if len(names) == J else tuple(f"joint{j}" for j in range(J))
        self.parents = parents
        self.faces = np.asarray(data["f"], dtype=np.int64)
        self.shape_names = tuple(f"beta{i}" for i in range(num_betas))
        self.model_to_world_rest = Y_UP_TO_Z_UP.copy()
        index = {n: i for i, n in enumerate(self.joint_names)}
        self.semantic_joints = {n: index[n] for n in SMPL_BODY_JOINTS if n in index}
        hand = {"smpl": ("left_hand", "right_hand"), "smplh": ("left_middle1", "right_middle1"),
                "smplx": ("left_middle1", "right_middle1")}[kind]
        if all(h in index for h in hand):
            self.semantic_joints["left_hand"], self.semantic_joints["right_hand"] = (
                index[hand[0]],
                index[hand[1]],
            )
        self.free_joints = tuple(j for j in range(min(J, 22)) if j not in (10, 11))
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
        self._v_template = t(v_template)
        self._shapedirs = t(shapedirs)  # (V, 3, S)
        posedirs = np.asarray(data["posedirs"], dtype=float)
        self._posedirs = t(posedirs.reshape(V, 3, -1).transpose(2, 0, 1))  # (P, V, 3)
        self._j_template = t(j_reg @ v_template)
        self._j_shapedirs = t(np.einsum("jv,vds->jds", j_reg, shapedirs))
        w = np.asarray(data["weights"], dtype=float)
        self._weights = t(w / w.sum(1, keepdims=True))
        self._j_regressor = j_reg
        self._finish_init()
        self.landmarks = self._make_landmarks(LandmarkSet.load(landmarks_path))

    def _make_landmarks(self, reference: LandmarkSet) -> LandmarkSet:
        shape = self.default_shape()
        rest = self.rest_mesh_model_axes(shape) @ self.model_to_world_rest.T
        tree = self.kinematic_tree(shape)
        semantic = {n: tree.rest_positions[j] @ self.model_to_world_rest.T for n, j in self.semantic_joints.items()}
        joint_rows = {}
        for side in ("left", "right"):
            for j in _JOINT_LANDMARKS:
                name = f"{side}_{j}"
                if name in self.semantic_joints:
                    row = self._j_regressor[self.semantic_joints[name]]
                    ids = np.flatnonzero(np.abs(row) > 1e-8)
                    joint_rows[name] = (ids, row[ids] / row[ids].sum())
        return transfer_landmarks(reference, rest, semantic, joint_rows)

    # ---- shape
    def default_shape(self) -> np.ndarray:
        """(S,) zero betas: the template body."""
        return np.zeros(self.num_shape)

    def random_shape(self, rng: np.random.Generator, spread: float = 1.0) -> np.ndarray:
        """(S,) betas drawn from a normal distribution with standard deviation ``spread``."""
        return rng.normal(0.0, spread, self.num_shape)

    def shape_from_unit(self, unit: np.ndarray, spread: float = 1.0) -> np.ndarray:
        """(S,) betas at ``unit`` (S,) in the unit cube through the normal distribution's quantiles (standard
        deviation ``spread``), the cube's faces held 3 standard deviations out."""
        from scipy.stats import norm

        return spread * norm.ppf(np.clip(np.asarray(unit, dtype=float), norm.cdf(-3.0), norm.cdf(3.0)))

    def shape_prior(self, shape: torch.Tensor) -> torch.Tensor:
        """Negative log prior of betas (S,) (scalar) or (N, S) (N,): standard normal, 0 at zero."""
        return 0.5 * (shape**2).sum(-1)

    def blend_coefficients(self, shape: torch.Tensor) -> torch.Tensor:
        """The blend coefficients are the betas themselves: (S,) or (N, S)."""
        return shape

    def blend_basis(self, vertex_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Template and shape directions at ``vertex_ids`` (N,), joint template and joint shape directions:
        v0 (N, 3), vdirs (S, N, 3), j0 (J, 3), jdirs (S, J, 3)."""
        vdirs = self._shapedirs[vertex_ids].permute(2, 0, 1)  # (S, N, 3)
        return self._v_template[vertex_ids], vdirs, self._j_template, self._j_shapedirs.permute(2, 0, 1)

    def rest_vertices_torch(self, shape: torch.Tensor, vertex_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(V', 3) rest vertices (all, or ``vertex_ids``) in the model's axes for betas (S,)."""
        if vertex_ids is None:
            return self._v_template + torch.einsum("vds,s->vd", self._shapedirs, shape)
        return self._v_template[vertex_ids] + torch.einsum("vds,s->vd", self._shapedirs[vertex_ids], shape)

    def rest_joints_torch(self, shape: torch.Tensor) -> torch.Tensor:
        """(J, 3) rest joint positions for betas (S,) (the joint regressor applied to the shape directions)."""
        return self._j_template + torch.einsum("jds,s->jd", self._j_shapedirs, shape)

    def pose_correctives_torch(self, rotmats: torch.Tensor, vertex_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, V', 3) pose-corrective vertex offsets for (B, J, 3, 3) local rotations."""
        feat = pose_feature(rotmats)  # (B, P)
        dirs = self._posedirs if vertex_ids is None else self._posedirs[:, vertex_ids]
        return torch.einsum("bp,pvd->bvd", feat, dirs)

    def rest_mesh_model_axes(self, shape: np.ndarray) -> np.ndarray:
        """(V, 3) rest vertices for betas (S,) in the model's own axes (numpy)."""
        with torch.no_grad():
            return self.rest_vertices_torch(self._tensor(shape)).double().numpy()

    # ---- smplx, for cross-checks and users who want its module
    def smplx_module(self):
        """The equivalent ``smplx`` module (SMPL and SMPL+H), built from the arrays via ``data_struct``."""
        import smplx
        from smplx.utils import Struct

        cls = {"smpl": smplx.SMPL, "smplh": smplx.SMPLH}.get(self.name)
        if cls is None:
            raise NotImplementedError(f"smplx_module: smplx {self.name.upper()} cannot take data_struct")
        return cls(
            model_path=str(self.source or "."),
            data_struct=Struct(**self._data),
            num_betas=self.num_shape,
            gender=self.gender,
            dtype=torch.float64,
        )


def load_smpl(model_dir: str | Path, kind: str = "smpl", gender: str = "neutral", num_betas: int = 10) -> SmplBody:
    """Find, safely read and wrap a user's SMPL-family model file (see :func:`smpl_model_path`)."""
    path = smpl_model_path(model_dir, kind, gender)
    logger.info("loading %s %s model from %s", kind.upper(), gender, path)
    data = load_model_file(path)
    return SmplBody(data, kind=kind, gender=gender, num_betas=num_betas, source=str(path))
