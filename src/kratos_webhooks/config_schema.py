"""Turn parsed YAML into frozen dataclasses, collecting every problem with its path.

Each dataclass field maps to the YAML key of the same name, or to the key named in
its `metadata["key"]` where the YAML key is a Python keyword (`global`, `in`).
Fields with `metadata["internal"]` are never read from the document.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin

__all__ = ["INVALID", "convert", "yaml_key"]

Problems = list[tuple[str, str]]

INVALID: Any = object()


def yaml_key(field: dataclasses.Field[Any]) -> str:
    """Return the YAML key of a dataclass field."""
    key = field.metadata.get("key", field.name)
    return str(key)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"

    return f"{path}.{key}" if path else key


def convert(target: Any, value: Any, path: str, problems: Problems) -> Any:
    """Convert `value` to `target`, recording every problem with its key path.

    Returns a marker instead of the object when a key is missing or a value has
    the wrong type. Unknown keys are recorded and ignored, so the result may be
    built although `problems` is not empty: the caller must check both.
    """
    origin = get_origin(target)

    if dataclasses.is_dataclass(target) and isinstance(target, type):
        return _convert_dataclass(target, value, path, problems)

    if origin is Literal:
        return _convert_literal(get_args(target), value, path, problems)

    if origin in (types.UnionType, typing.Union):
        return _convert_optional(get_args(target), value, path, problems)

    if origin is tuple:
        return _convert_tuple(get_args(target)[0], value, path, problems)

    return _convert_scalar(target, value, path, problems)


def _convert_dataclass(
    target: type[Any], value: Any, path: str, problems: Problems
) -> Any:
    if not isinstance(value, dict):
        problems.append((path, "expected a mapping"))
        return INVALID

    hints = typing.get_type_hints(target)
    fields = [f for f in dataclasses.fields(target) if not f.metadata.get("internal")]
    known = {yaml_key(f) for f in fields}
    arguments: dict[str, Any] = {}
    failed = False

    # An unknown key is reported but does not stop the object from being
    # built, so that the value checks of its other keys still run.
    for key in value:
        if key not in known:
            problems.append((_join(path, str(key)), "unknown key"))

    for field in fields:
        key = yaml_key(field)
        field_path = _join(path, key)

        if key not in value:
            if _is_required(field):
                problems.append((field_path, "missing required key"))
                failed = True

            continue

        converted = convert(hints[field.name], value[key], field_path, problems)

        if converted is INVALID:
            failed = True
        else:
            arguments[field.name] = converted

    if failed:
        return INVALID

    return target(**arguments)


def _is_required(field: dataclasses.Field[Any]) -> bool:
    return (
        field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    )


def _convert_literal(
    choices: tuple[Any, ...], value: Any, path: str, problems: Problems
) -> Any:
    if value in choices and not isinstance(value, bool):
        return value

    # YAML reads 1.2 as a float; the version keys are written as strings.
    if isinstance(value, float) and str(value) in choices:
        return str(value)

    listed = ", ".join(repr(choice) for choice in choices)
    problems.append((path, f"expected one of {listed}, got {value!r}"))
    return INVALID


def _convert_optional(
    options: tuple[Any, ...], value: Any, path: str, problems: Problems
) -> Any:
    if value is None and type(None) in options:
        return None

    (inner,) = [option for option in options if option is not type(None)]
    return convert(inner, value, path, problems)


def _convert_tuple(item: Any, value: Any, path: str, problems: Problems) -> Any:
    if not isinstance(value, list):
        problems.append((path, "expected a list"))
        return INVALID

    items = [
        convert(item, entry, _join(path, index), problems)
        for index, entry in enumerate(value)
    ]

    if any(entry is INVALID for entry in items):
        return INVALID

    return tuple(items)


def _convert_scalar(target: Any, value: Any, path: str, problems: Problems) -> Any:
    if target is bool:
        if isinstance(value, bool):
            return value

        problems.append((path, f"expected true or false, got {value!r}"))
        return INVALID

    if target is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value

        problems.append((path, f"expected a whole number, got {value!r}"))
        return INVALID

    if target is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)

        problems.append((path, f"expected a number, got {value!r}"))
        return INVALID

    if target is str:
        if isinstance(value, str):
            return value

        problems.append((path, f"expected a string, got {value!r}"))
        return INVALID

    raise TypeError(f"no conversion for {target!r}")
