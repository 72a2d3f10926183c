"""Render novel views of an object with a trained NeRF: chosen views beside their ground truth, with PSNR, and an
orbit around the object as a GIF.

    python recipes/render.py runs/<run> --views 30 60 90                  # the first test object, support frame 0
    python recipes/render.py runs/<run> --object 1a9b552befd6306cc8f2d5fe7449af61 --support 3 --orbit 60
    python recipes/render.py runs/<run> --folder data/shapenet/cars/<id> --support 0 17 --views 5

The model reads as many support views as it was trained with (``--data.support-views``, 1 to 5 in the paper). The
orbit turns the first support view's camera about the world's up axis (the one the object's cameras agree on), so it
keeps the dataset's camera distance and elevation. Full views are rendered without jitter, in chunks of the model
config's ``render.chunk_rays`` rays (slow on a CPU at the paper's size: render on a GPU where there is one).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import torch
import tyro
from PIL import Image
from torchvision.utils import save_image

from ginr import cli, from_pretrained, inference, render, tasks
from ginr.data.shapenet import ViewsObject, read_objects
from ginr.pytree import tree_map


@dataclasses.dataclass
class Args:
    model: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="MODEL")]
    """A run folder, a checkpoint folder, a model folder or a Hugging Face Hub repo id of a NeRF."""
    object: str | None = None
    """Object id in the model's evaluation split (or --split); None: the split's first object."""
    folder: str | None = None
    """An object folder in the learnit layout (transforms.json + PNGs), instead of --object."""
    split: str | None = None
    """Split to find --object in; None: the model's evaluation split."""
    data_path: str | None = None
    """Where the dataset lives, if not where the model was trained from."""
    support: tuple[int, ...] | None = None
    """Frames given to the model as its support views; None: frames 0, 1, ... (as many as the model reads)."""
    views: tuple[int, ...] = ()
    """Frames to render beside their ground truth, with PSNR."""
    orbit: int = 40
    """Frames of the orbit around the object (0: no orbit)."""
    fps: int = 20
    """Orbit frames per second."""
    out: str = "renders"
    """Output folder."""
    revision: str | None = None
    """Hub revision when MODEL is a repo id."""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """Device to render on."""


def find_object(args: Args, data) -> ViewsObject:
    """The object of ``--folder``, or ``--object`` (default: the first) of the split."""
    if args.folder is not None:
        folder = Path(args.folder)
        if not (folder / "transforms.json").is_file():
            raise ValueError(f"--folder {folder}: no transforms.json (an object folder of the learnit layout)")
        return ViewsObject(folder)
    objects = read_objects(data, args.split or data.eval_split)
    if args.object is None:
        return objects[0]
    found = [obj for obj in objects if obj.folder.name == args.object]
    if not found:
        raise ValueError(f"--object {args.object} is not in the {args.split or data.eval_split} split of {data.path}")
    return found[0]


def write_gif(frames: torch.Tensor, path: Path, fps: int) -> None:
    """Frames (T, H, W, 3) in [0, 1] as an endlessly looping GIF."""
    pixels = (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    images = [Image.fromarray(frame.numpy()) for frame in pixels]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def main(args: Args) -> None:
    with cli.refusals():
        if args.orbit < 0 or args.fps < 1:
            raise ValueError(f"--orbit {args.orbit} must be >= 0 (0: no orbit) and --fps {args.fps} >= 1")
        loaded = from_pretrained(args.model, revision=args.revision)
        config = loaded.config
        tasks.require_nerf(config, args.model)
        data = cli.with_data_path(config.data, args.data_path)
        obj = find_object(args, data)
        support = inference.support_frames(obj, args.support, data.support_views)
        views = inference.check_frames(obj, list(args.views), "--views")
        given = obj.views(support, data.resolution)  # every frame is read before anything is rendered
        obj.views(views, data.resolution)
    device = torch.device(args.device)
    params = tree_map(lambda t: t.detach().to(device), loaded.params)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = obj.folder.name
    save_image(given["images"].permute(0, 3, 1, 2), out / f"{name}_support.png", nrow=len(support))
    print(f"{name}: support frames {support} -> {out / f'{name}_support.png'}")

    if views:
        renders, truths, psnr = inference.render_frames(config, loaded.model, params, obj, support, views, device)
        for frame, rendered, truth, value in zip(views, renders, truths, psnr.tolist()):
            target = out / f"{name}_view{frame:03d}.png"
            save_image(torch.stack([truth, rendered.clamp(0, 1)]).permute(0, 3, 1, 2), target)
            print(f"  view {frame}: psnr {value:.2f} dB -> {target} (ground truth | render)")
        print(f"  mean psnr over {len(views)} view(s): {psnr.mean():.2f} dB")

    if args.orbit:
        poses = render.orbit_poses(given["poses"][0], render.up_axis(obj.poses[:, :3, :4]), args.orbit)
        focals = given["focals"][:1].expand(args.orbit, 2)
        size = tuple(given["images"].shape[1:3])
        support_batch = {k: v[None].to(device) for k, v in given.items()}
        frames = inference.novel_views(
            loaded.model, params, support_batch, poses[None].to(device), focals[None].to(device), size, config.render,
            data.depth_range,
        )[0]  # fmt: skip
        target = out / f"{name}_orbit.gif"
        write_gif(frames, target, args.fps)
        print(f"  orbit of {args.orbit} frames -> {target}")


if __name__ == "__main__":
    main(tyro.cli(Args))
