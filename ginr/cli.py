"""Command-line parsing shared by the recipes: ``--model`` / ``--data`` (or ``--resume``) pick the base config, then
every field of it is a tyro flag with that config as its default."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import sys
import typing
from pathlib import Path

import tyro

from ginr import config as config_lib
from ginr import hub, presets, rules
from ginr.config import DataConfig, MetaINRConfig
from ginr.data import BadFileError, is_views
from ginr.data.catalog import DATA
from ginr.manifest import CheckpointError
from ginr.models import model_config_type, model_names


def usage() -> str:
    """The head of ``--help``: the models known now (registered ones included) and the data presets."""
    return f"""--model {{{",".join(model_names())}}} --data {{{",".join(presets.DATA_NAMES)}}} [--resume RUN_DIR]
[--init-from MODEL [--init-revision REV]] [FLAGS]

--model and --data choose the paper preset (default: ipc-meta on the embedded photos); every flag below is a field of
that preset, shown with the preset's value. --data.support-views N (the shapenet presets) also sets the token count.
--resume RUN_DIR continues a run from its newest complete checkpoint (flags then override the run's saved config).
--init-from MODEL fine-tunes a trained model: a model folder, a Hub repo id, a run folder (its newest complete
checkpoint) or a checkpoint folder."""


def fail(message: str, status: int = 2) -> None:
    """Print ``error: message`` to stderr and exit with ``status``: 2 (the default) for a usage error refused before
    any work, 1 for a run that had to stop."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


REFUSALS = (ValueError, FileNotFoundError, FileExistsError, CheckpointError, BadFileError)
"""What the recipes refuse with ``error: ...`` and status 2 instead of a traceback: bad flags and values (a
:class:`ginr.hub.ModelFileError` is a ValueError too), data that is not where the config says or a data file that
cannot be read (found while building a cache), a run folder that already holds a run, and checkpoints that are
incomplete or do not fit."""


@contextlib.contextmanager
def refusals(status: int = 2, errors: tuple[type[Exception], ...] = REFUSALS):
    """Inside ``with refusals():`` any of ``errors`` (:data:`REFUSALS`) ends the program through :func:`fail` (its
    message, exit ``status``). Recipes wrap what they check before the work starts: loading the model, the data,
    their flags; and the work itself with ``refusals(1, (BadFileError,))``, for a data file found unreadable."""
    try:
        yield
    except errors as error:
        fail(str(error), status)


def check_inner_steps(config: config_lib.Config, n_steps: int | None, flag: str = "--n-steps") -> None:
    """Refuse ``flag`` (inner steps) that ``config``'s model cannot take: any for a hypernetwork model (a ValueError
    naming the flag and the fix)."""
    if n_steps is None:
        return
    if n_steps < 0:
        raise ValueError(f"{flag} {n_steps} must be >= 0")
    if n_steps and not isinstance(config.model, MetaINRConfig):
        raise ValueError(
            f"{flag} {n_steps}: {config.model_name} is a hypernetwork model (ipc-transinr, transinr), which predicts "
            f"its modulation in one pass and takes no inner steps; drop {flag} (it applies to ipc-meta and "
            "learned-init)"
        )


def with_data_path(data: DataConfig, path: str | None, flag: str = "--data-path") -> DataConfig:
    """``data`` read from ``path`` instead of where the model was trained from (None: unchanged); the embedded photos
    are not read from a folder, so a path for them is refused, naming ``flag``."""
    if path is None:
        return data
    if data.source == "photos":
        raise ValueError(
            f"{flag} {path}: this model was trained on the embedded photos (--data.source photos), which are not read "
            f"from a folder; drop {flag}"
        )
    return dataclasses.replace(data, path=path)


def flag_names(model_type: type) -> set[str]:
    """Every flag tyro makes of a :class:`ginr.config.Config` whose model section is ``model_type``: ``--section.field``
    (hyphenated) for each field, and ``--section.no-field`` for a bool."""
    flags = set()

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            hint = model_type if (cls is config_lib.Config and field.name == "model") else hints[field.name]
            name = f"{prefix}{field.name.replace('_', '-')}"
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{name}.")
            else:
                flags.add(f"--{name}")
                if hint is bool:
                    flags.add(f"--{prefix}no-{field.name.replace('_', '-')}")

    walk(config_lib.Config, "")
    return flags


def refuse_unknown_flags(args: list[str], model_type: type) -> None:
    """Exit with status 2 and the closest known flag when ``args`` hold a flag close to a known one: a typo, or words
    whose initials are a known field (--optim.learning-rate for --optim.lr). tyro reports the others."""
    known = flag_names(model_type)
    for arg in args:
        flag = arg.split("=", 1)[0]
        if not flag.startswith("--") or flag in ("--help", "--") or flag.replace("_", "-") in known:
            continue
        section, _, field = flag.rpartition(".")
        acronym = f"{section}.{''.join(word[0] for word in field.replace('_', '-').split('-') if word)}"
        close = [acronym] if acronym in known else []
        close += difflib.get_close_matches(flag, sorted(known), n=1, cutoff=0.6)
        if close:
            fail(f"unknown flag {flag}; did you mean {close[0]}?")


def parse_train_args(argv: list[str] | None = None, *, prog: str = "train.py", console: bool = True):
    """Returns ``(config, resume_dir or None)``. Bad names, flags or values exit with status 2 and a message; the
    config passes :func:`ginr.rules.validate` (with the rules of a fresh run unless resuming)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--model", default=None)
    pre.add_argument("--data", default=None)
    pre.add_argument("--resume", default=None)
    pre.add_argument("--data.support-views", "--data.support_views", dest="support_views", type=int, default=None)
    pre.add_argument("--init-from", default=None)
    pre.add_argument("--init-revision", default=None)
    known, rest = pre.parse_known_args(argv)
    resume = Path(known.resume) if known.resume else None
    with refusals():
        if resume is not None:
            base = _resumed_config(resume)
            for flag, given, saved in (
                ("--model", known.model, base.model_name),
                ("--data", known.data, base.data_name),
                ("--data.support-views", known.support_views, base.data.support_views),
            ):
                if given is not None and given != saved:
                    raise ValueError(f"{flag} {given} differs from the resumed run's {saved}; drop {flag}")
            if known.init_from:
                raise ValueError("--init-from starts a new run; a resumed run continues from its own checkpoint")
        elif known.init_from:
            base = _pretrained_config(known.init_from, known.init_revision, known.model, known.data)
            if known.support_views is not None and known.support_views != base.data.support_views:
                raise ValueError(
                    f"--data.support-views {known.support_views} differs from the {base.data.support_views} support "
                    f"view(s) {known.init_from} reads (its token count); drop --data.support-views"
                )
        else:
            base = presets.resolve(known.model or "ipc-meta", known.data or "photos", known.support_views)
    model_type = model_config_type(base.model_name)
    refuse_unknown_flags(rest, model_type)
    config = tyro.cli(
        config_lib.Config[model_type], default=base, args=rest, prog=prog, description=usage(), console_outputs=console
    )
    with refusals():
        rules.validate(config, fresh_run=resume is None)
    return config, resume


def _pretrained_config(source: str, revision: str | None, model: str | None, data: str | None) -> config_lib.Config:
    """The config of a model to fine-tune or evaluate: its own (the architecture must match its weights), with the
    data preset ``data`` when given, and ``train.init_from`` naming where the weights come from."""
    saved = hub.read_config(hub.model_dir(source, revision))
    if model is not None and model != saved.model_name:
        raise ValueError(f"--model {model} differs from {source}'s {saved.model_name}; drop --model")
    if data is not None and data != saved.data_name:
        if data not in DATA:
            raise ValueError(f"--data {data}: unknown data preset; choose one of {', '.join(DATA)}")
        new = DATA[data]
        if is_views(new):  # the model's token count fixes its support views
            new = dataclasses.replace(new, support_views=saved.data.support_views)
        saved = dataclasses.replace(saved, data=new, data_name=data)
    return dataclasses.replace(
        saved, train=dataclasses.replace(saved.train, init_from=source, init_revision=revision, run_name=None)
    )


def _resumed_config(run_dir: Path) -> config_lib.Config:
    """The saved config of the run ``--resume`` names (read by :func:`ginr.hub.read_config`)."""
    if not (run_dir / hub.CONFIG_NAME).is_file():
        raise ValueError(
            f"--resume {run_dir}: {run_dir / hub.CONFIG_NAME} not found; give the folder of a ginr run (the "
            "--train.out-dir / --train.run-name folder that holds config.json and checkpoints/)"
        )
    return hub.read_config(run_dir)
