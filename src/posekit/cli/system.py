"""`posekit system`: this machine and installation, for bug reports and for choosing
settings (`posekit.system_report`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "system",
        help="posekit, Python, torch, GPUs, CPU capabilities (bf16), threads and extras: "
        "paste it into bug reports",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON, not text")
    return p


def _value(v, missing: str = "n/a") -> str:
    if v is None:
        return missing
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ", ".join(map(str, v)) if v else "none"
    return str(v)


def format_report(report: dict) -> str:
    """The report as indented text, one ``key: value`` per line."""
    lines = []
    for section in ("posekit", "python", "os", "torch", "cpu", "threads", "libraries"):
        lines.append(f"{section}:")
        for key, value in report[section].items():
            if key == "cuda_devices":
                for d in value:
                    lines.append(
                        f"  cuda:{d['index']}: {d['name']} (compute {d['capability']}, "
                        f"{d['memory_gib']} GiB)"
                    )
                continue
            missing = "not set" if section == "threads" else "n/a"
            lines.append(f"  {key}: {_value(value, missing)}")
    lines.append("extras:")
    for extra, info in report["extras"].items():
        packages = ", ".join(
            f"{dist} {p['version']}" if p["importable"] else f"{dist} missing"
            for dist, p in info["packages"].items()
        )
        lines.append(f"  {extra}: {'installed' if info['installed'] else 'no'} ({packages})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from posekit.model.system import system_report

    report = system_report()
    if args.json:
        import json

        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0
