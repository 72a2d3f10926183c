"""The Hugging Face Hub model card (README.md) of a trained ginr model."""

from __future__ import annotations

from ginr import config as config_lib
from ginr.config import MetaINRConfig

CITATION = """@inproceedings{kim2023generalizable,
  title     = {Generalizable Implicit Neural Representations via Instance Pattern Composers},
  author    = {Kim, Chiheon and Lee, Doyup and Kim, Saehoon and Cho, Minsu and Han, Wook-Shin},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2023}
}"""

TASKS = {1: "audio", 2: "image", 3: "novel-view synthesis"}


def usage(config: config_lib.Config, repo_id: str) -> str:
    """How to use the model: decode signals at any resolution, or render novel views of an object (NeRF)."""
    if config.model.hyponet.input_dim == 3:
        return f"""```bash
python recipes/render.py {repo_id} --folder OBJECT_FOLDER --views 10 20 --orbit 40   # learnit layout: transforms.json + PNGs
python recipes/reconstruct.py {repo_id} OBJECT_FOLDER --support 0               # render the held-out views, with PSNR
```"""
    return f"""```python
import ginr
from ginr.inference import encode, decode

loaded = ginr.from_pretrained("{repo_id}")
modulation = encode(loaded.model, loaded.params, signals, loaded.config.data.coord_range).modulation
values = decode(loaded.model, loaded.params, modulation, shape, loaded.config.data.coord_range)
```

or from the command line: `python recipes/reconstruct.py {repo_id} INPUT --scale 3`."""


def model_card(
    config: config_lib.Config, repo_id: str, evaluation: list[dict], samples: list[str], step: int | None = None
) -> str:
    """Markdown with YAML front matter: what the model is, the data and preset, the held-out PSNR table, sample
    reconstructions (file names relative to the repo), how to load it and the citation."""
    task = TASKS.get(config.model.hyponet.input_dim, "signal")
    latest = [row for row in evaluation if row.get("step") == max(r.get("step", 0) for r in evaluation)]
    metric_columns = [c for c in ("psnr", "ssim", "mse", "count") if any(c in row for row in latest)]
    table = ["| weights | " + " | ".join(metric_columns) + " |", "|---" * (len(metric_columns) + 1) + "|"]
    for row in latest:
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in metric_columns]
        table.append(f"| {row.get('weights', 'raw')} | " + " | ".join(cells) + " |")
    psnr = next((row["psnr"] for row in latest if "psnr" in row), None)
    front = [
        "---",
        "library_name: ginr",
        "license: mit",
        "tags:",
        "- implicit-neural-representation",
        "- instance-pattern-composers",
        f"- {config.model_name}",
        f"- {task.replace(' ', '-')}",
    ]
    if psnr is not None:
        front += [
            "model-index:",
            f"- name: {repo_id}",
            "  results:",
            "  - task:",
            f"      type: {task.replace(' ', '-')}-reconstruction",
            "    dataset:",
            f"      name: {config.data_name}",
            f"      type: {config.data_name}",
            "    metrics:",
            "    - type: psnr",
            f"      value: {psnr:.4f}",
        ]
    front.append("---")
    sample_lines = [f"![reconstruction]({name})" for name in samples] or ["(no samples were rendered)"]
    body = f"""
# {repo_id}

A generalizable implicit neural representation trained with ginr: `{config.model_name}` on
`{config.data_name}` ({task}){f", step {step}" if step is not None else ""}. The model is the paper's instance pattern
composer setup (Kim et al., CVPR 2023): a shared coordinate MLP whose modulated layer is made per instance
{"by a few meta-learned gradient steps" if isinstance(config.model, MetaINRConfig) else "by a transformer hypernetwork"}.

## Held-out evaluation

{chr(10).join(table)}

PSNR is the mean over instances of each instance's PSNR (peak 1), on unclamped outputs.

## Samples

{"One object per row: its support views, the ground-truth query view, the render." if task == TASKS[3] else "Ground truth (top) over reconstructions (bottom)."}

{chr(10).join(sample_lines)}

## Use it

{usage(config, repo_id)}

## Training configuration

```json
{config_lib.dumps(config)}
```

## Citation

```bibtex
{CITATION}
```
"""
    return "\n".join(front) + "\n" + body
