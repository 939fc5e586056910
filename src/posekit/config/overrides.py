"""`key.path=value` config overrides, as given on the command line.

Values are read as YAML scalars (or flow collections), so ``epochs=5`` is an int,
``initial_learning_rate=1e-3`` a float (also without YAML 1.1's required dot), ``run_name=null`` None, ``rotate=true`` a bool and
``part_names=[head,tail]`` a list. The overridden tree is validated again as a whole, so a
misspelt key or a bad value fails with the config classes' own message (the dotted path,
what is allowed and, for names, the closest spelling).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from posekit.errors import PosekitError


def parse_value(text: str) -> Any:
    """A command-line value as YAML would read it (plain strings stay strings)."""
    import yaml

    if text.strip() == "":
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        # PyYAML follows YAML 1.1, where "1e-3" (no dot) is a string; users mean a number.
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["a.b=1", ...]`` (or a mapping, passed through) -> ``{"a.b": 1, ...}``."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise PosekitError(
                f"config override {item!r} is not of the form key.path=value "
                f"(e.g. optimization.epochs=50)"
            )
        out[key] = parse_value(value)
    return out


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree[a][b][c] = value`` for ``key = "a.b.c"``, creating empty sections."""
    parts = key.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise PosekitError(
                f"config override {key}: {where} is a value ({child!r}), not a section, so "
                f"it has no field {parts[i + 1]!r}"
            )
        node = child
    node[parts[-1]] = value


def apply_overrides(config: Any, overrides: Iterable[str] | Mapping[str, Any] | None):
    """A new `TrainingJobConfig` with `overrides` applied (the input is not changed)."""
    from pydantic import ValidationError

    from posekit.config.base import format_validation_error

    pairs = parse_overrides(overrides)
    if not pairs:
        return config.model_copy(deep=True)
    tree = config.model_dump(mode="json")
    for key, value in pairs.items():
        set_dotted(tree, key, value)
    try:
        new = type(config).model_validate(tree)
    except ValidationError as err:
        names = ", ".join(pairs)
        raise PosekitError(format_validation_error(err, f"the config overrides ({names})")) from err
    # What the config's source said that no field holds (a sleap-nn config's unused
    # settings) stays with it.
    new.__pydantic_private__ = dict(getattr(config, "__pydantic_private__", None) or {})
    return new


def config_differences(before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """``(key.path, before, after)`` for every leaf value that differs, in field order."""

    def leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(tree, dict):
            return {prefix: tree}
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return out

    a = leaves(before.model_dump(mode="json"))
    b = leaves(after.model_dump(mode="json"))
    return [(k, a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


__all__ = [
    "apply_overrides",
    "config_differences",
    "parse_overrides",
    "parse_value",
    "set_dotted",
]
