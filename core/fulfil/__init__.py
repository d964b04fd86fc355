"""fulfil: the service-processing core of a hosting provider's billing system.

This module is the public API for processing-module authors: import from here,
never from fulfil's internals.
"""

from fulfil.describe import close_actions, service_description, task_description
from fulfil.hookspecs import hookimpl, hookspec
from fulfil.module import (
    OPERATIONS,
    AddonSpec,
    Changes,
    ClientInfo,
    Done,
    EmptyParams,
    EmptySettings,
    Failed,
    ManualWork,
    ModuleError,
    ModuleInfo,
    OperationContext,
    ResourceTaken,
    RetryPolicy,
    ServiceInfo,
    TariffInfo,
    TransientModuleError,
)

__version__ = "0.1.0"

__all__ = [
    "OPERATIONS",
    "AddonSpec",
    "Changes",
    "ClientInfo",
    "Done",
    "EmptyParams",
    "EmptySettings",
    "Failed",
    "ManualWork",
    "ModuleError",
    "ModuleInfo",
    "OperationContext",
    "ResourceTaken",
    "RetryPolicy",
    "ServiceInfo",
    "TariffInfo",
    "TransientModuleError",
    "close_actions",
    "hookimpl",
    "hookspec",
    "service_description",
    "task_description",
]
