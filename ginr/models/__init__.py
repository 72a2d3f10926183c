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

MODEL_NAMES = tuple(_REGISTRY)


def _entry(name: str):
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
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


__all__ = ["Encoding", "Model", "MODEL_NAMES", "build", "model_config_type"]
