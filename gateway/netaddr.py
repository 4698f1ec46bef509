"""Client addresses reduced to their network: the one truncation the search log (what it
keeps) and the login throttle (what counts as the holder's known network) share. Neither
package may import the other, so it lives here, below both."""

from __future__ import annotations

import ipaddress


def network_of(ip: str | None) -> str | None:
    """IPv4 to its /24, IPv6 to its /48 (an IPv4-mapped IPv6 address counts as its IPv4);
    None without a usable address."""
    if not ip:
        return None
    parts = ip.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return f"{int(parts[0])}.{int(parts[1])}.{int(parts[2])}.0/24"  # the common case, fast
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
