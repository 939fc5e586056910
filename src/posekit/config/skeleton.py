"""Skeletons as plain data, and the jsonpickle form SLEAP stores them in.

SLEAP keeps `data.labels.skeletons` as a jsonpickle dump of a networkx node-link graph:
nodes are `sleap.skeleton.Node` objects, edge kinds are `EdgeType` enums, and any object
already written is replaced by `{"py/id": n}`, where n counts the objects (nodes and edge
types together, from 1) in the order they first appear in the file. posekit reads that
into `SkeletonConfig` (names only) and writes it back the same way, so SLEAP can read
configs that posekit saved.

Order matters downstream: node order fixes the confidence-map channels and body-edge
order fixes the PAF channels. SLEAP orders nodes as the `nodes` array lists them and
body edges by their `edge_insert_idx` (the order they were added), not by their position
in `links`. sleap-io's `.slp` reader keeps the `links` order instead, which differs for
skeletons whose edges were not added node by node (the 13-node flies skeleton); use
`read_slp_skeletons` when SLEAP's order is needed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from posekit.config.base import ConfigBase

BODY_EDGE = 1  # sleap.skeleton.EdgeType.BODY
SYMMETRY_EDGE = 2  # sleap.skeleton.EdgeType.SYMMETRY

_NODE_CLASS = "sleap.skeleton.Node"
_EDGE_TYPE_CLASS = "sleap.skeleton.EdgeType"


class SkeletonConfig(ConfigBase):
    """Names of a skeleton's nodes, its directed edges and its left/right symmetries.

    Accepts this plain form, SLEAP's jsonpickle form (a dict with `links`/`nodes`, or
    with `nx_graph`), or a `sleap_io.Skeleton`.
    """

    name: str = "Skeleton"
    node_names: list[str] = Field(min_length=1)
    edges: list[tuple[str, str]] = Field(default_factory=list)
    symmetries: list[tuple[str, str]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _from_other_forms(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("links" in data or "nx_graph" in data):
            return _decode_node_link(data)
        if type(data).__module__.startswith("sleap_io"):
            return _plain_from_sleap_io(data)
        return data

    @model_validator(mode="after")
    def _check_references(self) -> SkeletonConfig:
        counts = Counter(self.node_names)
        dupes = [n for n, c in counts.items() if c > 1]
        if dupes:
            raise ValueError(f"skeleton {self.name!r}: node names repeat: {dupes}")
        known = set(self.node_names)
        for kind, pairs in (("edge", self.edges), ("symmetry", self.symmetries)):
            for a, b in pairs:
                missing = [n for n in (a, b) if n not in known]
                if missing:
                    raise ValueError(
                        f"skeleton {self.name!r}: {kind} ({a!r}, {b!r}) names unknown "
                        f"node {missing[0]!r}; nodes are {self.node_names}"
                    )
                if a == b:
                    raise ValueError(f"skeleton {self.name!r}: {kind} ({a!r}, {b!r}) is a loop")
        return self

    # ------------------------------------------------------------------ views

    @property
    def edge_inds(self) -> list[tuple[int, int]]:
        """Edges as (source, destination) node indices."""
        index = {n: i for i, n in enumerate(self.node_names)}
        return [(index[a], index[b]) for a, b in self.edges]

    @property
    def symmetry_inds(self) -> list[tuple[int, int]]:
        """Symmetric pairs as node indices (used to swap channels on flips)."""
        index = {n: i for i, n in enumerate(self.node_names)}
        return [(index[a], index[b]) for a, b in self.symmetries]

    # ------------------------------------------------------------------ conversions

    def to_plain_dict(self) -> dict[str, Any]:
        """The posekit form: names only, easy to read and edit."""
        return self.model_dump(mode="json")

    def to_sleap_dict(self) -> dict[str, Any]:
        """SLEAP's jsonpickle node-link form, as in `training_config.json`.

        Links come first (body edges in order, each with its `edge_insert_idx`, then
        both directions of every symmetry, as SLEAP stores them), so every node and
        edge type is written in full once and referenced by `py/id` after that. A node
        without any link is written in full in the `nodes` array.
        """
        ids: dict[tuple[str, Any], int] = {}

        def ref(kind: str, value: Any) -> dict[str, Any]:
            key = (kind, value)
            if key in ids:
                return {"py/id": ids[key]}
            ids[key] = len(ids) + 1
            if kind == "node":
                return {"py/object": _NODE_CLASS, "py/state": {"py/tuple": [value, 1.0]}}
            return {"py/reduce": [{"py/type": _EDGE_TYPE_CLASS}, {"py/tuple": [value]}]}

        links = []
        multi_keys: Counter[tuple[str, str]] = Counter()

        def link(src: str, dst: str, edge_type: int, insert_idx: int | None) -> None:
            item: dict[str, Any] = {} if insert_idx is None else {"edge_insert_idx": insert_idx}
            item["key"] = multi_keys[(src, dst)]
            multi_keys[(src, dst)] += 1
            item["source"] = ref("node", src)
            item["target"] = ref("node", dst)
            item["type"] = ref("type", edge_type)
            links.append(item)

        for i, (src, dst) in enumerate(self.edges):
            link(src, dst, BODY_EDGE, i)
        for a, b in self.symmetries:
            link(a, b, SYMMETRY_EDGE, None)
            link(b, a, SYMMETRY_EDGE, None)
        nodes = [{"id": ref("node", n)} for n in self.node_names]
        return {
            "directed": True,
            "graph": {"name": self.name, "num_edges_inserted": len(self.edges)},
            "links": links,
            "multigraph": True,
            "nodes": nodes,
        }

    @classmethod
    def from_sleap_dict(
        cls, data: dict[str, Any], node_names: list[str] | None = None
    ) -> SkeletonConfig:
        """Read SLEAP's jsonpickle form.

        `node_names` is the file-wide node list of an `.slp` file, whose skeletons refer
        to nodes by integer index into it instead of embedding `Node` objects.
        """
        return cls.model_validate(_decode_node_link(data, node_names))

    def to_sleap_io(self):
        """The same skeleton as a `sleap_io.Skeleton` (node and edge order kept)."""
        import sleap_io as sio

        return sio.Skeleton(
            nodes=list(self.node_names),
            edges=[list(e) for e in self.edges],
            symmetries=[list(s) for s in self.symmetries],
            name=self.name,
        )

    @classmethod
    def from_sleap_io(cls, skeleton) -> SkeletonConfig:
        """Names from a `sleap_io.Skeleton`, in its node and edge order."""
        return cls.model_validate(_plain_from_sleap_io(skeleton))


def read_slp_skeletons(path: str | Path) -> list[SkeletonConfig]:
    """Skeletons of a SLEAP `.slp` file, with SLEAP's node and edge order.

    Reads only the file's metadata JSON (no frames), so it is quick even for large files.
    """
    import json

    import h5py

    with h5py.File(path, "r") as f:
        meta = json.loads(f["metadata"].attrs["json"])
    names = [n["name"] for n in meta.get("nodes", [])]
    return [SkeletonConfig.from_sleap_dict(s, names) for s in meta.get("skeletons", [])]


# ---------------------------------------------------------------------- decoding


def _plain_from_sleap_io(skeleton) -> dict[str, Any]:
    return {
        "name": skeleton.name or "Skeleton",
        "node_names": list(skeleton.node_names),
        "edges": [tuple(e) for e in skeleton.edge_names],
        "symmetries": [tuple(s) for s in skeleton.symmetry_names],
    }


def _decode_node_link(data: dict[str, Any], node_names: list[str] | None = None) -> dict:
    """jsonpickle node-link dict -> plain skeleton dict (see module docstring)."""
    graph = data.get("nx_graph", data)
    objects: list[tuple[str, Any]] = []  # py/id n is objects[n - 1]

    def resolve(value: Any, want: str) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if want != "node" or node_names is None:
                raise ValueError(f"skeleton: bare integer {value} where a {want} was expected")
            return node_names[value]
        if not isinstance(value, dict):
            raise ValueError(f"skeleton: cannot read {value!r} as a {want}")
        if "py/id" in value:
            idx = value["py/id"]
            if not 1 <= idx <= len(objects):
                raise ValueError(
                    f"skeleton: py/id {idx} refers to an object not seen yet "
                    f"({len(objects)} so far)"
                )
            kind, obj = objects[idx - 1]
        elif "py/object" in value:
            state = value.get("py/state", {})
            obj = state["py/tuple"][0] if "py/tuple" in state else state.get("name")
            kind = "node"
            objects.append((kind, obj))
        elif "py/reduce" in value:
            args = [a for a in value["py/reduce"] if isinstance(a, dict) and "py/tuple" in a]
            obj = int(args[0]["py/tuple"][0])
            kind = "type"
            objects.append((kind, obj))
        else:
            raise ValueError(f"skeleton: cannot read {value!r} as a {want}")
        if kind != want:
            raise ValueError(f"skeleton: expected a {want}, found {kind} {obj!r}")
        return obj

    links: list[tuple[int, str, str, int, Any]] = []
    nodes: list[str] = []
    # Walk in file order: that is the order in which objects receive their ids.
    for key, value in graph.items():
        if key == "links":
            for pos, item in enumerate(value):
                got = {}
                for k, v in item.items():
                    if k in ("source", "target"):
                        got[k] = resolve(v, "node")
                    elif k == "type":
                        got[k] = resolve(v, "type")
                edge_type = got.get("type", BODY_EDGE)
                links.append((pos, got["source"], got["target"], edge_type, item))
        elif key == "nodes":
            nodes = [resolve(item["id"], "node") for item in value]

    body = [lk for lk in links if lk[3] == BODY_EDGE]
    body.sort(key=lambda lk: (lk[4].get("edge_insert_idx", len(links) + lk[0]), lk[0]))
    symmetries: list[tuple[str, str]] = []
    seen: set[frozenset[str]] = set()
    for _, a, b, edge_type, _ in links:
        if edge_type == SYMMETRY_EDGE and frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            symmetries.append((a, b))
    return {
        "name": _graph_attrs(graph).get("name") or "Skeleton",
        "node_names": nodes,
        "edges": [(a, b) for _, a, b, _, _ in body],
        "symmetries": symmetries,
    }


__all__ = ["SkeletonConfig", "read_slp_skeletons", "BODY_EDGE", "SYMMETRY_EDGE"]


def _graph_attrs(graph: dict[str, Any]) -> dict[str, Any]:
    # networkx < 2 wrote graph attributes as a list of [key, value] pairs.
    attrs = graph.get("graph") or {}
    return dict(attrs) if isinstance(attrs, list) else attrs
