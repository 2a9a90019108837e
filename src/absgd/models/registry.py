"""Models by name: :func:`register_model`, :func:`build_model`, :func:`list_models`.

A builder is a function ``builder(num_classes, **options) -> nn.Module``. Registering it under a
name lets configs and the command line refer to the model by that name::

    @register_model("tiny")
    def tiny(num_classes: int, *, width: int = 8) -> nn.Module: ...

    model = build_model("tiny", num_classes=10, width=16)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["build_model", "get_model_builder", "list_models", "register_model"]

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

_REGISTRY: dict[str, Builder] = {}


def register_model(name: str, *, overwrite: bool = False) -> Callable[[B], B]:
    """Decorator registering a model builder under ``name`` (returns the builder unchanged).

    The builder's first parameter must be ``num_classes``. Registering a name twice raises
    ``ValueError`` unless ``overwrite=True``.
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(
            f"model name must be a non-empty string without outer spaces, got {name!r}"
        )

    def decorator(builder: B) -> B:
        params = list(inspect.signature(builder).parameters)
        if not params or params[0] != "num_classes":
            raise TypeError(
                f"model builder {builder.__name__!r} must take num_classes as its first "
                f"parameter, got parameters {params}"
            )
        if name in _REGISTRY and not overwrite:
            raise ValueError(
                f"a model named {name!r} is already registered ({_REGISTRY[name].__module__}."
                f"{_REGISTRY[name].__name__}); pass overwrite=True to replace it"
            )
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of the registered models, sorted.

    >>> "resnet32" in list_models()
    True
    """
    return sorted(_REGISTRY)


def get_model_builder(name: str) -> Builder:
    """The builder registered under ``name`` (``ValueError`` listing the names if unknown)."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model {name!r}; registered models: {', '.join(list_models())}"
        ) from None


def build_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the model registered under ``name`` with ``num_classes`` outputs.

    Keyword arguments go to the builder. An unknown name raises ``ValueError`` listing the
    registered names; an argument the builder does not take, or a missing required one, raises
    ``TypeError`` naming it and the accepted arguments.

    >>> import torch
    >>> model = build_model("mlp", num_classes=3, in_features=5, hidden=(8,))
    >>> model(torch.zeros(2, 5)).shape
    torch.Size([2, 3])
    >>> build_model("mlp", 3, in_features=5, widht=8)
    Traceback (most recent call last):
    ...
    TypeError: model 'mlp' got unexpected argument(s) ['widht']; it accepts: in_features, ...
    """
    builder = get_model_builder(name)
    signature = inspect.signature(builder)
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = [p for p in params if p != "num_classes"]
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown and not takes_any:
        raise TypeError(
            f"model {name!r} got unexpected argument(s) {unknown}; it accepts: "
            f"{', '.join(accepted) or '(no options)'}"
        )
    try:
        signature.bind(num_classes, **kwargs)
    except TypeError as err:
        raise TypeError(
            f"model {name!r}: {err}; it accepts: {', '.join(accepted) or '(no options)'}"
        ) from None
    return builder(num_classes, **kwargs)
