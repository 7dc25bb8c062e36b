"""Read SMPL-family model files without chumpy and without running anything they contain.

The official ``.pkl`` files are Python 2 pickles holding numpy arrays, a scipy sparse joint regressor and
chumpy objects (chumpy does not work on Python 3.11). Unpickling calls whatever the file names, so
:func:`load_model_file` uses a restricted unpickler that admits only what those files contain:

- numpy arrays, dtypes and scalars (under their Python 2 and numpy 2 module paths);
- scipy sparse matrices, read as plain attribute records and rebuilt as ``scipy.sparse.csc_matrix``;
- chumpy objects (any class under ``chumpy.``), read as attribute records and replaced by their value
  array (``x``);
- the object-building helpers pickle itself uses (``copy_reg._reconstructor``, ``__builtin__.object``,
  ``_codecs.encode``) and ``set`` / ``frozenset`` (chumpy's bookkeeping).

Any other global (``os.system``, ``builtins.eval``, ...) stops the load with :class:`UnsafeModelFileError`
before it is called. ``.npz`` files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import codecs
import copyreg
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse


class UnsafeModelFileError(pickle.UnpicklingError):
    """The file names something an SMPL model file never contains; nothing from it was run."""


class _Record:
    """Stands in for a chumpy or scipy sparse object while unpickling: keeps its pickled state only."""

    _kind = "record"
    _source = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}
        self._state = state if isinstance(state, dict) else {"state": state}


def _record_class(kind: str, module: str, name: str) -> type:
    return type(name, (_Record,), {"_kind": kind, "_source": f"{module}.{name}"})


def _numpy_global(module: str, name: str) -> Any:
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        from numpy._core import multiarray

        return getattr(multiarray, name)
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
        from numpy._core import numeric

        return numeric._frombuffer
    if module == "numpy.dtypes" and name.endswith("DType"):
        import numpy.dtypes

        return getattr(numpy.dtypes, name)
    return None


_BUILTINS = {
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("_codecs", "encode"): codecs.encode,
    # chumpy objects keep bookkeeping sets in their state
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "frozenset"): frozenset,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str):
        super().__init__(file, encoding="latin1")
        self._source = source
        self._records: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _BUILTINS:
            return _BUILTINS[(module, name)]
        obj = _numpy_global(module, name)
        if obj is not None:
            return obj
        if module == "chumpy" or module.startswith("chumpy."):
            kind = "chumpy"
        elif module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix", "coo_matrix"):
            kind = "sparse"
        else:
            raise UnsafeModelFileError(
                f"{self._source}: refuses to load '{module}.{name}': an SMPL model file holds only numpy "
                "arrays, scipy sparse matrices and chumpy arrays; this file is not one "
                "(nothing in it was run)"
            )
        key = (module, name)
        if key not in self._records:
            self._records[key] = _record_class(kind, module, name)
        return self._records[key]


def _sparse_from_record(rec: _Record, where: str) -> scipy.sparse.csc_matrix:
    st = rec._state
    shape = st.get("_shape", st.get("shape"))
    try:
        data, indices, indptr = (np.asarray(st[k]) for k in ("data", "indices", "indptr"))
    except KeyError as e:
        raise ValueError(f"{where}: sparse matrix without {e.args[0]!r}") from e
    if rec._source.endswith("csr_matrix"):
        return scipy.sparse.csr_matrix((data, indices, indptr), shape=shape).tocsc()
    return scipy.sparse.csc_matrix((data, indices, indptr), shape=shape)


def _plain(obj: Any, where: str) -> Any:
    """Replace records by arrays / sparse matrices, recursively through dicts, lists and tuples."""
    if isinstance(obj, _Record):
        if obj._kind == "sparse":
            return _sparse_from_record(obj, where)
        state = getattr(obj, "_state", {})
        if "x" not in state:
            raise ValueError(f"{where}: chumpy object {obj._source} has no value array; re-export the model without chumpy")
        return np.asarray(_plain(state["x"], where))
    if isinstance(obj, dict):
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v, where) for v in obj)
    return obj


def load_model_file(path: str | Path) -> dict[str, Any]:
    """The arrays of an SMPL / SMPL+H / SMPL-X model file (``.pkl`` or ``.npz``) as a dict.

    Chumpy arrays become numpy arrays, sparse regressors ``scipy.sparse.csc_matrix``. Raises
    :class:`UnsafeModelFileError` for a pickle that names anything else, ``ValueError`` for a file that is
    not a model file.
    """
    path = Path(path)
    if path.suffix == ".npz":
        out: dict[str, Any] = {}
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                try:
                    out[key] = data[key]
                except ValueError:  # object arrays (metadata) need pickle: skipped on purpose
                    continue
        return out
    with open(path, "rb") as fh:
        try:
            raw = _RestrictedUnpickler(fh, str(path)).load()
        except UnsafeModelFileError:
            raise
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: not a readable SMPL model file ({e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a dict of model arrays, found {type(raw).__name__}")
    return _plain(raw, str(path))
