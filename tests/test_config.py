"""The config dataclasses and their JSON form (ginr.config), the rules that refuse a config (ginr.rules), and the
package's import graph."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from ginr import config as config_lib
from ginr import models, presets, rules
from ginr.config import MetaINRConfig
from ginr.models import build, model_config_type
from ginr.models.meta import MetaINR

ROOT = Path(__file__).resolve().parents[1]


def test_non_finite_policy_defaults_to_skip_with_a_limit():
    train = config_lib.TrainConfig()
    assert (train.nonfinite, train.skip_limit) == ("skip", 10)


def test_config_json_round_trip():
    for model, data in presets.PRESETS:
        config = presets.resolve(model, data)
        again = config_lib.from_dict(json.loads(config_lib.dumps(config)), model_config_type)
        assert again == config


def test_from_dict_refuses_unknown_fields():
    data = config_lib.to_dict(presets.resolve("ipc-meta", "photos"))
    data["model"]["rnak"] = [3]
    with pytest.raises(ValueError, match=r"model: unknown field\(s\) \['rnak'\] for MetaINRConfig"):
        config_lib.from_dict(data, model_config_type)


@pytest.mark.parametrize(
    "section, field, value, message",
    [
        ("train", "batch_size", "16", "train.batch_size='16': expected int"),
        ("train", "cpu", 1, "train.cpu=1: expected bool"),
        ("train", "batch_size", True, "train.batch_size=True: expected int"),
        ("optim", "betas", [0.9], r"optim.betas=\[0.9\]: expected 2 values"),
        ("optim", "min_lr", "none", r"optim.min_lr='none' is not a float \| None"),
        ("data", "source", "s3", r"data.source='s3': choose one of \['photos', 'imagefolder'"),
        ("model", "modulated_layers", [1, "2"], r"model.modulated_layers=\[1, '2'\] is not a tuple"),
    ],
)
def test_from_dict_refuses_values_of_the_wrong_type(section, field, value, message):
    """A hand-edited config.json (a run's, a checkpoint's, a Hub folder's) cannot smuggle in a value of another type."""
    data = config_lib.to_dict(presets.resolve("ipc-meta", "photos"))
    data[section][field] = value
    with pytest.raises(ValueError, match=message):
        config_lib.from_dict(data, model_config_type)


# ---- the rules (ginr.rules) ----------------------------------------------------------------------------------------


def with_model(config, **fields):
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **fields))


def test_validate_reports_section_model_and_cross_section_problems_together():
    config = with_model(presets.resolve("learned-init", "photos"), factorized=True, inner_lr=0.0)
    config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, lr=-1.0))
    with pytest.raises(ValueError) as info:
        rules.validate(config)
    assert str(info.value).split("\n") == [
        "invalid configuration:",
        "  --optim.lr=-1.0: must be > 0",
        "  --model.inner-lr=0.0 must be > 0",
        "  --model.factorized is ipc-meta, not learned-init: use --model ipc-meta",
    ]


def test_the_rank_binds_only_a_factorized_meta_model():
    learned_init = with_model(presets.resolve("learned-init", "photos"), rank=(0,))
    rules.validate(learned_init)
    assert build("learned-init", learned_init.model).ranks == {}
    with pytest.raises(ValueError, match="--model.rank: 0 for layer 1 must be in 1..256"):
        build("ipc-meta", with_model(presets.resolve("ipc-meta", "photos"), rank=(0,)).model)


def test_a_model_of_your_own_is_not_bound_by_the_shipped_names_factorized(monkeypatch):
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))  # registrations end with the test
    models.register("my-full-meta", MetaINRConfig, MetaINR)
    config = dataclasses.replace(presets.resolve("ipc-meta", "photos"), model_name="my-full-meta")
    rules.validate(with_model(config, factorized=False))


def test_the_photos_path_rule_binds_only_a_fresh_run():
    config = presets.resolve("ipc-meta", "photos")
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, path="/data/mine"))
    rules.validate(config)
    with pytest.raises(ValueError, match="--data.path=/data/mine is not read by --data.source photos"):
        rules.validate(config, fresh_run=True)


def module_imports(path: Path) -> set[str]:
    """The ginr modules ``path`` imports at module level (imports inside functions are not followed)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update(
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                for alias in node.names
            )
    return {name for name in found if name.startswith("ginr")}


MODULES = {
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
    for path in (ROOT / "ginr").rglob("*.py")
}


def test_the_ginr_package_has_no_import_cycle():
    graph = {name: module_imports(path) - {name} for name, path in MODULES.items()}
    done, path = set(), []

    def visit(name: str) -> None:
        assert name not in path, "import cycle: " + " -> ".join([*path[path.index(name) :], name])
        if name in done or name not in graph:
            return
        path.append(name)
        for target in sorted(graph[name]):
            visit(target)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert "ginr.rules" in graph["ginr.hub"] and "ginr.rules" in graph["ginr.models.meta"]  # the graph is read


def test_the_config_module_imports_no_model():
    tree = ast.parse((ROOT / "ginr" / "config.py").read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name.startswith("ginr")]
