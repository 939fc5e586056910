"""sleap-nn's `embedding` (re-ID) head section <-> posekit's `EmbeddingHeadConfig`.

Split from `posekit.config.sleap_nn` (the rest of the config mapping); the two differ in
where a crop is centred, whether crops are standardised, and sleap-nn's training
objective, which posekit reduces to SupCon's temperature.
"""

from __future__ import annotations

import copy
from typing import Any

from posekit.errors import PosekitError


def embedding_from_sleap_nn(r: Any, base: str, head: dict[str, Any]) -> list[str]:
    """sleap-nn's embedding head (read through `r`, the config reader) as posekit's, in
    place; returns the settings it cannot carry.

    sleap-nn centres a crop on `anchor_part` (falling back to `centroid_fallback`) or on
    `centroid_method` of the visible points, by default their mean; it standardises every
    crop; an unset `pool` means average pooling on a frozen pretrained encoder, else GeM.
    """
    lost = []
    method = head.pop("centroid_method", None)
    fallback = head.pop("centroid_fallback", None)
    centre = fallback if method in (None, "anchor") else method
    centre = centre or "center_of_mass"
    if centre not in ("center_of_mass", "bbox_center"):
        lost.append(
            f"{base}.centroid_{'fallback' if method in (None, 'anchor') else 'method'}={centre}"
        )
        centre = "center_of_mass"
    head["centroid_method"] = centre
    head["standardize"] = True
    if head.get("pool") is None:
        frozen = r.get("model_config.backbone_config.pretrained.freeze", False) or r.get(
            f"{base}.freeze_backbone", False
        )
        head["pool"] = "avg" if frozen else "gem"
    if r.get(f"{base}.detection_mode") == "mask":  # posekit embeds poses' crops
        lost.append(f"{base}.detection_mode=mask")
    if r.get(f"{base}.freeze_backbone", False):
        lost.append(f"{base}.freeze_backbone=true")
    loss = r.get(f"{base}.objective.loss.name", "supcon")
    if loss != "supcon":
        lost.append(f"{base}.objective.loss.name={loss}")
    head["temperature"] = r.get(f"{base}.objective.loss.temperature", 0.1)
    return lost


def embedding_to_sleap_nn(head, defaults: dict[str, Any]) -> dict[str, Any]:
    """posekit's embedding head as sleap-nn's leaf (the reverse of `embedding_from_sleap_nn`;
    `defaults`: sleap-nn's leaf with its objective resolved)."""
    if not head.standardize:
        raise PosekitError(
            "this embedding model sees crops as they are, and sleap-nn standardises every "
            "crop before its embedding network, so its vectors would differ there; train "
            "with model.heads.embedding.embedding.standardize: true to export it"
        )
    if head.loss != "supcon":
        raise PosekitError(f"embedding loss {head.loss!r} has no sleap-nn counterpart")
    out = copy.deepcopy(defaults)
    names = ("embedding_dim", "num_fc_layers", "num_fc_units", "pool", "normalize")
    out.update({n: getattr(head, n) for n in names})
    out.update(output_stride=head.output_stride, anchor_part=head.anchor_part)
    if head.anchor_part:
        out.update(centroid_method="anchor", centroid_fallback=head.centroid_method)
    else:
        out["centroid_method"] = head.centroid_method
    out["detection_mode"] = "pose"
    out["objective"]["loss"]["temperature"] = head.temperature
    # the projection head is sleap-nn's training-only part; posekit has none to write
    out["objective"]["use_projection"] = False
    return out


__all__ = ["embedding_from_sleap_nn", "embedding_to_sleap_nn"]
