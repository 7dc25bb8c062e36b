"""Body measurements from a rest-pose mesh, for virtual try-on, defined after ISO 8559-1.

The mesh stands in the world frame (Z up, facing -Y, left +X, feet at Z = 0; ``BodyModel.rest_mesh``), in
the model's rest pose (an A-pose for Anny: arms down and away from the trunk). Each measurement is what a
tailor's tape or anthropometer gives, taken at landmarks found on the mesh itself (``DEFINITIONS`` says how):

- a girth is the perimeter of the convex hull of the body's cross-section (the piece around the body part)
  in the plane the standard sets: horizontal for the trunk and thigh, perpendicular to the neck's axis for
  the neck. A tape bridges hollows, so the convex hull is the tape's path. The arms are left out of trunk
  sections (the skinning weights tell arm from trunk), as a tailor has the subject lift them.
- landmarks come from the surface: the crotch is the highest level at which the legs are apart (found by
  bisection), the armpits the highest level at which the trunk's section takes in none of the arms (so an
  A-pose and a T-pose give the same armpits), the bust points the
  most anterior points of the chest between armpit and waist, the buttocks' fullest point the most posterior
  point between crotch and waist, the natural waist the narrowest level between them, the acromion the top
  of the shoulder straight above the shoulder joint. Extreme levels are found by bounded Brent searches, so
  that a measurement changes smoothly with the body's shape (the uncertainty module differentiates it).

ISO 8559-1:2017 (Size designation of clothes, anthropometric definitions for body measurement) was not at
hand here: the definitions follow its measurement names and the wording of its landmark descriptions as
commonly cited; the clause numbers are not quoted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull


@dataclass(frozen=True)
class Definition:
    """How one measurement is taken: ``iso_name`` (the measurement's name in ISO 8559-1), ``kind``
    ("girth", "length" or "breadth") and ``landmarks`` (how the mesh gives the landmarks and the tape's path)."""

    iso_name: str
    kind: str
    landmarks: str


DEFINITIONS: dict[str, Definition] = {
    "height": Definition("stature (body height)", "length",
                         "vertical distance from the floor (the soles) to the top of the head (vertex)"),
    "chest_circumference": Definition(
        "bust girth (chest girth)", "girth",
        "horizontal girth at the bust points (nipple line): the level between the armpits and the natural waist "
        "at which the chest reaches furthest forward; arms left out"),
    "waist_circumference": Definition(
        "waist girth (natural waist)", "girth",
        "horizontal girth at the natural waist: the narrowest level of the trunk between the buttocks' fullest "
        "point and the bust points; arms left out"),
    "hip_circumference": Definition(
        "hip girth", "girth",
        "horizontal girth at the buttocks' fullest point: the level between crotch and natural waist at which the "
        "buttocks reach furthest back; arms left out"),
    "thigh_circumference": Definition(
        "thigh girth", "girth",
        "horizontal girth of the thigh at its highest part, 2 cm below the crotch (mean of left and right)"),
    "neck_circumference": Definition(
        "neck girth", "girth",
        "girth of the neck perpendicular to its axis (neck joint to head joint), at its narrowest between the "
        "base of the neck and the head (just below the larynx)"),
    "upper_arm_circumference": Definition(
        "upper arm girth", "girth",
        "girth of the left upper arm perpendicular to its axis (shoulder joint to elbow joint), midway between the "
        "acromion and the elbow"),
    "inseam": Definition("inside leg length", "length", "vertical distance from the crotch to the floor"),
    "shoulder_width": Definition(
        "biacromial shoulder breadth", "breadth",
        "horizontal distance between the acromia, each the top of the shoulder straight above the shoulder joint"),
    "arm_length": Definition(
        "arm length", "length",
        "from the acromion to the elbow joint to the wrist joint (left arm; in the rest pose the arm is straight, "
        "not bent as the standard has it)"),
}
"""How each measurement of :class:`Measurements` is taken (keyed by its field name)."""


@dataclass(frozen=True)
class Measurements:
    """Metres, in the order and with the meaning of :data:`DEFINITIONS` (height: floor to top of head;
    *_circumference: tape around the body part (upper arm: the left one); inseam: crotch to floor;
    shoulder_width: acromion to acromion; arm_length: acromion over the elbow to the wrist)."""

    height: float
    chest_circumference: float
    waist_circumference: float
    hip_circumference: float
    thigh_circumference: float
    neck_circumference: float
    upper_arm_circumference: float
    inseam: float
    shoulder_width: float
    arm_length: float

    def to_json(self) -> dict:
        """The measurements as a JSON-ready dict, metres rounded to 0.1 mm, with ``units``."""
        return {"units": "m", **{k: round(float(v), 4) for k, v in asdict(self).items()}}

    def as_array(self) -> np.ndarray:
        """(M,) the values in field order (metres)."""
        return np.array([getattr(self, f.name) for f in fields(self)], dtype=float)


TRUST_LIMITS_M = {"girth": 0.010, "length": 0.005, "breadth": 0.005}
"""A measurement is trustworthy when its sigma is at most this (metres): a girth within a centimetre (what
a try-on tool can size by), a length or breadth within 5 mm."""


def trust(name: str, sigma_m: float) -> tuple[bool, str]:
    """Whether a measurement with this sigma is trustworthy, and why not (empty when it is)."""
    limit = TRUST_LIMITS_M[DEFINITIONS[name].kind]
    if not np.isfinite(sigma_m):
        return False, "no uncertainty could be computed"
    if sigma_m > limit:
        return False, (f"sigma {1000 * sigma_m:.0f} mm is over {1000 * limit:.0f} mm for a {DEFINITIONS[name].kind}: the "
                       "keypoints tell this little about the body's shape here")
    return True, ""


MEASUREMENT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Measurements))
"""The field names of :class:`Measurements`, in order."""


