"""Checks shared by the config classes (strides, sigmas): one wording for every backbone."""

from __future__ import annotations


def _is_power_of_two(value: int) -> bool:
    return isinstance(value, int) and value >= 1 and (value & (value - 1)) == 0


def check_stride(name: str, value: int | None) -> int | None:
    """Strides must be powers of two: every down/upsampling step halves or doubles."""
    if value is None:
        return value
    if not _is_power_of_two(value):
        raise ValueError(f"{name}={value} is not a power of two; use one of 1, 2, 4, 8, 16, 32, 64")
    return value


def _check_output_vs_max(cls_name: str, output_stride: int, max_stride: int) -> None:
    if output_stride > max_stride:
        raise ValueError(
            f"{cls_name}: output_stride={output_stride} is larger than max_stride={max_stride}; "
            f"the decoder can only upsample, so output_stride must be <= max_stride"
        )


def _positive_sigma(value: float) -> float:
    """A Gaussian spread must be positive (its unit: see `_MapHeadConfig`)."""
    if not value > 0:
        raise ValueError(f"sigma={value} must be a positive number (e.g. 2.5)")
    return value
