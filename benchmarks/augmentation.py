"""Augmentation of full frames: warp then resize, against one warp into the model's size.

Full-frame models (single instance, centroid, bottom-up) see the frame scaled by
`input_scaling`. Rotating the whole frame and then resizing it costs the full-size grid;
`BatchAugmenter(..., output_size=)` samples the rotated frame straight at the model's
size. This prints the milliseconds per batch of each, side by side, for a few frame
sizes and scales (random rotations, batch 4, float32, all cores).

Run: ``python benchmarks/augmentation.py [--batch 4] [--repeats 20]``.
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table

    from posekit.data.augmentation import BatchAugmenter
    from posekit.model.preprocessing import resize_images, scaled_size

    aug = BatchAugmenter(
        {"rotate": True, "rotation_min_angle": -180, "rotation_max_angle": 180}, seed=0
    )
    table = Table(title=f"rotate + resize a batch of {args.batch} frames (ms per batch)")
    for col in ("frame (W x H)", "scale", "warp then resize", "one warp", "speed-up"):
        table.add_column(col, justify="right")
    for h, w, s in ((747, 832, 0.25), (1024, 1024, 0.25), (1024, 1024, 0.5), (512, 512, 1.0)):
        img = torch.rand(args.batch, 1, h, w)
        size = scaled_size((h, w), s)

        def two_passes(img=img, s=s):
            return resize_images(aug(img, None)[0], s)

        def one_pass(img=img, size=size):
            return aug(img, None, output_size=size)[0]

        ms = []
        for fn in (two_passes, one_pass):
            fn()  # warm-up
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                fn()
            ms.append((time.perf_counter() - t0) / args.repeats * 1000)
        table.add_row(
            f"{w} x {h}", f"{s:g}", f"{ms[0]:.1f}", f"{ms[1]:.1f}", f"{ms[0] / ms[1]:.1f}x"
        )
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
