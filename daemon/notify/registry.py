"""Channel types by name: a new channel type is one module plus one line here.

Each module owns its config struct, renderer and Notifier (see notify/base.py); the config
loader builds the `channels:` union from this list and the dispatcher builds notifiers from it,
so neither names a channel type.
"""

from __future__ import annotations

import importlib
from typing import Any, Union

from gex_alertd.notify.base import ChannelType, Notifier
from gex_alertd.notify.channel import ChannelBase

# the modules under gex_alertd.notify that define a `CHANNEL`, one line each
_MODULES = (
    "webhook",
    "slack",
    "email",
    "console",
    "alertmanager",
    "discord",
    "teams",
)


def _load(module: str) -> ChannelType[Any]:
    kind = importlib.import_module(f"gex_alertd.notify.{module}").CHANNEL
    assert isinstance(kind, ChannelType), f"gex_alertd.notify.{module}.CHANNEL"
    return kind


_TYPES: tuple[ChannelType[Any], ...] = tuple(_load(m) for m in _MODULES)

BY_NAME: dict[str, ChannelType[Any]] = {t.name: t for t in _TYPES}
BY_CONFIG: dict[type[ChannelBase], ChannelType[Any]] = {t.config: t for t in _TYPES}


def channel_config_union() -> Any:
    return Union[tuple(t.config for t in _TYPES)]  # noqa: UP007 - built at run time


def build_notifier(name: str, cfg: ChannelBase) -> Notifier[Any]:
    kind = BY_CONFIG.get(type(cfg))
    if kind is None:
        raise TypeError(f"unknown channel type {type(cfg).__name__}")
    return kind.notifier(name, cfg)
