"""Skeletons: SLEAP's jsonpickle form <-> names, in SLEAP's (and sleap-io's) order."""

from __future__ import annotations

import json

import pytest
import sleap_io as sio
from cfg_shared import SHARED, shared_path
from pydantic import ValidationError
from sleap_io.io.skeleton import SkeletonDecoder

from posekit.config import SkeletonConfig, TrainingJobConfig, load_config, read_slp_skeletons

# Which trained models were made from which labels file.
MODEL_LABELS = {
    "minimal_instance.UNet.bottomup": "data/minimal/minimal_instance.slp",
    "minimal_instance.UNet.centered_instance": "data/minimal/minimal_instance.slp",
    "minimal_instance.UNet.centered_instance_with_scaling": "data/minimal/minimal_instance.slp",
    "minimal_instance.UNet.centroid": "data/minimal/minimal_instance.slp",
    "minimal_robot.UNet.single_instance": "data/minimal/small_robot_minimal.slp",
    "min_tracks_2node.UNet.bottomup_multiclass": "data/flies/clip.2node.slp",
    "min_tracks_2node.UNet.topdown_multiclass": "data/flies/clip.2node.slp",
}


def _flies_with_symmetries() -> SkeletonConfig:
    skel = read_slp_skeletons(shared_path("data", "flies", "clip.slp"))[0]
    return SkeletonConfig(
        name=skel.name,
        node_names=[*skel.node_names, "tail"],  # one node without any edge
        edges=skel.edges,
        symmetries=[("wingL", "wingR"), ("eyeL", "eyeR"), ("forelegL4", "forelegR4")],
    )


@pytest.mark.parametrize("model", sorted(MODEL_LABELS))
def test_config_skeleton_matches_sleap_io_reading_of_slp(model):
    cfg = load_config(shared_path("sleap_models", model, "training_config.json"))
    labels = sio.load_slp(str(shared_path(*MODEL_LABELS[model].split("/"))))
    (ours,) = cfg.data.labels.skeletons
    (theirs,) = labels.skeletons
    assert ours.node_names == theirs.node_names
    assert ours.edges == [tuple(e) for e in theirs.edge_names]
    assert ours.name == theirs.name
    # The py/id order of the file is not the node order: flies' nodes are [head, thorax]
    # though thorax is written first.
    assert SkeletonConfig.from_sleap_io(theirs) == ours


@pytest.mark.parametrize(
    "rel", ["data/minimal/minimal_instance.slp", "data/flies/clip.2node.slp", "data/flies/clip.slp"]
)
def test_read_slp_skeletons_matches_sleap_io(rel):
    path = shared_path(*rel.split("/"))
    ours = read_slp_skeletons(path)
    theirs = sio.load_slp(str(path)).skeletons
    assert [s.node_names for s in ours] == [s.node_names for s in theirs]
    for a, b in zip(ours, theirs):
        # Same edges; SLEAP orders them by insertion, sleap-io by position in the file.
        assert sorted(a.edges) == sorted(tuple(e) for e in b.edge_names)


def test_slp_edges_in_sleap_insertion_order():
    path = shared_path("data", "flies", "clip.slp")
    import h5py

    with h5py.File(path, "r") as f:
        meta = json.loads(f["metadata"].attrs["json"])
    names = [n["name"] for n in meta["nodes"]]
    links = sorted(meta["skeletons"][0]["links"], key=lambda lk: lk["edge_insert_idx"])
    expected = [(names[lk["source"]], names[lk["target"]]) for lk in links]
    (skel,) = read_slp_skeletons(path)
    assert skel.edges == expected
    assert skel.edges[0] == ("thorax", "head") and skel.edges[-1] == ("head", "eyeR")


