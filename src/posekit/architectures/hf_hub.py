"""Hugging Face model files without `huggingface_hub` or `transformers`: where a model's
folder is (a local directory or the hub cache), its weights file, and the renaming
steps the families share: separate query / key / value -> timm's fused `qkv`, and rename
rules (Hugging Face pattern -> posekit name) read backwards for the way back to sleap-nn.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from posekit.errors import PosekitError


def _hub_cache() -> Path:
    """The Hugging Face hub cache, found the way `huggingface_hub` finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def hf_model_dir(model_name: str, revision: str | None = None) -> Path | None:
    """The local folder holding `model_name`'s files: the name itself when it is a
    directory, else its snapshot in the Hugging Face cache (`revision`, else `main`)."""
    if Path(model_name).is_dir():
        return Path(model_name)
    repo = _hub_cache() / ("models--" + model_name.replace("/", "--"))
    ref = revision or "main"
    if (repo / "refs" / ref).is_file():
        ref = (repo / "refs" / ref).read_text().strip()
    snapshot = repo / "snapshots" / ref
    return snapshot if snapshot.is_dir() else None


def read_hf_weights(model_name: str, revision: str | None = None) -> dict:
    """The weights of a Hugging Face model: `model.safetensors` (or `pytorch_model.bin`)
    in its local folder or the cache, else a download through `huggingface_hub` (timm's
    dependency). Keys as in the file."""
    folder = hf_model_dir(model_name, revision)
    files = [folder / n for n in ("model.safetensors", "pytorch_model.bin")] if folder else []
    path = next((f for f in files if f.is_file()), None)
    if path is None:
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(model_name, "model.safetensors", revision=revision)
        except Exception as err:  # network, cache and missing-package failures
            raise PosekitError(
                f"could not fetch the weights of {model_name} ({type(err).__name__}: "
                f"{str(err)[:200]}); without network, put model.safetensors beside its "
                f"config.json in a folder and use that folder as model_name, or set "
                f"weights: false"
            ) from err
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def stack_qkv(qkv: Mapping[str, list], out: dict, unknown: list) -> None:
    """Hugging Face's separate query / key / value tensors (`qkv[timm_key] = [q, k, v]`)
    stacked into timm's fused `qkv` in `out`; a triple missing a part goes to `unknown`."""
    for key, parts in qkv.items():
        if any(p is None for p in parts):
            unknown.append(key)
        else:
            out[key] = torch.cat(parts, dim=0)


def invert_rules(rules: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Rename rules `(Hugging Face pattern, posekit replacement)` read backwards, as
    `(posekit pattern, Hugging Face replacement)`. The rules' groups are digit runs
    (`(\\d+)`, `(\\d)`), so each `\\N` of a replacement becomes a digit group named `gN`
    and the pattern's N-th group becomes `\\g<gN>`. One table then serves both ways."""
    out = []
    for pattern, repl in rules:
        whole = pattern.endswith("$")
        tokens = re.split(r"(\\\d)", repl)
        theirs = "".join(
            f"(?P<g{t[1]}>\\d+)" if re.fullmatch(r"\\\d", t) else re.escape(t) for t in tokens
        )
        groups = re.split(r"\(\\d\+?\)", pattern.removesuffix("$"))
        name = "".join(
            part + (f"\\g<g{i + 1}>" if i < len(groups) - 1 else "")
            for i, part in enumerate(groups)
        )
        out.append((theirs + ("$" if whole else ""), name.replace("\\.", ".")))
    return out


def rename_by_rules(name: str, rules: list[tuple[str, str]]) -> str | None:
    """`name` renamed by the first rule whose pattern matches its start, else None."""
    for pattern, repl in rules:
        new, hits = re.subn("^" + pattern, repl, name)
        if hits:
            return new
    return None


def split_qkv(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """timm's fused `qkv` weight or bias back into Hugging Face's query, key and value."""
    q, k, v = value.chunk(3, dim=0)
    return q.clone(), k.clone(), v.clone()


__all__ = [
    "hf_model_dir",
    "invert_rules",
    "read_hf_weights",
    "rename_by_rules",
    "split_qkv",
    "stack_qkv",
]
