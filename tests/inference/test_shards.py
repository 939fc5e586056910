"""`posekit predict --shard K/N` and SLURM job arrays: disjoint shares of the sources."""

from __future__ import annotations

import numpy as np
import pytest

from posekit.errors import PosekitError
from posekit.inference.sources import parse_shard, shard_from_environment, take_shard


@pytest.mark.parametrize("n_items", [0, 1, 5, 7, 12])
@pytest.mark.parametrize("n_shards", [1, 2, 3, 8])
def test_shards_are_disjoint_and_cover_every_source(n_items, n_shards):
    items = [f"v{i:02d}.mp4" for i in range(n_items)]
    shares = [take_shard(items, (k, n_shards)) for k in range(1, n_shards + 1)]
    flat = [x for share in shares for x in share]
    assert sorted(flat) == items  # every item, none twice
    assert len(set(flat)) == len(flat)
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1  # balanced


@pytest.mark.parametrize("spec", ["3/2", "0/0", "a/b", "0/3", "2", "1/2/3", "-1/2", ""])
def test_bad_shard_strings_get_one_error(spec):
    with pytest.raises(PosekitError, match="is not K/N with 1 <= K <= N"):
        parse_shard(spec)


def test_shard_strings():
    assert parse_shard("1/4") == (1, 4)
    assert parse_shard(" 4/4 ") == (4, 4)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, None),
        ({"SLURM_ARRAY_TASK_ID": "3"}, None),  # not an array job without a count
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, (1, 4)),
        (  # --array=1-4: ids from 1
            {
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_COUNT": "4",
                "SLURM_ARRAY_TASK_MIN": "1",
            },
            (4, 4),
        ),
        (  # --array=10-13
            {
                "SLURM_ARRAY_TASK_ID": "11",
                "SLURM_ARRAY_TASK_COUNT": "4",
                "SLURM_ARRAY_TASK_MIN": "10",
            },
            (2, 4),
        ),
        (  # --array=0-6:2 -> ids 0, 2, 4, 6
            {
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_COUNT": "4",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_STEP": "2",
            },
            (3, 4),
        ),
    ],
)
def test_shard_from_slurm_environment(env, expected):
    assert shard_from_environment(env) == expected


def test_slurm_ids_off_the_range_are_refused():
    # --array=1,5,9: SLURM reports MIN 1 and COUNT 3 but no step
    env = {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"}
    with pytest.raises(PosekitError, match="pass --shard K/N"):
        shard_from_environment(env)


# -- the command on two tiny videos


def _tiny_video(path, n_frames=3, size=32, seed=0):
    av = pytest.importorskip("av", reason="writing test videos needs PyAV (the video extra)")

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=5)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for _ in range(n_frames):
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture
def two_videos_and_model(tmp_path, single_instance_unet):
    from posekit.model.folder import save_model

    model = single_instance_unet(parts=("a", "b"), filters=4, max_stride=8, in_channels=3)
    folder = save_model(model, tmp_path / "model")
    videos = tmp_path / "videos"
    videos.mkdir()
    for i, name in enumerate(("a.mp4", "b.mp4")):
        _tiny_video(videos / name, seed=i)
    return folder, videos


def _predict(args, capsys):
    from posekit.cli import main

    code = main(["predict", *map(str, args)])
    return code, capsys.readouterr()


def test_two_shards_write_one_output_per_video(two_videos_and_model, capsys, monkeypatch):
    import sleap_io as sio

    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT", raising=False)
    model, videos = two_videos_and_model
    outputs = {}
    for k in (1, 2):
        code, out = _predict([model, videos, "--device", "cpu", "--shard", f"{k}/2"], capsys)
        assert code == 0, out.err
        assert f"Shard {k}/2: 1 output(s)" in out.out
        # the batch chosen for the frame size and the peak memory, at the end
        assert "Memory: batch 4 (largest of at most 4 within the memory budget" in out.out
        assert "per 32x32 frame" in out.out and "peak process memory" in out.out
        outputs[k] = sorted(p.name for p in videos.glob("*.predictions.slp"))
    assert outputs[1] == ["a.mp4.predictions.slp"]  # the first share: the first video only
    assert outputs[2] == ["a.mp4.predictions.slp", "b.mp4.predictions.slp"]
    labels = sio.load_slp(str(videos / "b.mp4.predictions.slp"))
    assert len(labels.labeled_frames) == 3

    # a third job of three has nothing to do, and says so
    code, out = _predict([model, videos, "--device", "cpu", "--shard", "3/3"], capsys)
    assert code == 0 and "no video of the sources falls in this share" in out.out

    # a requeued array task with --resume keeps what a finished run wrote
    before = (videos / "a.mp4.predictions.slp").stat().st_mtime_ns
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    code, out = _predict([model, videos, "--device", "cpu", "--resume"], capsys)
    assert code == 0 and "Shard 1/2: 1 output(s)" in out.out, out.err
    assert "finished by an earlier run" in out.out
    assert (videos / "a.mp4.predictions.slp").stat().st_mtime_ns == before


def test_shard_with_one_merged_output_is_refused(two_videos_and_model, capsys, tmp_path):
    model, videos = two_videos_and_model
    code, out = _predict(
        [model, videos, "--shard", "1/2", "-o", tmp_path / "all.slp", "--device", "cpu"], capsys
    )
    assert code != 0
    assert out.err.count("posekit: error:") == 1 and "leave out -o" in out.err
    assert not (tmp_path / "all.slp").exists()
    code, out = _predict([model, videos, "--shard", "3/2"], capsys)
    assert code != 0 and "is not K/N" in out.err and "Traceback" not in out.err
    code, out = _predict([model, videos, "--max-memory", "lots"], capsys)
    assert code != 0 and out.err.count("posekit: error:") == 1 and "is not a size" in out.err
    assert not list(videos.glob("*.predictions.slp"))
