"""Shared behaviour of every posekit config class.

Configs are pydantic v2 models so that a wrong field, type or value is reported once,
with the field's path, the value given and what is allowed. SLEAP writes its configs
with cattrs; the field names here are SLEAP's so its JSON files load unchanged.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


class ConfigBase(BaseModel):
    """Base for all config sections: unknown fields are errors, assignment is validated."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        populate_by_name=True,
        protected_namespaces=(),
    )

    # Other spellings accepted on input (seed text vs. SLEAP's attribute names):
    # {"accepted_name": "field_name"}. The field name is what gets written.
    _aliases: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _check_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for alias, field in cls._aliases.items():
            if alias in data:
                value = data.pop(alias)
                if field in data and data[field] != value:
                    raise ValueError(
                        f"both '{alias}' and '{field}' are set ({value!r} vs {data[field]!r}); "
                        f"they are the same setting, keep only '{field}'"
                    )
                data[field] = value
        allowed = set(cls.model_fields)
        unknown = [k for k in data if k not in allowed]
        if unknown:
            msgs = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                msgs.append(f"unknown field '{key}'{hint}")
            raise ValueError(
                f"{cls.__name__}: {'; '.join(msgs)}. Allowed fields: {', '.join(sorted(allowed))}"
            )
        return data

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict with every field, SLEAP's spelling."""
        return self.model_dump(mode="json")


class OneOfConfig(ConfigBase):
    """A config in which at most one field may be set (SLEAP's `oneof` classes).

    None set is valid (e.g. a model config without heads); building something from it
    then asks for one.
    """

    @model_validator(mode="after")
    def _at_most_one(self) -> OneOfConfig:
        set_fields = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(set_fields) > 1:
            raise ValueError(
                f"{type(self).__name__} takes at most one of "
                f"{', '.join(type(self).model_fields)}; got {len(set_fields)}: "
                f"{', '.join(set_fields)}. Set all but one of them to null."
            )
        return self

    def which_oneof_attrib_name(self) -> str | None:
        """Name of the field that is set, or None."""
        for name in type(self).model_fields:
            if getattr(self, name) is not None:
                return name
        return None

    def which_oneof(self) -> Any:
        """The config object that is set, or None."""
        name = self.which_oneof_attrib_name()
        return None if name is None else getattr(self, name)

    def require_oneof(self) -> Any:
        """The config object that is set; a clear error when none is."""
        value = self.which_oneof()
        if value is None:
            raise ValueError(
                f"{type(self).__name__} has nothing set; set one of: "
                f"{', '.join(type(self).model_fields)}"
            )
        return value


def format_validation_error(err: ValidationError, source: str | None = None) -> str:
    """One readable message for a pydantic error: where, what, the value given.

    pydantic's own text adds documentation links and input types; a user editing a
    config file needs the dotted field path, the complaint and the offending value.
    Whole sections (dicts) are not echoed back, they are too long to be useful.
    """
    lines = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(part) for part in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        quiet = isinstance(value, dict | list) or f"={value!r}" in msg  # already said
        shown = "" if quiet else f" (got {value!r})"
        lines.append(f"{loc}: {msg}{shown}")
    head = f"invalid config{f' in {source}' if source else ''}"
    return head + ":\n  " + "\n  ".join(lines)
