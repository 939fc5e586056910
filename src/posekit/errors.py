"""One exception type for mistakes a user can fix (bad config, missing file, ...).

The CLI prints these as a single line; everything else is a bug and keeps its traceback.
"""


class PosekitError(ValueError):
    """A problem with the user's input, stated with what to do about it."""


def unknown_choice(field: str, value: object, allowed, what: str = "value") -> str:
    """Message for a name that is not one of `allowed`, with the closest match if any."""
    import difflib

    allowed = [str(a) for a in allowed]
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{field}={value!r} is not a known {what}{hint}; use one of {', '.join(allowed)}"
