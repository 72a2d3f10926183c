"""Share a trained run on the Hugging Face Hub: weights, config, evaluation metrics, sample reconstructions and a
model card, in one command.

    python recipes/push_to_hub.py runs/<run> --repo-id user/ginr-celeba178
    python recipes/push_to_hub.py runs/<run> --repo-id user/ginr-celeba178 --dry-run      # stage only, print the folder

The newest complete checkpoint is uploaded. Samples are rendered from the first held-out instances when the data is
reachable (else the card says so). Anyone then loads it with ``ginr.from_pretrained("user/ginr-celeba178")``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import tyro
from accelerate import Accelerator
from torchvision.utils import save_image

from ginr import cli, from_pretrained, hub
from ginr.data import EvalBatchSampler, eval_dataset, make_loader
from ginr.model_card import model_card
from ginr.train.checkpoint import read_trainer_state
from ginr.train.evaluate import evaluate_config


@dataclasses.dataclass
class Args:
    run: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="RUN")]
    """The run folder (its newest complete checkpoint is pushed) or a checkpoint folder."""
    repo_id: str
    """Hub repository, e.g. user/ginr-celeba178."""
    private: bool = False
    """Create the repository as private."""
    revision: str | None = None
    """Branch to push to (None: main)."""
    samples: int = 4
    """Held-out instances rendered as samples (0: none)."""
    stage_dir: str | None = None
    """Assemble the upload here (None: a temporary folder)."""
    dry_run: bool = False
    """Only assemble the folder and print where it is."""


def render_samples(loaded, count: int, stage: Path) -> list[str]:
    """PNG grids (ground truth over reconstruction, or waveforms) of the first ``count`` held-out instances."""
    try:
        dataset = eval_dataset(loaded.config.data)
        sampler = EvalBatchSampler(min(count, len(dataset)), count, 1, 0)
    except (FileNotFoundError, ValueError) as error:
        print(f"no samples: the held-out data is not reachable here ({error})")
        return []
    loader = make_loader(dataset, sampler, 0)
    result = evaluate_config(loaded.config, loaded.model, loaded.params, loader, accelerator=Accelerator(cpu=True))
    names = []
    (stage / "samples").mkdir(exist_ok=True)
    for name, image in result.images.items():
        save_image(image, stage / "samples" / f"{name}.png")
        names.append(f"samples/{name}.png")
    return names


def main(args: Args) -> None:
    with cli.refusals():
        folder = hub.model_dir(args.run)
        loaded = from_pretrained(folder)
    run_dir = folder.parents[2] if folder.parent.parent.name == "checkpoints" else None
    stage = Path(args.stage_dir or tempfile.mkdtemp(prefix="ginr-hub-"))
    stage.mkdir(parents=True, exist_ok=True)
    for name in (hub.CONFIG_NAME, hub.WEIGHTS_NAME):
        shutil.copy2(folder / name, stage / name)
    evaluation, step = [], None
    if (folder.parent / "trainer_state.json").is_file():
        state = read_trainer_state(folder.parent)
        evaluation, step = state.get("eval_history", []), state.get("step")
    elif run_dir is not None and (run_dir / "eval_metrics.json").is_file():
        evaluation = json.loads((run_dir / "eval_metrics.json").read_text())
    (stage / "eval_metrics.json").write_text(json.dumps(evaluation, indent=2))
    samples = render_samples(loaded, args.samples, stage) if args.samples else []
    (stage / "README.md").write_text(model_card(loaded.config, args.repo_id, evaluation, samples, step))
    if args.dry_run:
        print(f"staged in {stage} (dry run: nothing uploaded)")
        return
    from huggingface_hub import HfApi, errors

    # the Hub's HTTP, offline-mode and missing-token errors are OSErrors; since huggingface_hub 1.0 a network that
    # cannot be reached raises its HTTP client's errors, which are not (errors.HTTPError is their base there)
    failures = (OSError, getattr(errors, "HTTPError", OSError))
    api = HfApi()
    try:
        api.create_repo(args.repo_id, private=args.private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(stage),
            repo_id=args.repo_id,
            revision=args.revision,
            commit_message=f"ginr {loaded.config.model_name} on {loaded.config.data_name}"
            + (f", step {step}" if step else ""),
        )
    except failures as error:
        cli.fail(
            f"could not push to {args.repo_id}: {type(error).__name__}: {error}. The upload is staged in {stage}; "
            "check the network (HF_HUB_OFFLINE unset) and a write token (`hf auth login`), then run this again",
            status=1,
        )
    print(f"pushed {folder} to {info}")


if __name__ == "__main__":
    main(tyro.cli(Args))
