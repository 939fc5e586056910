"""The `posekit` command line: every option explains itself, defaults live in one place."""

from __future__ import annotations

import argparse

import pytest

from posekit.cli import COMMANDS, build_parser, parse_args


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_module_is_a_subcommand():
    names = set(_subcommands(build_parser()))
    assert len(names) == len(COMMANDS)
    assert {
        "summary",
        "convert",
        "train",
        "predict",
        "evaluate",
        "render",
        "export",
        "demo",
    } <= names


def test_every_argument_of_every_subcommand_has_help_that_states_its_default():
    parser = build_parser()
    missing, no_default = [], []
    for name, sub in _subcommands(parser).items():
        sub.format_help()  # a stray '%' in a help text fails here
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(label)
            elif (
                action.option_strings
                and action.default not in (None, False, argparse.SUPPRESS)
                and "%(default)s" not in action.help
            ):
                no_default.append(label)
    assert not missing, f"arguments without help: {missing}"
    assert not no_default, f"options whose help does not show %(default)s: {no_default}"


def test_commands_listed_with_a_summary():
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert all((choice.help or "").strip() for choice in action._choices_actions)


def test_defaults_are_the_library_constants():
    from posekit.export import DEFAULT_MAX_PEAKS, DEFAULT_OPSET
    from posekit.ops.peaks import DEFAULT_PEAK_THRESHOLD

    assert parse_args(["predict", "model", "video.mp4"]).peak_threshold == DEFAULT_PEAK_THRESHOLD
    args = parse_args(["export", "model"])
    assert args.peak_threshold == DEFAULT_PEAK_THRESHOLD
    assert args.max_peaks == DEFAULT_MAX_PEAKS and args.opset == DEFAULT_OPSET


@pytest.mark.parametrize(
    "argv",
    [
        ["render", "pred.slp", "--frames", "0-9", "extra.slp"],  # no loose tokens here
        ["train", "job.yaml", "--labels", "x.slp", "--epocs", "3"],  # unknown option
    ],
)
def test_leftover_tokens_are_argparse_errors_elsewhere(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in _subcommands(build_parser()))


def test_the_command_line_starts_without_torch():
    """`posekit --help` and argument errors stay instant: no torch until a command runs."""
    import subprocess
    import sys

    code = "import sys, posekit.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
