"""Data: the embedded photos, local folders, FFHQ lists, transforms, and the resumable samplers."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
from PIL import Image

from ginr.config import DataConfig
from ginr.data import BatchPlan, EvalBatchSampler, TrainBatchSampler, eval_dataset, make_loader, train_dataset
from ginr.data.photos import EVAL_PHOTOS, TRAIN_PHOTOS, load_photos
from ginr.data.transforms import ImageTransform


def test_photos_are_real_tiles_with_disjoint_sources():
    splits = load_photos(32)
    assert set(splits["train"]["photo"]) == set(TRAIN_PHOTOS)
    assert set(splits["validation"]["photo"]) == set(EVAL_PHOTOS)
    assert len(splits["train"]) > 500 and len(splits["validation"]) > 100
    image = eval_dataset(DataConfig())[0]
    assert image.shape == (32, 32, 3) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.01  # a photograph, not a constant


def test_image_folder_splits(image_folder):
    config = DataConfig(source="imagefolder", path=str(image_folder), resolution=8)
    train, held_out = train_dataset(config), eval_dataset(config)
    assert (len(train), len(held_out)) == (16, 4)
    assert train[(0, 123)].shape == (8, 8, 3)


def test_audio_folder_is_decoded_resampled_and_cropped(audio_folder):
    config = DataConfig(source="audiofolder", path=str(audio_folder), sample_rate=16000, clip_seconds=0.01)
    train, held_out = train_dataset(config), eval_dataset(config)
    assert (len(train), len(held_out)) == (8, 2)
    clip = held_out[0]
    assert clip.shape == (160, 1) and clip.abs().max() <= 1
    assert 0.3 < clip.abs().max() < 0.6  # the 0.5-amplitude chirp, upsampled from 8 kHz
    assert torch.equal(train[(0, 5)], train[(0, 5)]) and not torch.equal(train[(0, 5)], held_out[0])
    padded = eval_dataset(DataConfig(source="audiofolder", path=str(audio_folder), clip_seconds=0.05))[0]
    assert padded.shape == (800, 1) and not padded[640:].any()  # 0.02 s of audio, zero-padded to 0.05 s


def test_missing_folder_is_named(tmp_path):
    config = DataConfig(source="imagefolder", path=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="--data.path=.*nope: no such folder"):
        train_dataset(config)
    with pytest.raises(ValueError, match="--data.path is not set"):
        train_dataset(DataConfig(source="imagefolder"))


def test_missing_split_is_named(image_folder):
    config = DataConfig(source="imagefolder", path=str(image_folder), eval_split="test")
    with pytest.raises(ValueError, match=r"split 'test' not found .* it has \['train', 'validation'\]"):
        eval_dataset(config)


def test_ffhq_lists_define_order(tmp_path):
    images, lists = tmp_path / "ffhq", tmp_path / "lists"
    images.mkdir(), lists.mkdir()
    for i in range(5):
        Image.new("RGB", (10, 10), (i * 40, 0, 0)).save(images / f"{i:05d}.png")
    (lists / "ffhqtrain.txt").write_text("00003.png\n00000.png\n00004.png\n")
    (lists / "ffhqvalidation.txt").write_text("00002.png\n00001.png\n")
    config = DataConfig(source="ffhq", path=str(images), split_lists=str(lists), resolution=4)
    train, held_out = train_dataset(config), eval_dataset(config)
    reds = [round(float(train[i][..., 0].mean()) * 255) for i in range(3)]
    assert reds == [120, 0, 160]  # list order, not sorted order
    assert len(held_out) == 2
    (lists / "ffhqvalidation.txt").write_text("00002.png\n00009.png\n")
    with pytest.raises(FileNotFoundError, match=r"1 of 2 FFHQ files .* \(first: 00009.png\)"):
        eval_dataset(config)


def _entry(image: Image.Image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def test_transforms_rgb_and_random_crop_is_seeded():
    out = ImageTransform(16)(_entry(Image.new("L", (40, 30), 128)), None)
    assert out.shape == (16, 16, 3)
    image = _entry(Image.frombytes("RGB", (40, 30), bytes(range(256)) * 14 + bytes(range(16))))
    crop = ImageTransform(16, "random_crop_flip")
    assert torch.equal(crop(image, 7), crop(image, 7))
    assert any(not torch.equal(crop(image, 7), crop(image, s)) for s in range(8, 20))
    with pytest.raises(ValueError, match="smaller than the 64-px random crop"):
        ImageTransform(64, "random_crop_flip")(image, 0)


def test_batch_plan_divides_the_global_batch():
    assert BatchPlan.derive(16, 2, 2) == BatchPlan(16, 4, 2, 2)
    with pytest.raises(ValueError, match="--train.batch-size=16 .* processes x --train.grad-accumulation = 3 x 1"):
        BatchPlan.derive(16, 3, 1)


def _indices(batches):
    return [index for batch in batches for index, _ in batch]


def test_train_sampler_processes_share_one_global_order():
    """1 process x 2 accumulation and 2 processes x 1 see the same samples per optimizer step."""
    size, seed, epoch = 37, 3, 1
    single = list(TrainBatchSampler(size, BatchPlan(8, 4, 1, 2), 0, seed, epoch))
    ranks = [list(TrainBatchSampler(size, BatchPlan(8, 4, 2, 1), r, seed, epoch)) for r in range(2)]
    assert len(single) == 2 * (37 // 8) and all(len(b) == 4 for b in single)
    for step in range(37 // 8):
        one = set(_indices(single[2 * step : 2 * step + 2]))
        two = set(_indices([ranks[0][step], ranks[1][step]]))
        assert one == two and len(one) == 8
    everything = _indices(single)
    assert len(set(everything)) == len(everything) == 32  # no repeats; a remainder of 5 is dropped


def test_train_sampler_is_seeded_and_resumable():
    plan = BatchPlan(4, 2, 1, 2)
    full = list(TrainBatchSampler(20, plan, 0, seed=0, epoch=2))
    resumed = list(TrainBatchSampler(20, plan, 0, seed=0, epoch=2, start_step=3))
    assert resumed == full[6:]
    assert full != list(TrainBatchSampler(20, plan, 0, seed=0, epoch=3))
    assert full != list(TrainBatchSampler(20, plan, 0, seed=1, epoch=2))
    seeds = [s for batch in full for _, s in batch]
    assert len(set(seeds)) == len(seeds)


def test_step_indices_name_the_global_batch_by_position():
    """Position (a P + rank) b + j of a step's global batch: what a non-finite step reports."""
    plan = BatchPlan(8, 2, 2, 2)
    ranks = [list(TrainBatchSampler(21, plan, r, seed=5, epoch=1)) for r in range(2)]
    for step in range(21 // 8):
        by_position = [index for a in range(2) for r in range(2) for index, _ in ranks[r][2 * step + a]]
        assert TrainBatchSampler(21, plan, 0, seed=5, epoch=1).step_indices(step) == by_position


def test_starting_a_loader_leaves_the_global_rng_alone():
    """A loader starts each epoch, each evaluation and on resume; none of them may shift training's random streams."""
    state = torch.get_rng_state()
    batches = iter(make_loader(list(range(6)), EvalBatchSampler(6, 2, 1, 0), num_workers=0))
    assert next(batches).tolist() == [0, 1]
    assert torch.equal(torch.get_rng_state(), state)


def test_eval_sampler_counts_every_instance_once():
    size, processes = 11, 3
    seen = [i for r in range(processes) for batch in EvalBatchSampler(size, 2, processes, r) for i in batch]
    assert sorted(seen) == list(range(size))


def test_data_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DataConfig().resolution = 3


@pytest.mark.parametrize("size", [0, 2])
def test_eval_sampler_refuses_fewer_instances_than_processes_on_every_rank(size):
    """Every rank refuses alike when the sampler is built, so none waits for the others in the evaluation."""
    for rank in range(3):
        with pytest.raises(ValueError) as error:
            EvalBatchSampler(size, 4, 3, rank)
        message = str(error.value)
        assert f"the evaluation split has {size} instance(s), fewer than the 3 process(es)" in message
        assert f"--num_processes {max(size, 1)}" in message
    assert [len(list(EvalBatchSampler(3, 4, 3, rank))) for rank in range(3)] == [1, 1, 1]


def test_one_seed_hash_for_training_draws_and_the_evaluation_views():
    """Training's permutations and per-sample seeds and ShapeNet's evaluation draws share one hash, whose values are
    fixed (changing them would change every data order and every saved evaluation list)."""
    from ginr.data import loader, shapenet

    assert shapenet.mix_seeds is loader.mix_seeds
    assert [loader.mix_seeds(0), loader.mix_seeds(5, 1), loader.mix_seeds(5, 1, 7), loader.mix_seeds(1234, 3)] == [
        3236661110929538048,
        7213141729292454193,
        1582029701827489267,
        7317073584151172156,
    ]
