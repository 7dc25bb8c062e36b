"""Anny, the open default body model (code Apache-2.0, MakeHuman data CC0), behind :class:`BodyModel`.

Shape: Anny's 6 phenotype parameters (gender, age, muscle, weight, height, proportions), each in
[0, 1]. Pose: one local rotation per bone (104 bones) in SMPL's convention (see ``lbs.py``); Anny's own
bone orientations only set its rig's parameterisation, so they are not needed to skin. Native axes:
Z up, facing -Y, left +X, metres; the root bone sits at the pelvis.

The first construction builds Anny's data cache (about 35 s, ~790 MB) in the project cache folder;
later ones load it in well under a second.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import torch
from mocap_studio.common.cache import anny_cache_dir, configure_anny_environment, file_lock, progress_while
from mocap_studio.reconstruction.body.model import SkinnedBodyModel
from mocap_studio.reconstruction.body.regressors import ANNY_LANDMARKS_PATH, LandmarkSet

logger = logging.getLogger(__name__)

# Anny bone -> SMPL-24 joint name (the shared joint vocabulary).
ANNY_SEMANTIC_BONES: dict[str, str] = {
    "pelvis": "root",
    "left_hip": "upperleg01.L",
    "right_hip": "upperleg01.R",
    "spine1": "spine04",
    "left_knee": "lowerleg01.L",
    "right_knee": "lowerleg01.R",
    "spine2": "spine03",
    "left_ankle": "foot.L",
    "right_ankle": "foot.R",
    "spine3": "spine01",
    "left_foot": "toe2-1.L",
    "right_foot": "toe2-1.R",
    "neck": "neck01",
    "left_collar": "clavicle.L",
    "right_collar": "clavicle.R",
    "head": "head",
    "left_shoulder": "upperarm01.L",
    "right_shoulder": "upperarm01.R",
    "left_elbow": "lowerarm01.L",
    "right_elbow": "lowerarm01.R",
    "left_wrist": "wrist.L",
    "right_wrist": "wrist.R",
    "left_hand": "finger3-1.L",
    "right_hand": "finger3-1.R",
}

# Bones that fitting moves; every other bone keeps its rest orientation relative to its parent.
ANNY_FREE_BONES: tuple[str, ...] = (
    "root", "spine04", "spine03", "spine02", "spine01", "neck01", "head",
    "clavicle.L", "upperarm01.L", "lowerarm01.L", "wrist.L",
    "clavicle.R", "upperarm01.R", "lowerarm01.R", "wrist.R",
    "upperleg01.L", "lowerleg01.L", "foot.L",
    "upperleg01.R", "lowerleg01.R", "foot.R",
)

ADULT_AGE = 0.75
_BUILD_LOCK = threading.Lock()
_ANNY_CORE: object | None = None


def anny_cache_ready() -> bool:
    """True when Anny's built data is already in the project cache."""
    return any(anny_cache_dir().glob("v*/build_compact_model_data_*.safetensors"))


def load_anny_core():
    """The ``anny.Anny`` module (default rig and topology, 6 phenotypes), built once per process and
    cached on disk in the project cache folder."""
    global _ANNY_CORE
    with _BUILD_LOCK:
        if _ANNY_CORE is not None:
            return _ANNY_CORE
        configure_anny_environment()
        with file_lock("anny"):
            import anny

            if anny_cache_ready():
                core = anny.Anny()
            else:
                with progress_while(
                    f"Building the Anny body model cache in {anny_cache_dir()} (first run only: about 35-60 s and ~790 MB)",
                    expected_s=45.0,
                ):
                    core = anny.Anny()
        core.requires_grad_(False)
        _ANNY_CORE = core
        return core


