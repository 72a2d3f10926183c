"""ShapeNet views in learnit's layout (fidelity 7 "ShapeNet item", quirk 24) on spheres rendered by the tests
(conftest.write_shapenet): items, compositing, cameras, seeded training draws, the fixed evaluation list, errors."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import SHAPENET_SPLITS, write_shapenet
from PIL import Image

from ginr import render
from ginr.data import (
    BadFileError,
    BatchPlan,
    TrainBatchSampler,
    catalog,
    eval_dataset,
    make_loader,
    shapenet,
    train_dataset,
)


def views_config(folder, **changes):
    base = dict(path=str(folder), resolution=16, train_views=6, eval_draws=5, support_views=2, num_workers=0)
    return dataclasses.replace(catalog.DATA["shapenet-cars"], **{**base, **changes})


def test_an_item_is_support_and_query_views_composited_on_white(shapenet_folder):
    data = train_dataset(views_config(shapenet_folder))
    assert len(data) == 3 * 2  # 3 objects with transforms.json (one is skipped), repeat 2
    item = data[(4, 123)]
    assert set(item) == {"support", "query"}
    assert {k: tuple(v.shape) for k, v in item["support"].items()} == {
        "images": (2, 16, 16, 3), "poses": (2, 3, 4), "focals": (2, 2)
    }  # fmt: skip
    assert item["query"]["images"].shape == (1, 16, 16, 3)
    folder = shapenet_folder / "cars" / "t1"  # index 4 is object 4 mod 3 = 1
    meta = json.loads((folder / "transforms.json").read_text())
    frames = data.draw(4, 123)[1]
    for view, frame in enumerate(frames[:2]):
        rgba = np.asarray(Image.open(folder / f"r_{frame}.png"), dtype=np.float32) / 255
        expected = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
        assert torch.allclose(item["support"]["images"][view], torch.from_numpy(expected))
        assert (item["support"]["images"][view][rgba[..., 3] == 0] == 1).all()  # transparent: white
        matrix = torch.tensor(meta["frames"][frame]["transform_matrix"], dtype=torch.float32)
        assert torch.equal(item["support"]["poses"][view], matrix[:3, :4])
    focal = 0.5 * 16 / math.tan(0.5 * meta["camera_angle_x"])
    assert torch.allclose(item["query"]["focals"], torch.tensor([[focal, focal]]))


def test_the_cameras_see_the_sphere_where_ginr_rays_hit_it(shapenet_folder):
    """The test renderer and ginr.render.rays agree on the camera convention: a pixel is foreground exactly where
    its ginr ray meets the sphere (its radius found from the view itself)."""
    data = eval_dataset(views_config(shapenet_folder))
    views = data[0]["query"]
    origins, directions = render.rays(views["poses"], views["focals"], 16, 16)
    d = directions / directions.norm(dim=-1, keepdim=True)
    closest = (origins - (origins * d).sum(-1, keepdim=True) * d).norm(dim=-1)  # distance of the ray to the origin
    foreground = (views["images"] < 1).any(dim=-1)
    radius = closest[foreground].max()
    assert foreground.float().mean() > 0.2  # the object fills a good part of the view
    assert (closest[~foreground] >= radius - 1e-4).all()


def test_training_draws_are_distinct_training_views_seeded_by_the_sample(shapenet_folder):
    data = train_dataset(views_config(shapenet_folder, train_views=4))
    for seed in range(20):
        _, frames = data.draw(0, seed)
        assert len(set(frames)) == 3 and max(frames) < 4  # views 0 .. train_views - 1
    assert data.draw(1, 7) == data.draw(1, 7)
    assert torch.equal(data[(1, 7)]["query"]["images"], data[(1, 7)]["query"]["images"])
    assert len({tuple(data.draw(1, seed)[1]) for seed in range(20)}) > 1


def test_evaluation_is_a_fixed_list_of_draws_from_all_views(shapenet_folder):
    """Quirk 24 fixed: instance i is draw i // n of object i mod n, the same in every dataset object (so in every
    evaluation, process and run); draws come from all frames, not only the training views."""
    config = views_config(shapenet_folder, eval_draws=20)
    first, second = eval_dataset(config), eval_dataset(config)
    assert len(first) == 2 * 20
    assert [obj.folder.name for obj in first.objects] == SHAPENET_SPLITS["test"]
    draws = [first.draw(i, None) for i in range(len(first))]
    assert [obj.folder.name for obj, _ in draws[:4]] == ["e0", "e1", "e0", "e1"]
    assert [frames for _, frames in draws] == [second.draw(i, None)[1] for i in range(len(second))]
    assert max(max(frames) for _, frames in draws) >= 6  # beyond train_views
    assert len({tuple(frames) for _, frames in draws}) > 10
    assert torch.equal(first[3]["support"]["images"], second[3]["support"]["images"])


def test_redraw_eval_gives_the_reference_new_draws_every_time(shapenet_folder):
    data = eval_dataset(views_config(shapenet_folder, eval_draws=20, redraw_eval=True))
    once = [data.draw(i, None)[1] for i in range(len(data))]
    again = [data.draw(i, None)[1] for i in range(len(data))]
    assert once != again


def test_a_loader_batches_nested_views(shapenet_folder):
    data = train_dataset(views_config(shapenet_folder))
    plan = BatchPlan.derive(4, 1, 1)
    batch = next(iter(make_loader(data, TrainBatchSampler(len(data), plan, 0, seed=0, epoch=0), 0)))
    assert batch["support"]["images"].shape == (4, 2, 16, 16, 3)
    assert batch["query"]["poses"].shape == (4, 1, 3, 4)


def test_missing_layout_and_bad_views_are_named(tmp_path, shapenet_folder):
    root = write_shapenet(tmp_path / "copy", frames=4)
    with pytest.raises(FileNotFoundError, match="lamp_splits.json is missing"):
        train_dataset(views_config(root, category="lamps"))
    (root / "lamp_splits.json").write_text(json.dumps(SHAPENET_SPLITS))
    with pytest.raises(FileNotFoundError, match="no lamps/ folder beside lamp_splits.json"):
        train_dataset(views_config(root, category="lamps"))
    with pytest.raises(ValueError, match="no split 'dev'"):
        train_dataset(views_config(root, train_split="dev"))
    with pytest.raises(ValueError, match="fewer than the 3 distinct views .* --data.train-views"):
        train_dataset(views_config(root, train_views=2))
    with pytest.raises(BadFileError, match=r"r_\d\.png is 16x16 px but --data.resolution is 32"):
        train_dataset(views_config(root, resolution=32))[(0, 0)]
    (root / "cars" / "t0" / "r_1.png").write_bytes(b"not a png")
    data = train_dataset(views_config(root, train_views=4, support_views=3))
    with pytest.raises(BadFileError, match="cannot read the view .*r_1.png"):
        data[(0, 0)]


def test_learnit_file_paths_name_png_files():
    assert shapenet.image_name("./train/r_12") == "r_12.png"
    assert shapenet.image_name("rgb/000003.png") == "000003.png"