# ---------------------------------------------------------------------------------------------------
# sections


def _check_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vertices, dtype=float)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {f.shape}")
    return v, f


def slice_pieces(vertices: np.ndarray, faces: np.ndarray, z: float, flags: np.ndarray | None = None):  # noqa: ANN201
    """Points (n_i, 2) of each connected piece of the mesh's cross-section by the plane Z = ``z``.

    vertices (V, 3), faces (F, 3). With ``flags`` (V,) bool, also each piece's share of points on edges between
    flagged vertices: (pieces, shares (P,)).
    """
    v, f = _check_mesh(vertices, faces)
    above = v[:, 2] > z
    fa = above[f]
    crossing = f[(fa.any(1)) & (~fa.all(1))]
    if len(crossing) == 0:
        return [] if flags is None else ([], np.zeros(0))
    # each crossing triangle has two cut edges and links them: connected pieces by union-find over edges
    tri_edges = np.sort(np.stack([crossing[:, [0, 1]], crossing[:, [1, 2]], crossing[:, [2, 0]]], 1), axis=2)
    tri_cut = above[tri_edges[..., 0]] != above[tri_edges[..., 1]]
    cut_edges = tri_edges[tri_cut].reshape(-1, 2, 2)  # (n_tri, 2 cut edges, 2 vertex ids)
    uniq, inv = np.unique(cut_edges.reshape(-1, 2), axis=0, return_inverse=True)
    pairs = inv.reshape(-1, 2)
    n = len(uniq)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    p0, p1 = v[uniq[:, 0]], v[uniq[:, 1]]
    s = (z - p0[:, 2]) / (p1[:, 2] - p0[:, 2])
    pts = p0[:, :2] + s[:, None] * (p1[:, :2] - p0[:, :2])
    pieces = [pts[labels == r] for r in np.unique(labels)]
    if flags is None:
        return pieces
    flagged = np.asarray(flags, dtype=bool)[uniq].all(1)
    return pieces, np.array([flagged[labels == r].mean() for r in np.unique(labels)])


def plane_pieces(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, normal: np.ndarray) -> list[np.ndarray]:
    """Points (n_i, 2) of each piece of the section by the plane through ``origin`` (3,) with ``normal`` (3,),
    in an orthonormal frame of the plane whose origin is ``origin``."""
    n = np.asarray(normal, dtype=float)
    n = n / np.linalg.norm(n)
    a = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    frame = np.stack([a, np.cross(n, a), n])  # rows: plane axes, then the normal
    local = (np.asarray(vertices, dtype=float) - np.asarray(origin, dtype=float)) @ frame.T
    return slice_pieces(local, faces, 0.0)


def convex_perimeter(points: np.ndarray) -> float:
    """Perimeter of the convex hull of 2D points (n, 2): the path of a tape around them."""
    if len(points) < 3:
        return 0.0
    hull = ConvexHull(points)
    ring = points[hull.vertices]
    return float(np.linalg.norm(ring - np.roll(ring, 1, axis=0), axis=1).sum())


