"""fulfil-dnshosting: the DNS hosting processing module of fulfil.

Entry point ``dnshosting`` in ``fulfil.modules`` names :data:`plugin`. Each service
is one zone on a PowerDNS Authoritative server, driven through its HTTP API.
"""

from fulfil_dnshosting.models import DnsHostingParams, DnsHostingSettings, DnsRecord
from fulfil_dnshosting.module import DnsHosting, plugin

__all__ = ["DnsHosting", "DnsHostingParams", "DnsHostingSettings", "DnsRecord", "plugin"]
