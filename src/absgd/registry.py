"""A tiny name → factory registry, so configs can say ``loss: ldam`` and get the object."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Factories registered under unique names.

    >>> r: Registry = Registry("colour")
    >>> @r.register("red")
    ... def red(shade: float = 1.0) -> str:
    ...     return f"red {shade}"
    >>> r.build("red", shade=0.5)
    'red 0.5'
    >>> r.build("blue")
    Traceback (most recent call last):
    ...
    ValueError: unknown colour 'blue'; valid names: red
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering a factory under ``name`` (names are unique)."""

        def add(factory: T) -> T:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return add

    def get(self, name: str) -> T:
        """The factory registered as ``name``; ``ValueError`` listing the valid names if none."""
        try:
            return self._factories[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            ) from None

    def build(self, name: str, /, **kwargs: Any) -> Any:
        """Call the factory ``name`` with ``kwargs``; unknown keywords name the valid ones."""
        factory = self.get(name)
        params = inspect.signature(factory).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            accepted = [
                n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            unknown = sorted(set(kwargs) - set(accepted))
            if unknown:
                raise ValueError(
                    f"{self.kind} {name!r} got unknown option(s) {', '.join(unknown)}; "
                    f"valid options: {', '.join(accepted) or 'none'}"
                )
        return factory(**kwargs)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
