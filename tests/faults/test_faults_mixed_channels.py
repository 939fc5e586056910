"""A project that mixes an RGB camera and a grayscale one trains (frames converted to the
model's channels, one warning naming the videos), and a model predicts a video of the
other kind with the same warning."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.append(str(Path(__file__).resolve().parents[1] / "training"))

from _training_helpers import tiny_config  # noqa: E402


def _labels(folder: Path, channels: int, seed: int) -> Path:
    """One synthetic video of `channels` channels and its labels file."""
    import sleap_io as sio

    from posekit.data.synthetic import make_synthetic_labels

    name = "rgb" if channels == 3 else "gray"
    labels = make_synthetic_labels(
        n_frames=8,
        n_animals=1,
        image_size=64,
        n_parts=3,
        seed=seed,
        channels=channels,
        video_path=folder / f"{name}.h5",
    )
    path = folder / f"{name}.slp"
    sio.save_slp(labels, str(path))
    return path


def test_rgb_training_gray_validation_then_gray_prediction(tmp_path, run_cli):
    """The validation split holds only the gray camera: it used to fail in the first
    validation step (``expected input[4, 1, 64, 64] to have 3 channels``)."""
    rgb, gray = _labels(tmp_path, 3, seed=1), _labels(tmp_path, 1, seed=2)
    config = tiny_config("single_instance", tmp_path / "runs", epochs=1, batches_per_epoch=1)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(config))
    with pytest.warns(UserWarning) as caught:
        code, _, err = run_cli(
            "train",
            cfg,
            "--labels",
            rgb,
            "--val-labels",
            gray,
            "--run-name",
            "r",
            "--device",
            "cpu",
        )
    assert code == 0, err
    said = [str(w.message) for w in caught if "converted" in str(w.message)]
    assert said == [
        "frames of 1 video(s) are converted to the model's RGB input (3 channel(s)): "
        "gray.h5 (grayscale)"
    ]

    out = tmp_path / "pred.slp"
    with pytest.warns(UserWarning, match=r"converted to the model's RGB .*gray\.h5"):
        code, _, err = run_cli("predict", tmp_path / "runs" / "r", tmp_path / "gray.h5", "-o", out)
    assert code == 0, err
    assert out.exists()


def test_frames_convert_as_sleap_does():
    from posekit.data.channels import convert_frame

    gray = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    assert np.array_equal(convert_frame(gray, 3), np.repeat(gray, 3, axis=2))
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 0, 255)
    # TensorFlow's rgb_to_grayscale weights, as SLEAP's ensure_grayscale
    assert convert_frame(rgb, 1)[..., 0].tolist() == [[76, 29]]