def _nearest(pieces: list[np.ndarray], centre_xy: np.ndarray) -> np.ndarray:
    pieces = [p for p in pieces if len(p) >= 3]
    if not pieces:
        return np.zeros((0, 2))
    return min(pieces, key=lambda p: float(np.linalg.norm(p.mean(0) - centre_xy)))


def circumference_at(vertices, faces, z: float, centre_xy: np.ndarray) -> float:  # noqa: ANN001
    """Tape girth at height z of the horizontal section's piece nearest to ``centre_xy`` (2,)."""
    return convex_perimeter(_nearest(slice_pieces(vertices, faces, z), np.asarray(centre_xy, dtype=float)))


def _bisect(pred, lo: float, hi: float, tol: float = 1e-5) -> float:  # noqa: ANN001
    """The level between lo (pred False) and hi (pred True) where ``pred`` turns; pred must be monotone."""
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


ARGMAX_GRID = 24
"""Levels scanned before the Brent search for the bust and the buttocks (:func:`_argmax` with ``grid``): a trunk's
profile has several bumps, and a bounded Brent search alone could stop on a lower one (the chest girth jumped by
110 mm between shapes a few hundredths apart). The waist and neck searches (narrowest girths) are not scanned: a
level where the section is cut short would pass for the narrowest."""


def _argmax(fun, lo: float, hi: float, grid: bool = False) -> float:  # noqa: ANN001
    """The level in [lo, hi] where ``fun`` is largest (bounded Brent, 0.05 mm); with ``grid``, the Brent search
    runs between the neighbours of the best of ``ARGMAX_GRID`` levels (the global maximum, not any local one)."""
    if grid:
        zs = np.linspace(lo, hi, ARGMAX_GRID)
        i = int(np.argmax([fun(z) for z in zs]))
        lo, hi = zs[max(i - 1, 0)], zs[min(i + 1, len(zs) - 1)]
    return float(minimize_scalar(lambda z: -fun(z), bounds=(lo, hi), method="bounded", options={"xatol": 5e-5}).x)


