"""The end-of-training advice on whether more time would help."""

from __future__ import annotations

import csv

from posekit.training.more_time import more_time_advice


def _write(path, losses, seconds_per_epoch=10.0):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "val_loss", "elapsed_s"])
        writer.writeheader()
        for i, loss in enumerate(losses):
            writer.writerow(
                {"epoch": i, "val_loss": "" if loss is None else loss,
                 "elapsed_s": (i + 1) * seconds_per_epoch}
            )  # fmt: skip
    return path


def test_a_loss_still_falling_at_the_end_says_more_time_helps(tmp_path):
    losses = [1.0 / (1 + 0.3 * i) for i in range(20)]  # still falling ~4% per epoch
    advice = more_time_advice(_write(tmp_path / "m.csv", losses))
    assert advice.startswith("more time would likely help")
    half, end = losses[9], losses[-1]
    assert f"{100 * (half - end) / half:.0f}% over the second half" in advice


def test_a_settled_loss_says_more_time_is_unlikely_to_help(tmp_path):
    losses = [1.0, 0.5, 0.3, 0.2] + [0.2 + 0.001 * (i % 3) for i in range(16)]
    advice = more_time_advice(_write(tmp_path / "m.csv", losses))
    assert advice.startswith("more time is unlikely to help much")
    assert "0.0% in its last quarter" in advice


def test_the_best_so_far_decides_not_one_noisy_epoch(tmp_path):
    # the last epoch jumps up: the best loss is what counts, and it did not fall late
    losses = [1.0, 0.4, 0.3, 0.25, 0.25, 0.25, 0.25, 0.25, 0.9]
    advice = more_time_advice(_write(tmp_path / "m.csv", losses))
    assert advice.startswith("more time is unlikely")


def test_too_few_validated_epochs_give_no_advice(tmp_path):
    assert more_time_advice(_write(tmp_path / "m.csv", [1.0, None, 0.5, None])) is None
    assert more_time_advice(tmp_path / "missing.csv") is None
