"""A model config read from a folder is checked against the types of the model's constructor defaults, so that a
field of the wrong type (``"model_channels": "64"``) is a ``TypeError`` naming the field, not a traceback from
inside the first layer that uses it."""

from __future__ import annotations

import functools
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


def extends_config(parent: type, defaults: dict[str, Any] | None = None, without: tuple[str, ...] = ()):
    """For the ``__init__(self, *, <its own fields>, **parent_config)`` of a model that extends ``parent``'s network.

    diffusers' ``ConfigMixin`` records and reloads exactly the fields an ``__init__`` signature names, so a subclass
    would otherwise re-declare every field of its parent. This gives the decorated ``__init__`` the full signature —
    the parent's fields (their defaults replaced by ``defaults``, those in ``without`` left out), then its own — and
    calls it with every field resolved, so ``parent_config`` holds the parent's fields, ready for
    ``super().__init__(**parent_config)``. Apply it below ``@register_to_config``.
    """
    defaults = defaults or {}

    def decorate(init):
        own = inspect.signature(init).parameters
        fields = [p for name, p in own.items() if name != "self" and p.kind is inspect.Parameter.KEYWORD_ONLY]
        inherited = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name, p.default))
            for name, p in inspect.signature(parent.__init__).parameters.items()
            if name != "self" and name not in without and name not in own
        ]
        signature = inspect.Signature([own["self"], *inherited, *fields])

        @functools.wraps(init)
        def resolved_init(self, **kwargs: Any) -> None:
            bound = signature.bind(self, **kwargs)
            bound.apply_defaults()
            init(self, **{name: value for name, value in bound.arguments.items() if name != "self"})

        resolved_init.__signature__ = signature
        return resolved_init

    return decorate
