"""A model config read from a folder is checked against the types of the model's constructor defaults, so that a
field of the wrong type (``"model_channels": "64"``) is a ``TypeError`` naming the field, not a traceback from
inside the first layer that uses it."""

from __future__ import annotations

import inspect
from numbers import Real
from typing import Any


def check_config_types(cls: type, config: dict[str, Any]) -> None:
    """Each field whose constructor default is a bool, int, float, str or sequence must hold a value of that kind."""
    signature = inspect.signature(cls.__init__)
    for name, value in config.items():
        parameter = signature.parameters.get(name)
        if parameter is None or parameter.default is inspect.Parameter.empty or parameter.default is None:
            continue
        default = parameter.default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, Real) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, (tuple, list)):
            ok = isinstance(value, (tuple, list))
        else:
            continue
        if not ok and value is not None:
            raise TypeError(f"{cls.__name__} config field {name!r} must be of type {type(default).__name__} (default "
                            f"{default!r}), got {type(value).__name__} {value!r:.60}")


class CheckedConfigMixin:
    """Mix into a ``ModelMixin, ConfigMixin`` model (first) to check every config it is built from."""

    @classmethod
    def from_config(cls, config: Any = None, **kwargs: Any):
        check_config_types(cls, dict(config or {}) | {k: v for k, v in kwargs.items() if not k.startswith("_")})
        return super().from_config(config, **kwargs)
