"""Transforms by name: the registry, and the step a configured transform compiles to.

A transform is registered once with a pydantic model of its arguments and a builder. At load
time the mapping validates the arguments against the model and calls the builder, which
returns a :class:`Step`: plain functions for both directions, so mapping a record never
touches pydantic. Plugins add transforms the same way the built-in ones are added::

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        width: int = 5

    @register_transform("zfill", Params)
    def zfill(params: Params, ctx: BuildContext) -> Step:
        "Pad digits with leading zeros."
        return Step(pull=lambda v: str(v).zfill(params.width), push=identity)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

Fn = Callable[[Any], Any]


class TransformError(ValueError):
    """A value a transform cannot convert. The message names the value: ``bad date '31/31'``."""


def identity(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Step:
    """One configured transform, ready to run.

    ``pull`` turns the remote-side value into the hub-side value, ``push`` does the reverse.
    ``canon`` normalises a value that is already hub-side (a hub edit); ``None`` means
    ``pull`` is idempotent on hub-side values and is used for that too.

    Most steps take one value and give one (``takes == gives == 1``) and never see ``None``:
    the chain passes ``None`` through them, and applies them to each value in turn where the
    chain carries several values. A fan-out step (``split_name``: takes 1, gives 2) returns a
    tuple; a fan-in step (``join_name``: takes 2, gives 1) receives one. ``handles_none``
    steps are called with ``None`` too (``default``); ``fills_missing`` steps also run when
    the remote record does not carry the path at all.
    """

    pull: Fn
    push: Fn
    canon: Fn | None = None
    takes: int = 1
    gives: int = 1
    handles_none: bool = False
    fills_missing: bool = False


@dataclass(frozen=True)
class BuildContext:
    """What a builder may use besides its own arguments."""

    phone_region: str | None = None
    """The hub-wide region for phone numbers written without a country code."""


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


P = TypeVar("P", bound=BaseModel)
Builder = Callable[[Any, BuildContext], Step]


@dataclass(frozen=True)
class TransformSpec:
    name: str
    summary: str
    params: type[BaseModel]
    build: Builder


_REGISTRY: dict[str, TransformSpec] = {}


def register_transform(
    name: str, params: type[BaseModel] = NoParams, *, replace: bool = False
) -> Callable[[Callable[[P, BuildContext], Step]], Callable[[P, BuildContext], Step]]:
    """Register the decorated builder as transform ``name`` with argument model ``params``.

    The builder's first docstring line is the transform's summary. Registering a taken name
    raises ``ValueError`` unless ``replace`` is true.
    """

    def decorate(build: Callable[[P, BuildContext], Step]) -> Callable[[P, BuildContext], Step]:
        if name in _REGISTRY and not replace:
            raise ValueError(f"transform {name!r} is already registered")
        summary = (build.__doc__ or "").strip().splitlines()[0] if build.__doc__ else ""
        _REGISTRY[name] = TransformSpec(name, summary, params, build)
        return build

    return decorate


def get_transform(name: str) -> TransformSpec | None:
    return _REGISTRY.get(name)


def transform_names() -> list[str]:
    """Every registered transform name, sorted."""
    return sorted(_REGISTRY)


def registered_transforms() -> list[TransformSpec]:
    """Every registered transform, sorted by name (for listings and docs)."""
    return [_REGISTRY[name] for name in transform_names()]
