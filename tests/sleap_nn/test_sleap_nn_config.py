"""sleap-nn YAML configs <-> posekit's TrainingJobConfig (no torch, no sleap-nn needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from posekit.config.job import from_sleap_nn
from posekit.config.sleap_nn import default_tree, to_sleap_nn
from posekit.errors import PosekitError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sleapnn"


def _tree(**changes) -> dict:
    """sleap-nn's default config with a small UNet bottom-up model, then `changes`
    (dotted paths)."""
    tree = default_tree()
    tree["model_config"]["backbone_config"]["unet"] = {
        "in_channels": 1,
        "kernel_size": 3,
        "filters": 16,
        "filters_rate": 1.5,
        "max_stride": 16,
        "stem_stride": None,
        "middle_block": True,
        "up_interpolate": True,
        "stacks": 1,
        "convs_per_block": 2,
        "output_stride": 2,
    }
    tree["model_config"]["head_configs"]["bottomup"] = {
        "confmaps": {
            "part_names": ["a", "b"],
            "sigma": 2.5,
            "output_stride": 2,
            "loss_weight": None,
        },
        "pafs": {"edges": [["a", "b"]], "sigma": 7.5, "output_stride": 4, "loss_weight": 2.0},
    }
    tree["data_config"]["train_labels_path"] = ["train.slp"]
    tree["data_config"]["skeletons"] = [
        {
            "name": "fly",
            "nodes": [{"name": "a"}, {"name": "b"}],
            "edges": [{"source": {"name": "a"}, "destination": {"name": "b"}}],
            "symmetries": [],
        }
    ]
    for dotted, value in changes.items():
        *path, leaf = dotted.split(".")
        node = tree
        for key in path:
            node = node[key]
        node[leaf] = value
    return tree


def test_fields_map_onto_posekit():
    cfg = from_sleap_nn(
        _tree(
            **{
                "trainer_config.max_epochs": 7,
                "trainer_config.optimizer.lr": 3e-4,
                "trainer_config.train_data_loader.batch_size": 2,
                "data_config.preprocessing.scale": 0.5,
            }
        )
    )
    unet = cfg.model.backbone.unet
    assert (unet.filters, unet.filters_rate, unet.max_stride, unet.output_stride) == (
        16,
        1.5,
        16,
        2,
    )
    assert unet.up_interpolate is True  # sleap-nn's default, not SLEAP's
    heads = cfg.model.heads.multi_instance
    assert heads.confmaps.part_names == ["a", "b"] and heads.confmaps.sigma == 2.5
    assert heads.confmaps.loss_weight == 1.0  # sleap-nn's null loss weight
    assert heads.pafs.edges == [("a", "b")] and heads.pafs.output_stride == 4
    assert heads.pafs.loss_weight == 2.0
    opt = cfg.optimization
    assert (opt.epochs, opt.initial_learning_rate, opt.batch_size) == (7, 3e-4, 2)
    assert opt.learning_rate_schedule.reduce_on_plateau  # sleap-nn's default schedule
    assert cfg.data.preprocessing.input_scaling == 0.5
    assert cfg.data.labels.training_labels == "train.slp"
    assert cfg.data.labels.skeletons[0].edges == [("a", "b")]
    assert cfg.unused_settings == []  # nothing set that posekit does not act on


def test_unused_settings_reach_the_one_warning():
    from posekit.training.logs import ignored_settings_message

    cfg = from_sleap_nn(
        _tree(
            **{
                "trainer_config.seed": 3,
                "data_config.preprocessing.min_crop_size": 50,
                "trainer_config.use_wandb": True,
            }
        )
    )
    assert cfg.unused_settings == [
        "data_config.preprocessing.min_crop_size=50",
        "trainer_config.seed=3",
        "trainer_config.use_wandb=true",
    ]
    message = ignored_settings_message(cfg)
    assert "trainer_config.seed=3 (sleap-nn setting)" in message
    assert message.count("posekit ignores") == 1


def test_round_trip_through_sleap_nn_tree():
    cfg = from_sleap_nn(
        _tree(
            **{
                "trainer_config.lr_scheduler.step_lr": {"step_size": 3, "gamma": 0.5},
                "trainer_config.lr_scheduler.reduce_lr_on_plateau": None,
            }
        )
    )
    back = to_sleap_nn(cfg)

    # complete: every section and field of sleap-nn's default tree is written
    def keys(tree, prefix=""):
        out = set()
        for k, v in tree.items():
            out.add(prefix + k)
            if isinstance(v, dict) and v:
                out |= keys(v, prefix + k + ".")
        return out

    missing = keys(default_tree()) - keys(back)
    # (the plateau schedule is replaced by the step schedule: null, without fields)
    assert {k.rsplit(".", 1)[0] for k in missing} == {
        "trainer_config.lr_scheduler.reduce_lr_on_plateau"
    }
    again = from_sleap_nn(yaml.safe_load(yaml.safe_dump(back)))
    assert again.model == cfg.model
    assert again.optimization == cfg.optimization
    assert again.data == cfg.data
    assert again.optimization.learning_rate_schedule.step_lr.step_size == 3


def test_class_vectors_read_the_bottleneck():
    tree = _tree()
    tree["model_config"]["head_configs"]["bottomup"] = None
    tree["model_config"]["head_configs"]["multi_class_topdown"] = {
        "confmaps": {
            "part_names": ["a", "b"],
            "anchor_part": "a",
            "sigma": 2.5,
            "output_stride": 2,
        },
        "class_vectors": {
            "classes": ["x", "y"],
            "num_fc_layers": 1,
            "num_fc_units": 8,
            "global_pool": True,
            "output_stride": 1,
            "loss_weight": 1.0,
        },
    }
    cfg = from_sleap_nn(tree)
    assert cfg.model.heads.multi_class_topdown.class_vectors.output_stride == 16


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"model_config.backbone_config.unet.kernel_size": 5}, "kernel_size=5"),
        ({"model_config.backbone_config.unet.stem_stride": 4}, "stem_stride=4"),
        ({"data_config.train_labels_path": ["a.slp", "b.slp"]}, "lists 2 label files"),
        ({"model_config.backbone_config.swint": {"model_type": "tiny"}}, "exactly one of"),
    ],
)
def test_refused_with_one_clear_line(changes, words):
    with pytest.raises(PosekitError, match=words) as err:
        from_sleap_nn(_tree(**changes), "cfg.yaml")
    assert "\n" not in str(err.value) and "cfg.yaml" in str(err.value)


def test_load_config_and_summary_accept_sleap_nn_yaml(tmp_path):
    from posekit.config import load_config
    from posekit.config.job import TrainingJobConfig

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_tree()))
    cfg = load_config(path)
    assert isinstance(cfg, TrainingJobConfig)
    assert cfg.model.heads.which_oneof_attrib_name() == "multi_instance"
    assert cfg.filename == str(path)
    assert TrainingJobConfig.load(path).model == cfg.model


def test_overrides_keep_the_unused_settings():
    from posekit.config.overrides import apply_overrides

    cfg = from_sleap_nn(_tree(**{"trainer_config.seed": 3}))
    assert apply_overrides(cfg, ["optimization.epochs=2"]).unused_settings == [
        "trainer_config.seed=3"
    ]


def test_run_folder_holds_the_config_as_sleap_nn_yaml(tmp_path):
    from posekit.config import load_config
    from posekit.training.run_folder import SLEAP_NN_CONFIG, write_configs

    cfg = from_sleap_nn(_tree())
    write_configs(tmp_path, cfg, None)
    again = load_config(tmp_path / SLEAP_NN_CONFIG)
    assert again.model == cfg.model and again.optimization == cfg.optimization


#: The tiny custom ConvNeXt of the sleap-nn fixtures, as sleap-nn wrote it (every field).
TINY_CONVNEXT = {
    **yaml.safe_load((FIXTURES / "convnext_centroid" / "training_config.yaml").read_text())[
        "model_config"
    ]["backbone_config"]["convnext"],
    "output_stride": 2,
}
BACKBONES = {
    "convnext": TINY_CONVNEXT,
    "swint": {"model_type": "small", "window_size": 8, "patch_size": 4, "output_stride": 2},
    "pretrained": {
        "model_name": "timm/convnextv2_atto.fcmae_ft_in1k",
        "weights": False,
        "out_indices": [0, 1, 2],
        "filters_rate": 1.5,
        "output_stride": 2,
    },
}


def _with_backbone(name: str, body: dict) -> dict:
    tree = _tree()
    tree["model_config"]["backbone_config"] = {
        key: (body if key == name else None) for key in ("unet", "convnext", "swint", "pretrained")
    }
    return tree


@pytest.mark.parametrize("name", BACKBONES)
def test_sleap_nn_backbones_map_onto_posekit_and_back(name):
    from posekit.config.model import ConvNextConfig, PretrainedConfig, SwinTConfig

    body = BACKBONES[name]
    cfg = from_sleap_nn(_with_backbone(name, body))
    ours = cfg.model.backbone.which_oneof()
    assert (
        type(ours)
        is {
            "convnext": ConvNextConfig,
            "swint": SwinTConfig,
            "pretrained": PretrainedConfig,
        }[name]
    )
    for key, value in body.items():
        assert getattr(ours, key) == value, key
    assert cfg.unused_settings == []
    back = to_sleap_nn(cfg)  # in_channels: the backbone config's
    section = back["model_config"]["backbone_config"]
    assert [k for k, v in section.items() if v] == [name]
    assert {k: section[name][k] for k in body} == body
    assert from_sleap_nn(yaml.safe_load(yaml.safe_dump(back))).model == cfg.model


def test_export_builds_the_backbone_down_to_the_finest_head():
    """sleap-nn's decoder runs down to the backbone's output_stride (its training sets it
    to the finest head's): the way back writes that stride, not the config's."""
    cfg = from_sleap_nn(_with_backbone("convnext", {**TINY_CONVNEXT, "output_stride": 1}))
    back = to_sleap_nn(cfg)
    assert back["model_config"]["backbone_config"]["convnext"]["output_stride"] == 2


@pytest.mark.parametrize("stem, bottleneck", [(2, 32), (4, 64)])
def test_class_vectors_read_the_convnext_bottleneck(stem, bottleneck):
    tree = _with_backbone("convnext", {**TINY_CONVNEXT, "stem_patch_stride": stem})
    tree["model_config"]["head_configs"]["bottomup"] = None
    tree["model_config"]["head_configs"]["multi_class_topdown"] = {
        "confmaps": {"part_names": ["a", "b"], "anchor_part": "a", "output_stride": 2},
        "class_vectors": {"classes": ["x", "y"], "output_stride": 32, "global_pool": True},
    }
    cfg = from_sleap_nn(tree)
    assert cfg.model.heads.multi_class_topdown.class_vectors.output_stride == bottleneck
