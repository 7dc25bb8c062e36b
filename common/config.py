"""Typed configuration: one dataclass per stage, defaults only there, unknown keys rejected."""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or mapping that does not match its dataclass."""


def config_from_mapping(cls: type[T], mapping: dict[str, Any] | None, source: str = "config") -> T:
    """Build the dataclass ``cls`` from a mapping. Unknown keys are an error that lists the valid ones; a key the
    class names in its ``REMOVED_KEYS`` (a ClassVar mapping an older version's setting to what replaced it) is an
    error that says so.

    Nested dataclass fields take nested mappings; tuples are converted from lists.
    """
    mapping = dict(mapping or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - set(fields))
    removed = getattr(cls, "REMOVED_KEYS", {})
    for key in unknown:  # a setting an older version had: say what replaced it rather than the nearest name
        if key in removed:
            raise ConfigError(f"{source}: {key!r} is no longer a setting of {cls.__name__}: {removed[key]}; remove it")
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} for {cls.__name__}{hint} (valid keys: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in mapping.items():
        kwargs[name] = _coerce(hints.get(name), value, f"{source}: {name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {e}") from e


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if hint is None:
        return value
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return config_from_mapping(hint, value, where)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _coerce(args[0], value, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file with an error that names the file and the line."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the file or regenerate it") from e


def config_to_mapping(config: Any) -> dict[str, Any]:
    """The dataclass as a plain mapping (for reports and for writing back)."""
    return dataclasses.asdict(config)
