"""Model registry: the names users type after ``--model``, their config types and constructors."""

from __future__ import annotations

from ginr.config import HypernetINRConfig, MetaINRConfig
from ginr.models.base import Encoding, Model
from ginr.models.hypernet import HypernetINR
from ginr.models.meta import MetaINR

_REGISTRY = {
    "ipc-meta": (MetaINRConfig, MetaINR),
    "ipc-transinr": (HypernetINRConfig, HypernetINR),
    "transinr": (HypernetINRConfig, HypernetINR),
    "learned-init": (MetaINRConfig, MetaINR),
}


def model_names() -> tuple[str, ...]:
    """The names of the models known now: the shipped ones, then those :func:`register` added."""
    return tuple(_REGISTRY)


def register(name: str, config_type: type, model_class: type) -> None:
    """Make a model of your own known by ``name``: ``build``, ``save_pretrained`` / ``from_pretrained`` and config
    files then treat it like the shipped ones. ``model_class(config)`` must give an object with the
    :class:`ginr.models.base.Model` methods, ``config_type`` is its config dataclass. A name already taken is
    refused."""
    if name in _REGISTRY:
        raise ValueError(f"a model named {name!r} is already registered; pick another name")
    _REGISTRY[name] = (config_type, model_class)


def _entry(name: str):
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)} (a model of your own: "
            "ginr.models.register it first)"
        )
    return _REGISTRY[name]


def model_config_type(name: str) -> type:
    """The config dataclass of the model called ``name``."""
    return _entry(name)[0]


def build(name: str, config) -> Model:
    """The model object (static config + pure functions) called ``name``."""
    config_type, cls = _entry(name)
    if not isinstance(config, config_type):
        raise TypeError(f"model {name!r} takes a {config_type.__name__}, got {type(config).__name__}")
    return cls(config)


__all__ = ["Encoding", "Model", "build", "model_config_type", "model_names", "register"]
