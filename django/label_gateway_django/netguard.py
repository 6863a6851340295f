"""Which addresses the carrier download may reach: public unicast addresses only.

The same rule as the gateway's own carrier fetch, so a label URL (or any redirect it
leads to) can never be turned against loopback, the private network or a cloud metadata
service. A host name is resolved once per hop, every address it gives must be public,
and the download connects to the address that was checked, so a name that re-resolves
to a private address later (DNS rebinding) is never connected. Only exact ``ip:port``
pairs listed in ``LABEL_GATEWAY_FETCH_ALLOW_PRIVATE`` (a test carrier, an on-premises
mirror) pass although not public.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable
from urllib.parse import SplitResult

from ._http import Refused

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NOT_PUBLIC_V4 = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (CGNAT)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/3",  # multicast, reserved, broadcast
    )
]

_NOT_PUBLIC_V6 = [
    ipaddress.ip_network(n)
    for n in (
        "ff00::/8",  # multicast
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "fc00::/7",  # unique-local
        "2001:db8::/32",  # documentation
        "2001::/23",  # IETF protocol assignments, Teredo
        "100::/64",  # discard-only
    )
]


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: IPv4-mapped, IPv4-compatible,
    NAT64 (``64:ff9b::/96``) or 6to4 (``2002::/16``)."""
    value = int(ip)
    if value >> 32 == 0xFFFF or (value >> 32 == 0 and value > 1):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if value >> 32 == 0x0064FF9B << 64:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if value >> 112 == 0x2002:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)
    return None


def is_public(ip: _Address) -> bool:
    """Whether ``ip`` is a public unicast address (see the module's list)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_v4(ip)
        if embedded is not None:
            return is_public(embedded)
        if ip.is_unspecified or ip.is_loopback:
            return False
        if ip < ipaddress.IPv6Address("2000::") or ip >= ipaddress.IPv6Address("4000::"):
            return False
        return not any(ip in net for net in _NOT_PUBLIC_V6)
    return not any(ip in net for net in _NOT_PUBLIC_V4)


def allowed_pairs(values: Iterable[str]) -> frozenset[tuple[_Address, int]]:
    """``LABEL_GATEWAY_FETCH_ALLOW_PRIVATE`` as (address, port) pairs; a malformed
    entry is skipped (the system check reports it)."""
    pairs = set()
    for value in values or ():
        pair = parse_pair(value)
        if pair is not None:
            pairs.add(pair)
    return frozenset(pairs)


def parse_pair(value: object) -> tuple[_Address, int] | None:
    """``"127.0.0.1:8443"`` or ``"[::1]:8443"`` as (address, port); None when malformed."""
    if not isinstance(value, str):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    try:
        return ipaddress.ip_address(host.strip("[]")), int(port)
    except ValueError:
        return None


def checked_address(parts: SplitResult, allow_private: frozenset) -> str:
    """The address to connect to for a hop, after the rule: raises ``Refused`` for a URL
    with credentials, without a host, or with any address that is not public."""
    if parts.username is not None or parts.password is not None or not parts.hostname:
        raise Refused()
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    host = parts.hostname.rstrip(".")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Refused() from exc
    addresses = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if not is_public(ip) and (ip, port) not in allow_private:
            raise Refused()
        addresses.append(str(ip))
    if not addresses:
        raise Refused()
    return addresses[0]