def test_sleap_form_round_trip_and_sleap_io_reads_it():
    skel = _flies_with_symmetries()
    encoded = skel.to_sleap_dict()
    assert SkeletonConfig.model_validate(encoded) == skel
    assert SkeletonConfig.model_validate({"nx_graph": encoded}) == skel
    # Each node and edge type is written in full exactly once, then by py/id.
    text = json.dumps(encoded)
    assert text.count('"py/object"') == len(skel.node_names)
    assert text.count('"py/reduce"') == 2
    # sleap-io's own decoder of SLEAP's format agrees.
    decoded = SkeletonDecoder().decode(json.dumps(encoded))
    assert decoded.node_names == skel.node_names
    assert [tuple(e) for e in decoded.edge_names] == skel.edges
    assert {frozenset(s) for s in decoded.symmetry_names} == {frozenset(s) for s in skel.symmetries}


def test_py_id_counts_nodes_and_edge_types_together():
    # Hand-written in SLEAP's layout: ids 1 (a), 2 (b), 3 (BODY), 4 (c), 5 (SYMMETRY).
    node = lambda n: {"py/object": "sleap.skeleton.Node", "py/state": {"py/tuple": [n, 1.0]}}  # noqa: E731
    etype = lambda v: {"py/reduce": [{"py/type": "sleap.skeleton.EdgeType"}, {"py/tuple": [v]}]}  # noqa: E731
    data = {
        "directed": True,
        "graph": {"name": "s", "num_edges_inserted": 2},
        "links": [
            {
                "edge_insert_idx": 1,
                "key": 0,
                "source": node("a"),
                "target": node("b"),
                "type": etype(1),
            },
            {
                "edge_insert_idx": 0,
                "key": 0,
                "source": {"py/id": 2},
                "target": node("c"),
                "type": {"py/id": 3},
            },
            {"key": 0, "source": {"py/id": 1}, "target": {"py/id": 4}, "type": etype(2)},
            {"key": 0, "source": {"py/id": 4}, "target": {"py/id": 1}, "type": {"py/id": 5}},
        ],
        "multigraph": True,
        "nodes": [{"id": {"py/id": 4}}, {"id": {"py/id": 1}}, {"id": {"py/id": 2}}],
    }
    skel = SkeletonConfig.model_validate(data)
    assert skel.node_names == ["c", "a", "b"]
    assert skel.edges == [("b", "c"), ("a", "b")]  # by edge_insert_idx
    assert skel.symmetries == [("a", "c")]
    assert skel.edge_inds == [(2, 0), (1, 2)] and skel.symmetry_inds == [(1, 0)]


def test_job_config_writes_sleap_form_json_and_plain_yaml(tmp_path):
    skel = _flies_with_symmetries()
    cfg = TrainingJobConfig.from_dict({"data": {"labels": {"skeletons": [skel.to_plain_dict()]}}})
    cfg.save_json(tmp_path / "c.json")
    written = json.loads((tmp_path / "c.json").read_text())["data"]["labels"]["skeletons"][0]
    assert written == skel.to_sleap_dict()
    cfg.save_yaml(tmp_path / "c.yaml")
    assert TrainingJobConfig.load_yaml(tmp_path / "c.yaml").data.labels.skeletons == [skel]
    assert TrainingJobConfig.load_json(tmp_path / "c.json").data.labels.skeletons == [skel]


def test_sleap_io_round_trip():
    skel = _flies_with_symmetries()
    sio_skel = skel.to_sleap_io()
    assert isinstance(sio_skel, sio.Skeleton)
    assert sio_skel.node_names == skel.node_names
    assert SkeletonConfig.from_sleap_io(sio_skel) == skel
    assert SkeletonConfig.model_validate(sio_skel) == skel


def test_bad_skeletons_named():
    with pytest.raises(ValidationError, match="unknown node 'tail'"):
        SkeletonConfig(node_names=["head"], edges=[("head", "tail")])
    with pytest.raises(ValidationError, match=r"repeat: \['a'\]"):
        SkeletonConfig(node_names=["a", "a"])
    with pytest.raises(ValidationError, match="py/id 7"):
        SkeletonConfig.model_validate({"links": [], "nodes": [{"id": {"py/id": 7}}]})


def test_shared_present_or_skipped():
    # Documents the skip rule: without shared/ the tests above skip rather than fail.
    if not SHARED.is_dir():
        pytest.skip("shared/ absent")
    assert (SHARED / "data").is_dir()
