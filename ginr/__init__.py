"""ginr: generalizable implicit neural representations with Instance Pattern Composers (Kim et al., CVPR 2023).

A model is ``init(generator) -> params`` plus pure functions of that params pytree (``encode``, ``decode``); see
:mod:`ginr.models.base`. :func:`validate` refuses a config that cannot work, listing every problem (:mod:`ginr.rules`).

Docstrings cite the reference behaviour ginr reproduces as "fidelity n.m" (section n.m of ``docs/fidelity.md`` in the
repository), "fidelity policy" (its first section) and "quirk N" (its section 8, quirks 1-30).
"""

from ginr import presets
from ginr.config import Config
from ginr.hub import from_pretrained, save_pretrained
from ginr.models import build
from ginr.rules import validate


def init(config: Config, generator=None) -> dict:
    """The initial params of the model an experiment ``config`` describes (``config.model_name``, ``config.model``)."""
    return build(config.model_name, config.model).init(generator)


__all__ = ["Config", "build", "from_pretrained", "init", "presets", "save_pretrained", "validate"]
__version__ = "0.1.0"