def ray_down(vertices: np.ndarray, faces: np.ndarray, xy: np.ndarray) -> float:
    """Z of the highest point of the mesh straight above or below ``xy`` (2,); NaN when the vertical line misses it."""
    v, f = _check_mesh(vertices, faces)
    tri = v[f]  # (F, 3, 3)
    a, b, c = tri[:, 0, :2], tri[:, 1, :2], tri[:, 2, :2]
    p = np.asarray(xy, dtype=float)
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    ok = np.abs(den) > 1e-15
    den = np.where(ok, den, 1.0)
    w0 = ((b[:, 1] - c[:, 1]) * (p[0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (p[1] - c[:, 1])) / den
    w1 = ((c[:, 1] - a[:, 1]) * (p[0] - c[:, 0]) + (a[:, 0] - c[:, 0]) * (p[1] - c[:, 1])) / den
    w2 = 1 - w0 - w1
    inside = ok & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    if not inside.any():
        return float("nan")
    z = w0 * tri[:, 0, 2] + w1 * tri[:, 1, 2] + w2 * tri[:, 2, 2]
    return float(z[inside].max())


# ---------------------------------------------------------------------------------------------------
# landmarks and measurements


@dataclass(frozen=True)
class Landmarks:
    """Levels (Z, metres) and points (3,) found on the mesh: floor, crotch, armpit, bust, waist, hip (buttocks'
    fullest), neck (the girth's plane origin on the neck axis), acromion left/right."""

    floor: float
    crotch: float
    armpit: float
    bust: float
    waist: float
    hip: float
    neck_point: np.ndarray
    acromion_left: np.ndarray
    acromion_right: np.ndarray


JOINTS_NEEDED = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "neck", "head", "left_shoulder",
                 "right_shoulder", "left_elbow", "left_wrist")
"""Semantic (SMPL-24 named) joints :func:`measure` needs, at rest in the mesh's frame."""


def _landmarks(v: np.ndarray, faces: np.ndarray, trunk_faces: np.ndarray, joints: dict[str, np.ndarray], arm: np.ndarray
               ) -> Landmarks:
    floor = float(v[:, 2].min())
    centre = joints["pelvis"][:2]
    hip_z = 0.5 * (joints["left_hip"][2] + joints["right_hip"][2])
    sh = 0.5 * (joints["left_shoulder"] + joints["right_shoulder"])
    knee_z = min(joints["left_knee"][2], joints["right_knee"][2])

    def legs_apart(z: float) -> bool:
        near = [p for p in slice_pieces(v, trunk_faces, z) if len(p) >= 3 and abs(p[:, 0].mean() - centre[0]) < 0.25]
        return len(near) >= 2 and min(p[:, 0].mean() for p in near) < centre[0] < max(p[:, 0].mean() for p in near)

    crotch = _bisect(lambda z: not legs_apart(z), knee_z, hip_z + 0.5 * (sh[2] - hip_z))

    def arms_joined(z: float) -> bool:  # the trunk's section takes in some of the arms: above the armpits
        pieces, arm_share = slice_pieces(v, faces, z, arm)
        near = [i for i, p in enumerate(pieces) if len(p) >= 3]
        if not near:
            return False
        i = min(near, key=lambda i: float(np.linalg.norm(pieces[i].mean(0) - centre)))
        return arm_share[i] > 0.1

    # A-pose: the arms hang apart below the armpits; T-pose: the trunk's section meets the arms at their undersides
    armpit = _bisect(arms_joined, hip_z + 0.5 * (sh[2] - hip_z), sh[2])

    def front(z: float) -> float:  # how far forward the trunk reaches at z (the body faces -Y)
        p = _nearest(slice_pieces(v, trunk_faces, z), centre)
        return float(-p[:, 1].min()) if len(p) else -np.inf

    def back(z: float) -> float:
        p = _nearest(slice_pieces(v, trunk_faces, z), centre)
        return float(p[:, 1].max()) if len(p) else -np.inf

    span = armpit - crotch
    bust = _argmax(front, armpit - 0.35 * span, armpit - 0.02 * span, grid=True)
    hip = _argmax(back, crotch + 0.02 * span, crotch + 0.45 * span, grid=True)
    waist = _argmax(lambda z: -circumference_at(v, trunk_faces, z, centre), hip + 0.1 * (bust - hip), bust - 0.2 * (bust - hip))
    axis = joints["head"] - joints["neck"]

    def neck_girth(s: float) -> float:
        origin = joints["neck"] + s * axis
        return convex_perimeter(_nearest(plane_pieces(v, faces, origin, axis), np.zeros(2)))

    s_neck = _argmax(lambda s: -neck_girth(s), 0.1, 0.7)
    acromia = []
    for side in ("left_shoulder", "right_shoulder"):
        j = joints[side]
        acromia.append(np.array([j[0], j[1], ray_down(v, faces, j[:2])]))
    return Landmarks(floor, crotch, armpit, bust, waist, hip, joints["neck"] + s_neck * axis, *acromia)


def measure(vertices: np.ndarray, faces: np.ndarray, joints: dict[str, np.ndarray], arm_vertices: np.ndarray
            ) -> tuple[Measurements, Landmarks]:
    """Measurements of a rest mesh (V, 3) with faces (F, 3), its rest joints (``JOINTS_NEEDED``, name -> (3,)) and
    which vertices belong to the arms (V,) bool; and the landmarks they were taken at. See :data:`DEFINITIONS`."""
    v, f = _check_mesh(vertices, faces)
    arm = np.asarray(arm_vertices, dtype=bool)
    if arm.shape != (len(v),):
        raise ValueError(f"arm_vertices must have shape ({len(v)},), got {arm.shape}")
    missing = [n for n in JOINTS_NEEDED if n not in joints]
    if missing:
        raise ValueError(f"joints lack {missing}; measure needs {JOINTS_NEEDED}")
    kp = {k: np.asarray(x, dtype=float) for k, x in joints.items()}
    trunk = f[~arm[f].any(1)]
    lm = _landmarks(v, f, trunk, kp, arm)
    centre = kp["pelvis"][:2]
    axis = kp["head"] - kp["neck"]
    thighs = [circumference_at(v, trunk, lm.crotch - 0.02, kp[f"{s}_hip"][:2] + 0.3 * (kp[f"{s}_knee"][:2] - kp[f"{s}_hip"][:2]))
              for s in ("left", "right")]
    meas = Measurements(
        height=float(v[:, 2].max() - lm.floor),
        chest_circumference=circumference_at(v, trunk, lm.bust, centre),
        waist_circumference=circumference_at(v, trunk, lm.waist, centre),
        hip_circumference=circumference_at(v, trunk, lm.hip, centre),
        thigh_circumference=float(np.mean(thighs)),
        neck_circumference=convex_perimeter(_nearest(plane_pieces(v, f, lm.neck_point, axis), np.zeros(2))),
        upper_arm_circumference=_upper_arm_girth(v, f[arm[f].all(1)], kp, lm),
        inseam=float(lm.crotch - lm.floor),
        shoulder_width=float(np.linalg.norm(lm.acromion_left[:2] - lm.acromion_right[:2])),
        arm_length=float(np.linalg.norm(kp["left_elbow"] - lm.acromion_left)
                         + np.linalg.norm(kp["left_wrist"] - kp["left_elbow"])),
    )
    return meas, lm


def _upper_arm_girth(v: np.ndarray, arm_faces: np.ndarray, kp: dict[str, np.ndarray], lm: Landmarks) -> float:
    """Girth of the left upper arm (its faces only, so the plane cannot catch the trunk near the armpit)."""
    axis = kp["left_elbow"] - kp["left_shoulder"]
    mid = 0.5 * (lm.acromion_left + kp["left_elbow"])
    origin = kp["left_shoulder"] + axis * float(np.dot(mid - kp["left_shoulder"], axis) / np.dot(axis, axis))
    return convex_perimeter(_nearest(plane_pieces(v, arm_faces, origin, axis), np.zeros(2)))


def rest_joints(model, shape: np.ndarray) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Semantic joints (name -> (3,)) of ``model`` at rest for ``shape`` (S,), in the frame of ``model.rest_mesh``."""
    import torch

    with torch.no_grad():
        s = torch.as_tensor(np.asarray(shape, float), dtype=model.dtype)
        raw_v = model.rest_vertices_torch(s, torch.as_tensor([0])).double().numpy()
        raw_j = model.rest_joints_torch(s).double().numpy()
    rest0 = model.rest_mesh(shape)[0]
    shift = rest0 - raw_v[0] @ model.model_to_world_rest.T
    up = raw_j @ model.model_to_world_rest.T + shift
    return {name: up[j] for name, j in model.semantic_joints.items()}


def arm_vertices(model) -> np.ndarray:  # noqa: ANN001
    """(V,) bool: the vertices skinned mostly to the arms (upper arm and below)."""
    return model.skinning_weights()[:, _arm_joints(model)].sum(1) > 0.5


def measure_body_landmarks(model, shape: np.ndarray) -> tuple[Measurements, Landmarks]:  # noqa: ANN001
    """Measurements of ``model`` (a BodyModel) with ``shape`` (S,) in its rest pose, and their landmarks."""
    cache = model.__dict__.setdefault("_measure_arm_cache", {})
    if "arm" not in cache:
        cache["arm"] = arm_vertices(model)
    return measure(model.rest_mesh(shape), model.faces, rest_joints(model, shape), cache["arm"])


def measure_body(model, shape: np.ndarray) -> Measurements:  # noqa: ANN001
    """Measurements of ``model`` (a BodyModel) with ``shape`` (S,) in its rest pose."""
    return measure_body_landmarks(model, shape)[0]


def read_measurements(doc: dict) -> dict[str, dict]:
    """The measurements of a measurements.json document, old (flat: name -> metres, ``units``) or version 2, as
    name -> {"value": metres, "sigma": metres or None, "trustworthy": bool or None, "reason": str, "definition": str}."""
    if not isinstance(doc, dict):
        raise ValueError("a measurements document must be a JSON object")
    if isinstance(doc.get("measurements"), dict):
        out = {}
        for name, m in doc["measurements"].items():
            scale = 0.001 if m.get("unit", doc.get("units", "m")) == "mm" else 1.0
            sigma = m.get("sigma")
            out[name] = {"value": float(m["value"]) * scale, "sigma": None if sigma is None else float(sigma) * scale,
                         "trustworthy": m.get("trustworthy"), "reason": m.get("reason", ""),
                         "definition": m.get("definition", "")}
        return out
    scale = 0.001 if doc.get("units", "m") == "mm" else 1.0
    return {k: {"value": float(v) * scale, "sigma": None, "trustworthy": None, "reason": "", "definition": ""}
            for k, v in doc.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _arm_joints(model) -> np.ndarray:  # noqa: ANN001
    """(J,) bool: the shoulder (upper arm) joints and every joint below them."""
    from mocap_studio.reconstruction.body.lbs import subtree

    return subtree(model.parents, [model.semantic_joints["left_shoulder"], model.semantic_joints["right_shoulder"]])
