"""What several subcommands share: the shape argument type and the loose-token convention."""

from __future__ import annotations

import argparse

#: A command that accepts positional tokens written after its options sets this key (with
#: `parser.set_defaults`) to the name of the list positional they extend; `train` uses it
#: for its `key.path=value` overrides. See `posekit.cli.parse_args` for why it is needed.
LOOSE_TOKENS = "loose_tokens_go_to"


def parse_shape(text: str) -> tuple[int, ...]:
    """`--input-shape 256,256,1` -> (256, 256, 1); the library checks how many it needs."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected H,W,C integers, got {text!r}") from err
