"""Observer plugins registered at start-up (the core eats its own dog food)."""

from __future__ import annotations

DEFAULT_OBSERVERS: list[str] = ["fulfil.notify.plugin:plugin"]


def register_default_observers(registry) -> None:
    import importlib

    for dotted in DEFAULT_OBSERVERS:
        module_name, _, attr = dotted.partition(":")
        plugin = getattr(importlib.import_module(module_name), attr)
        registry.register_observer(plugin, name=dotted)
