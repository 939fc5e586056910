"""`posekit configs`: the configs `train` takes by name, one line each."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        "configs", help="list the configs `posekit train NAME` takes: SLEAP's profiles and more"
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from posekit.config.job import shipped_configs
    from posekit.config.profiles import PROFILES

    table = Table(title="Configs by name (posekit train NAME --labels LABELS)")
    table.add_column("name")
    table.add_column("what it trains")
    for name, (line, _) in sorted(PROFILES.items()):
        table.add_row(name, f"SLEAP profile: {line}")
    for name, path in sorted(shipped_configs().items()):
        first = path.read_text().splitlines()[0].lstrip("# ").strip() if path.exists() else ""
        table.add_row(name, f"posekit: {first}")
    Console().print(table)
    return 0
