"""Finding module plugins, and the one typed facade through which the core calls them.

The rest of the code never touches ``pm.hook``: it asks the :class:`ModuleRegistry`.
"""

from __future__ import annotations

import inspect
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy
from stevedore import ExtensionManager

from fulfil import hookspecs
from fulfil.hookspecs import LIFECYCLE_HOOKS, hookimpl
from fulfil.module import Changes, Done, Failed, ManualWork, ModuleError, ModuleInfo, OperationContext, TransientModuleError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "fulfil.modules"
WRAPPER_NAME = "fulfil.error-wrapper"
MODULE_HOOKS = frozenset({"fulfil_module_info", "fulfil_check_connection", *LIFECYCLE_HOOKS.values()})


@dataclass
class LoadedModule:
    name: str
    plugin: Any
    info: ModuleInfo
    origin: str = "entry point"


@dataclass
class ModuleRegistry:
    """Installed module plugins (by entry-point name), observers, and load errors."""

    pm: pluggy.PluginManager
    modules: dict[str, LoadedModule] = field(default_factory=dict)
    load_errors: dict[str, str] = field(default_factory=dict)
    _callers: dict[tuple[str, str], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- loading ------------------------------------------------------------------

    @classmethod
    def empty(cls) -> ModuleRegistry:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        pm.register(ErrorWrapper(), name=WRAPPER_NAME)
        return cls(pm=pm)

    @classmethod
    def discover(cls, *, observers: bool = True) -> ModuleRegistry:
        """Load every module plugin of the ``fulfil.modules`` entry-point group, and the
        default observer plugins. A plugin that fails is reported, never fatal."""
        registry = cls.empty()
        failures: dict[str, str] = {}

        def on_failure(_manager, entrypoint, exc):
            failures[entrypoint.name] = f"failed to load: {type(exc).__name__}: {exc}"
            log.warning("module plugin %s failed to load: %s", entrypoint.name, exc)

        # stevedore keeps entry points per namespace for the life of the process;
        # discovering again must see plugins installed (or broken) since
        ExtensionManager.ENTRY_POINT_CACHE.pop(ENTRY_POINT_GROUP, None)
        manager = ExtensionManager(
            namespace=ENTRY_POINT_GROUP,
            invoke_on_load=False,
            on_load_failure_callback=on_failure,
        )
        for ext in manager.extensions:
            registry.register_module(ext.name, ext.plugin, origin=f"entry point {ext.entry_point_target}")
        registry.load_errors.update(failures)
        if observers:
            from fulfil.defaults import register_default_observers

            register_default_observers(registry)
        return registry

    def register_module(self, name: str, plugin: Any, *, origin: str = "code") -> LoadedModule | None:
        """Register a module plugin under ``name``. Returns None (and records the
        reason in :attr:`load_errors`) when it cannot be used."""
        if inspect.isclass(plugin):
            try:
                plugin = plugin()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop us
                return self._fail(name, f"failed to load: {type(exc).__name__}: {exc}")
        elif callable(plugin) and not _has_hookimpls(plugin):
            # an entry point may name a factory function returning the plugin object
            try:
                plugin = plugin()
            except Exception as exc:  # noqa: BLE001
                return self._fail(name, f"failed to load: {type(exc).__name__}: {exc}")
        if name in self.modules:
            return self._fail(name, "a module of this name is already registered")
        # cached subset callers filter by a removal list, so a new plugin would leak
        # into them: start afresh
        self._forget_callers()
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # PluginValidationError and friends
            return self._fail(name, f"hooks do not match fulfil's hook specifications: {exc}")
        unknown = sorted(
            caller.name
            for caller in self.pm.get_hookcallers(plugin) or []
            if caller.spec is None
        )
        if unknown:
            self.pm.unregister(plugin)
            return self._fail(name, f"implements hooks fulfil does not know: {', '.join(unknown)}")
        try:
            info = self._caller(name, "fulfil_module_info")()
            if not isinstance(info, ModuleInfo):
                raise TypeError(f"fulfil_module_info returned {type(info).__name__}, not ModuleInfo")
        except Exception as exc:  # noqa: BLE001
            self.pm.unregister(plugin)
            self._forget_callers()
            return self._fail(name, f"fulfil_module_info failed: {type(exc).__name__}: {exc}")
        loaded = LoadedModule(name=name, plugin=plugin, info=info, origin=origin)
        self.modules[name] = loaded
        self.load_errors.pop(name, None)
        log.info("module plugin %s loaded (%s)", name, origin)
        return loaded

    def unregister_module(self, name: str) -> None:
        loaded = self.modules.pop(name, None)
        if loaded is not None:
            self.pm.unregister(loaded.plugin)
        self._forget_callers()
        self.load_errors.pop(name, None)

    def register_observer(self, plugin: Any, name: str | None = None) -> None:
        """An observer plugin implements only observer hooks; it is called on every
        event of every service."""
        bad = MODULE_HOOKS & {n for n in dir(plugin) if n.startswith("fulfil_")}
        if bad:
            raise ValueError(f"observer plugins may not implement module hooks: {sorted(bad)}")
        self.pm.register(plugin, name=name)

    def unregister_observer(self, plugin: Any) -> None:
        self.pm.unregister(plugin)

    def _fail(self, name: str, reason: str) -> None:
        self.load_errors[name] = reason
        log.warning("module plugin %s: %s", name, reason)
        return None

    # -- routing -------------------------------------------------------------------

    def _caller(self, module: str, hook: str) -> Callable[..., Any]:
        """A hook caller that reaches only ``module`` (and the error wrapper)."""
        key = (module, hook)
        caller = self._callers.get(key)
        if caller is None:
            with self._lock:
                others = [
                    p for n, p in self.pm.list_name_plugin() if n != module and n != WRAPPER_NAME
                ]
                caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
                self._callers[key] = caller
        return caller

    def _forget_callers(self) -> None:
        with self._lock:
            self._callers.clear()

    def info(self, module: str) -> ModuleInfo | None:
        loaded = self.modules.get(module)
        return loaded.info if loaded else None

    def missing_reason(self, module: str) -> str:
        reason = self.load_errors.get(module)
        if reason:
            return f"module {module} failed to load: {reason}"
        return f"module {module} is not installed"

    def call_lifecycle(self, module: str, ctx: OperationContext, changes: Changes | None = None):
        """Run one lifecycle hook of ``module``. Never raises: the error wrapper turns
        every failure into a :class:`Failed` result."""
        hook = LIFECYCLE_HOOKS[ctx.kind]
        if module not in self.modules:
            return Failed(self.missing_reason(module))
        if ctx.kind not in self.modules[module].info.operations:
            return Failed(f"module {module} does not support the {ctx.kind} operation")
        kwargs: dict[str, Any] = {"ctx": ctx}
        if ctx.kind == "edit":
            kwargs["changes"] = changes or Changes()
        return self._caller(module, hook)(**kwargs)

    def check_connection(self, module: str, settings: Any) -> str:
        if module not in self.modules:
            raise ModuleError(self.missing_reason(module))
        result = self._caller(module, "fulfil_check_connection")(settings=settings)
        if isinstance(result, Failed):
            raise ModuleError(result.message, details=result.details)
        if result is None:
            return f"module {module} has no connection to check"
        return str(result)

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Call an observer hook on every plugin."""
        getattr(self.pm.hook, hook)(**kwargs)


def _has_hookimpls(obj: Any) -> bool:
    return any(
        n.startswith("fulfil_") and hasattr(getattr(obj, n, None), "fulfil_impl")
        for n in dir(obj)
    )


def failure_from_exception(exc: BaseException, module: str) -> Failed:
    """The error-wrapping layer's one rule, also used for timeouts the engine sees."""
    details = "".join(traceback.format_exception(exc))
    if isinstance(exc, TransientModuleError):
        return Failed(exc.message, transient=True, details=exc.details or details)
    if isinstance(exc, ModuleError):
        return Failed(exc.message, transient=False, details=exc.details or details)
    return Failed(
        f"module {module} crashed: {type(exc).__name__}: {exc}", transient=False, details=details
    )


class ErrorWrapper:
    """Wraps every module hook call: any exception or a missing answer becomes a
    :class:`Failed` result, which the engine turns into a retry or a task."""

    def _wrap(self, hook: str, ctx: OperationContext | None = None):
        try:
            result = yield
        except Exception as exc:  # noqa: BLE001 - that is the whole point
            module = ctx.module_name if ctx else "?"
            log.warning("module %s: %s raised %s", module, hook, type(exc).__name__)
            return failure_from_exception(exc, module)
        if ctx is not None and not isinstance(result, (Done, ManualWork, Failed)):
            return Failed(
                f"module {ctx.module_name} returned {type(result).__name__} from {hook}, "
                "expected Done or ManualWork"
            )
        return result

    @hookimpl(wrapper=True)
    def fulfil_open(self, ctx):
        return (yield from self._wrap("fulfil_open", ctx))

    @hookimpl(wrapper=True)
    def fulfil_edit(self, ctx, changes):
        return (yield from self._wrap("fulfil_edit", ctx))

    @hookimpl(wrapper=True)
    def fulfil_close(self, ctx):
        return (yield from self._wrap("fulfil_close", ctx))

    @hookimpl(wrapper=True)
    def fulfil_suspend(self, ctx):
        return (yield from self._wrap("fulfil_suspend", ctx))

    @hookimpl(wrapper=True)
    def fulfil_resume(self, ctx):
        return (yield from self._wrap("fulfil_resume", ctx))

    @hookimpl(wrapper=True)
    def fulfil_check_connection(self, settings):
        try:
            return (yield)
        except Exception as exc:  # noqa: BLE001
            return failure_from_exception(exc, "?")


_default: ModuleRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> ModuleRegistry:
    """The process-wide registry of installed plugins, discovered once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ModuleRegistry.discover()
        return _default