class AnnyBody(SkinnedBodyModel):
    """Anny as a :class:`BodyModel` (see the module docstring)."""

    def __init__(self, landmarks_path: str | Path | None = ANNY_LANDMARKS_PATH, dtype: torch.dtype = torch.float32):
        core = load_anny_core()
        self._core = core
        self.dtype = dtype
        self.name = "anny"
        self.joint_names = tuple(core.bone_labels)
        self.parents = np.asarray(core.bone_parents, dtype=np.int64)
        self.faces = core.faces.detach().cpu().numpy().astype(np.int64)
        self.shape_names = tuple(core.phenotype_labels)
        self.model_to_world_rest = np.eye(3)
        index = {n: i for i, n in enumerate(self.joint_names)}
        self.semantic_joints = {sem: index[bone] for sem, bone in ANNY_SEMANTIC_BONES.items()}
        self.free_joints = tuple(index[b] for b in ANNY_FREE_BONES)
        # buffers as plain tensors in the fitting dtype
        self._template = core.template_vertices.detach().to(dtype)
        self._blendshapes = core.blendshapes.detach().to(dtype)  # (C, V, 3)
        self._bone_heads = core.template_bone_heads.detach().to(dtype)  # (J, 3)
        self._bone_head_shapes = core.bone_heads_blendshapes.detach().to(dtype)  # (C, J, 3)
        V, J = self._template.shape[0], len(self.joint_names)
        weights = torch.zeros(V, J, dtype=torch.float64)
        weights.scatter_add_(1, core.vertex_bone_indices.long(), core.vertex_bone_weights.double())
        self._weights = (weights / weights.sum(1, keepdim=True)).to(dtype)
        # None: geometry only (used while making the landmark file itself)
        self.landmarks = LandmarkSet.load(landmarks_path) if landmarks_path is not None else None  # type: ignore[assignment]
        self._finish_init()

    # ---- shape
    def default_shape(self) -> np.ndarray:
        """0.5 on every phenotype but age, 0.75: an adult (Anny's age 0.5 lies between child and young
        adult)."""
        shape = np.full(self.num_shape, 0.5)
        if "age" in self.shape_names:
            shape[self.shape_names.index("age")] = ADULT_AGE
        return shape

    def random_shape(self, rng: np.random.Generator, spread: float = 1.0) -> np.ndarray:
        """Adults: each phenotype uniform in default +- 0.3 * spread (age +- 0.12 * spread)."""
        return self.shape_from_unit(rng.uniform(0.0, 1.0, self.num_shape), spread)

    def shape_from_unit(self, unit: np.ndarray, spread: float = 1.0) -> np.ndarray:
        """The phenotypes at ``unit`` (S,) in the unit cube over default +- 0.3 * spread (age +- 0.12 * spread),
        clipped to [0, 1]."""
        half = np.full(self.num_shape, 0.3 * spread)
        if "age" in self.shape_names:
            half[self.shape_names.index("age")] = 0.12 * spread
        return np.clip(self.default_shape() + (2.0 * np.asarray(unit, dtype=float) - 1.0) * half, 0.0, 1.0)

    def shape_from_free(self, free: torch.Tensor) -> torch.Tensor:
        """Map unconstrained fitting variables (S,) to phenotypes (S,) in (0, 1) through a tanh."""
        return 0.5 + 0.5 * torch.tanh(free)

    def free_from_shape(self, shape: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`shape_from_free` (numpy), phenotypes clipped just inside (0, 1)."""
        s = np.clip(np.asarray(shape, dtype=float), 1e-4, 1 - 1e-4)
        return np.arctanh(2 * s - 1)

    def shape_prior(self, shape: torch.Tensor) -> torch.Tensor:
        # a broad prior around the default adult: one standard deviation is 0.25 on each phenotype
        """Negative log prior of shape (S,) (scalar) or (N, S) (N,): Gaussian around the default adult, 0.25 per phenotype."""
        centre = torch.as_tensor(self.default_shape(), dtype=shape.dtype)
        return (((shape - centre) / 0.25) ** 2).sum(-1) * 0.5

    def _coefficients(self, shape: torch.Tensor) -> torch.Tensor:
        pheno = shape.to(self._core.dtype).reshape(-1, shape.shape[-1])
        empty = pheno.new_zeros((1, 0))
        coeffs = self._core._get_phenotype_blendshape_coefficients(pheno, empty, empty).to(self.dtype)
        return coeffs.reshape(*shape.shape[:-1], coeffs.shape[-1])

    def blend_coefficients(self, shape: torch.Tensor) -> torch.Tensor:
        """(C,) phenotype blendshape coefficients for shape (S,) (or (N, C) for shapes (N, S)). Differentiable."""
        return self._coefficients(shape)

    def blend_basis(self, vertex_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Template and blendshapes at ``vertex_ids`` (N,), bone heads and their blendshapes:
        v0 (N, 3), vdirs (C, N, 3), j0 (J, 3), jdirs (C, J, 3)."""
        return self._template[vertex_ids], self._blendshapes[:, vertex_ids], self._bone_heads, self._bone_head_shapes

    def rest_vertices_torch(self, shape: torch.Tensor, vertex_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(V', 3) rest vertices (all, or ``vertex_ids``) in the model's axes for shape (S,)."""
        coeffs = self._coefficients(shape)
        if vertex_ids is None:
            return self._template + torch.einsum("c,cvd->vd", coeffs, self._blendshapes)
        return self._template[vertex_ids] + torch.einsum("c,cvd->vd", coeffs, self._blendshapes[:, vertex_ids])

    def rest_joints_torch(self, shape: torch.Tensor) -> torch.Tensor:
        """(J, 3) rest joint positions (bone heads) for shape (S,)."""
        coeffs = self._coefficients(shape)
        return self._bone_heads + torch.einsum("c,cjd->jd", coeffs, self._bone_head_shapes)
