"""fulfil-dedicated: a processing module for dedicated servers driven over Redfish.

Entry point ``dedicated`` in ``fulfil.modules``. It allocates a physical server of
the pool configured in the processing module's settings (the database decides who
gets which server), drives its power through the BMC's Redfish API with the OpenStack
``sushy`` client, and leaves the OS install, hardware changes and disk wipes to staff
as tasks.
"""

from fulfil_dedicated.module import DedicatedServers
from fulfil_dedicated.settings import POOL, DedicatedParams, DedicatedSettings, Server

plugin = DedicatedServers

__all__ = ["POOL", "DedicatedParams", "DedicatedServers", "DedicatedSettings", "Server", "plugin"]
