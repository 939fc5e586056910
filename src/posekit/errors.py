"""One exception type for mistakes a user can fix (bad config, missing file, ...).

The CLI prints these as a single line; everything else is a bug and keeps its traceback.
"""


class PosekitError(ValueError):
    """A problem with the user's input, stated with what to do about it."""
