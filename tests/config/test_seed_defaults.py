"""Every class, field and default of config/model.py against the seed's signatures.

The seed (`shared/seeds/config_model.txt`, SLEAP's documentation) prints each class as
`class sleap.nn.config.model.Name(field: type = default, ...)`. The signatures are parsed
here with `ast`, so the expected values come from the seed, not from posekit.
"""

from __future__ import annotations

import ast
import re

import pytest
from cfg_shared import SHARED

import posekit.config.model as model_module

SEED = SHARED / "seeds" / "config_model.txt"
_CLASS_LINE = re.compile(r"^class sleap\.nn\.config\.model\.(\w+)\((.*)\)\[source\]#$")


def _seed_signatures() -> dict[str, dict[str, object]]:
    """{class name: {field: default}}; NOTHING (an attrs factory) is kept as a marker."""
    if not SEED.is_file():
        return {}
    out = {}
    for line in SEED.read_text().splitlines():
        m = _CLASS_LINE.match(line.strip())
        if not m:
            continue
        name, params = m.groups()
        fn = ast.parse(f"def f({params}): pass").body[0]
        args = fn.args.args
        defaults = [None] * (len(args) - len(fn.args.defaults)) + fn.args.defaults
        fields = {}
        for arg, default in zip(args, defaults):
            if isinstance(default, ast.Name) and default.id == "NOTHING":
                fields[arg.arg] = "NOTHING"
            else:
                fields[arg.arg] = ast.literal_eval(default)
        out[name] = fields  # (*args, **kwargs) classes get {}
    return out


SIGNATURES = _seed_signatures()
WITH_FIELDS = {k: v for k, v in SIGNATURES.items() if v}


def test_seed_parsed():
    if not SEED.is_file():
        pytest.skip("seed not available")
    documented = [ln for ln in SEED.read_text().splitlines() if ln.startswith("class ")]
    assert len(SIGNATURES) == len(documented) >= 19  # every class the seed documents
    assert set(SIGNATURES) - set(WITH_FIELDS) == {"BackboneConfig", "HeadsConfig"}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_class_exists(name):
    assert isinstance(getattr(model_module, name), type)


#: posekit-only fields (last, default None, written only when set): a pose model's mask head.
POSEKIT_ONLY = {
    "SingleInstanceConfmapsHeadConfig": ["segmentation"],
    "CenteredInstanceConfmapsHeadConfig": ["segmentation"],
}


@pytest.mark.parametrize("name", sorted(WITH_FIELDS))
def test_fields_and_defaults_match_seed(name):
    cls = getattr(model_module, name)
    seed = WITH_FIELDS[name]
    extra = POSEKIT_ONLY.get(name, [])
    assert list(cls.model_fields) == list(seed) + extra  # same fields, same order
    assert all(cls.model_fields[f].default is None for f in extra)
    assert not set(extra) & set(cls().to_dict())
    for field, expected in seed.items():
        default = cls.model_fields[field].get_default(call_default_factory=True)
        if expected == "NOTHING":
            # An attrs factory: the default is a fresh default instance of the field's class.
            assert default == type(default)()
            assert isinstance(default, model_module.ConfigBase)
        else:
            assert default == expected, field
            assert type(default) is type(expected) or {type(default), type(expected)} <= {
                int,
                float,
            }, field


def test_oneof_classes_documented_fields_default_to_none():
    if not SEED.is_file():
        pytest.skip("seed not available")
    text = SEED.read_text()
    for name in ("BackboneConfig", "HeadsConfig"):
        block = text.split(f"model.{name}(", 1)[1].split("\nclass ", 1)[0]
        documented = re.findall(r"^(\w+)#$", block, flags=re.M)
        cls = getattr(model_module, name)
        assert documented and set(documented) <= set(cls.model_fields)
        assert all(getattr(cls(), f) is None for f in cls.model_fields)
