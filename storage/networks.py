"""Networks of callers, for limits that must hold against one party using many addresses of one network."""
from __future__ import annotations

import ipaddress

IPV4_PREFIX, IPV6_PREFIX = 24, 64  # one household, office or cloud customer is one network


def network_of(remote: str) -> str:
    """The caller's network: its /24 (IPv4) or /64 (IPv6); anything unparsable stands for itself."""
    try:
        address = ipaddress.ip_address(remote.strip("[]"))
    except ValueError:
        return remote[:100] or "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def peer_address(peer: str) -> str:
    """The address part of a "host:port" peer as the gateway logs it (IPv6 hosts contain colons too)."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


__all__ = ["network_of", "peer_address"]
