"""The `posekit` command: parses arguments, calls the library, prints.

Each subcommand is one module here with `add_parser(subparsers)`, which declares its
arguments, their help and their defaults (the only place a command-line default is
written, taken from the library's constant where there is one), and `run(args) -> int`.
The modules import the library only inside `run`, so `posekit --help` is fast. Library
functions raise `PosekitError` for user mistakes; those are printed as one line with no
traceback, and the exit status is 2, as for argparse's own usage errors.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from posekit.cli import (
    configs,
    convert,
    demo,
    evaluate,
    export,
    filter,
    masks,
    predict,
    render,
    suggest,
    summary,
    system,
    track,
    train,
)
from posekit.cli.common import LOOSE_TOKENS
from posekit.errors import PosekitError

#: The subcommands, in the order `posekit --help` lists them.
COMMANDS = (
    summary,
    configs,
    convert,
    masks,
    train,
    predict,
    track,
    filter,
    suggest,
    evaluate,
    render,
    export,
    demo,
    system,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posekit", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers).set_defaults(
            run=command.run, interrupted=getattr(command, "INTERRUPTED", INTERRUPTED)
        )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a `posekit` command line into the namespace its command's `run` reads.

    argparse fills a command's positionals from the first run of positional tokens only,
    so one written after an option (`posekit train CONFIG --labels L optimization.epochs=5`)
    is left over. A command that takes such tokens names, under `LOOSE_TOKENS`, the list
    positional they extend; for any other command a leftover is argparse's usual
    "unrecognized arguments" error, as are unknown options everywhere.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    loose_dest = vars(args).pop(LOOSE_TOKENS, None)
    if extra and (loose_dest is None or any(token.startswith("-") for token in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        getattr(args, loose_dest).extend(extra)
    return args


#: Said after Ctrl-C by a command that does not say more (`INTERRUPTED` in its module).
INTERRUPTED = "files are written only once complete, so no half-written output was left"

#: Exit status after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """posekit's own warnings as one ``posekit: warning:`` line (the file and source
    line of a library warning mean nothing to someone running a command); others as
    Python prints them."""
    if "posekit" in str(filename).replace("\\", "/").split("/") and issubclass(
        category, UserWarning
    ):
        return f"posekit: warning: {message}\n"
    return _PYTHON_FORMAT(message, category, filename, lineno, line)


_PYTHON_FORMAT = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    """Run a command: 0 on success, 2 for a `PosekitError` (one line, no traceback), 130
    after Ctrl-C (one line saying what was or was not written)."""
    args = parse_args(argv)
    warnings.formatwarning = _format_warning
    try:
        return int(args.run(args) or 0)
    except PosekitError as err:
        print(f"posekit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        note = str(err) or getattr(args, "interrupted", INTERRUPTED)
        print(f"\nposekit: error: interrupted; {note}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        warnings.formatwarning = _PYTHON_FORMAT


if __name__ == "__main__":
    sys.exit(main())
