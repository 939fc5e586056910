"""check_output_path: the one output check, with the suffixes each writer allows."""

from __future__ import annotations

import pytest

from posekit.errors import PosekitError
from posekit.io.outputs import check_output_path

SUFFIXES = (".slp", ".analysis.h5", ".csv")


@pytest.mark.parametrize("name", ["p.slp", "p.analysis.h5", "p.csv", "new/sub/p.slp"])
def test_allowed_names_pass_and_nothing_is_created(tmp_path, name):
    assert check_output_path(tmp_path / name, SUFFIXES) == tmp_path / name
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["p.h5", "p.txt", ".slp", "p.slp.bak"])
def test_other_suffixes_are_refused_with_the_allowed_ones(tmp_path, name):
    with pytest.raises(PosekitError, match=r"\.slp or \.analysis\.h5 or \.csv"):
        check_output_path(tmp_path / name, SUFFIXES)


def test_a_file_inside_an_input_folder_is_an_input(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "labels_gt.train.slp").write_bytes(b"x")
    with pytest.raises(PosekitError, match="is an input"):
        check_output_path(
            tmp_path / "model" / "labels_gt.train.slp", (".slp",), [tmp_path / "model"]
        )
    check_output_path(tmp_path / "model" / "new.slp", (".slp",), [tmp_path / "model"])
