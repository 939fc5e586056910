"""Mask scores: COCO mask AP (checked against pycocotools), IoU and boundary IoU."""

from __future__ import annotations

import numpy as np
import pytest

from posekit.mask_evaluation import boundary_iou, evaluate_masks, mask_ap, mask_iou


def _box(hw, y0, y1, x0, x1):
    m = np.zeros(hw, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _random_frames(seed=0, n_frames=6, hw=(40, 50)):
    """Frames of box masks and jittered, scored predictions (some missed, some extra)."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_frames):
        gt, pr, sc = [], [], []
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, hw[0] - 12), rng.integers(0, hw[1] - 12)
            h, w = rng.integers(6, 12, size=2)
            gt.append(_box(hw, y, y + h, x, x + w))
            if rng.random() < 0.8:
                dy, dx = rng.integers(-1, 2, size=2)
                pr.append(_box(hw, max(y + dy, 0), y + dy + h, max(x + dx, 0), x + dx + w))
                sc.append(float(rng.random()))
        if rng.random() < 0.5:
            pr.append(_box(hw, 0, 5, 0, 5))
            sc.append(float(rng.random()))
        frames.append((gt, pr, sc))
    return frames


def test_mask_ap_equals_pycocotools():
    pytest.importorskip("pycocotools")
    from pycocotools import mask as cmask
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    frames = _random_frames()
    images, anns, dets = [], [], []
    for i, (gt, pr, sc) in enumerate(frames):
        images.append({"id": i, "height": 40, "width": 50})
        for m in gt:
            rle = cmask.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": float(m.sum()),
                    "bbox": list(cmask.toBbox(rle)),
                    "iscrowd": 0,
                }
            )
        for m, s in zip(pr, sc):
            rle = cmask.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            dets.append({"image_id": i, "category_id": 1, "segmentation": rle, "score": s})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1}]}
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(dets), iouType="segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    ours = mask_ap(frames)
    assert ours["mAP"] == pytest.approx(ev.stats[0], abs=1e-9)
    assert ours["AP"][0] == pytest.approx(ev.stats[1], abs=1e-9)  # AP50
    assert ours["AP"][5] == pytest.approx(ev.stats[2], abs=1e-9)  # AP75
    assert ours["mAR"] == pytest.approx(ev.stats[8], abs=1e-9)  # AR@100
    assert 0.05 < ours["mAP"] < 0.95  # a case with misses, extras and partial overlaps


def test_mask_ap_by_hand():
    """Two labelled masks; three predictions: IoU 1 (score .9), IoU 0.6 (score .8), a
    false one (score .7). At IoU 0.5..0.6 both are found, precision 1 up to recall 1; above
    0.6 only the first: recall 0.5 with precision 1."""
    hw = (10, 10)
    a, b = _box(hw, 0, 4, 0, 5), _box(hw, 5, 10, 0, 10)  # areas 20, 50
    b_pred = _box(hw, 5, 10, 0, 6)  # inside b: IoU 30/50 = 0.6
    junk = _box(hw, 0, 3, 7, 10)
    ap = mask_ap([([a, b], [a, b_pred, junk], [0.9, 0.8, 0.7])])
    # thresholds 0.50, 0.55, 0.60: AP 1; 0.65..0.95 (7): recall 0.5 -> 51/101 points
    expected = (3 * 1.0 + 7 * 51 / 101) / 10
    assert ap["mAP"] == pytest.approx(expected)
    assert ap["AR"][:3] == [1.0, 1.0, 1.0] and ap["AR"][3] == 0.5


def test_iou_and_boundary_iou():
    hw = (40, 40)
    gt = _box(hw, 10, 30, 10, 30)
    shifted = _box(hw, 10, 30, 12, 32)
    assert mask_iou([gt], [shifted])[0, 0] == pytest.approx(360 / 440)
    assert boundary_iou(gt, gt) == 1.0
    # d = round(0.02 * 56.6) = 1: the one-pixel rings of two 20x20 squares 2 px apart
    # share their top and bottom rows over 18 px: 36 of 76 + 76 - 36 pixels.
    assert boundary_iou(gt, shifted) == pytest.approx(36 / (76 + 76 - 36))
    # boundary IoU is stricter than mask IoU for the same shift
    assert boundary_iou(gt, shifted) < mask_iou([gt], [shifted])[0, 0]


def test_evaluate_masks_on_labels():
    import sleap_io as sio

    from posekit.data.masks import to_sleap_mask

    video = sio.Video(filename="v.mp4", open_backend=False)
    hw = (20, 20)
    a, b = _box(hw, 0, 8, 0, 8), _box(hw, 10, 20, 10, 20)
    gt = sio.Labels(
        labeled_frames=[sio.LabeledFrame(video, 0, masks=[to_sleap_mask(a), to_sleap_mask(b)])],
        videos=[video],
    )
    # one perfect prediction, one missed animal; the user masks copied beside are ignored
    pr = sio.Labels(
        labeled_frames=[
            sio.LabeledFrame(
                video, 0, masks=[to_sleap_mask(a, score=0.9), to_sleap_mask(a), to_sleap_mask(b)]
            )
        ],
        videos=[video],
    )
    m = evaluate_masks(gt, pr)
    assert m["n_gt_masks"] == 2 and m["n_pred_masks"] == 1
    assert m["mask_iou.median"] == pytest.approx(0.5)  # 1.0 and 0.0
    assert m["mask_voc.mAP"] == pytest.approx(51 / 101)  # recall 0.5 at precision 1
    assert m["boundary_iou.mean"] == 1.0
    assert m["foreground_iou.mean"] == pytest.approx(64 / 164)
