"""Lazy package exports: `import posekit.x` stays cheap, names load on first use.

Each package maps its public names to the module that defines them and calls
`lazy_exports(__name__, mapping)` for its `__getattr__` / `__dir__`, so torch, Lightning
and sleap-io load only when something that needs them is touched.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package` that import `names[attr]` on demand.

    `names` maps a public name to the module defining it (absolute, or relative to
    `package` when it starts with a dot).
    """

    def __getattr__(attr: str) -> Any:
        module = names.get(attr)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        target = importlib.import_module(module, package if module.startswith(".") else None)
        value = getattr(target, attr)
        setattr(sys.modules[package], attr, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(names) | set(vars(sys.modules[package])))

    return __getattr__, __dir__
