"""Which address an HTTP request comes from (DESIGN.md "Who may call what").

By default the socket peer. With ``TRUSTED_PROXIES`` (comma-separated addresses or CIDRs), a
request whose peer is trusted is attributed to the right-most address of ``X-Forwarded-For``
that is not itself trusted. Entries left of that one were written by the client and are never
believed. A malformed entry met on the way ends the walk: the request is then attributed to the
last trusted hop (the nearest address known for certain), never to anything further left.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> IPAddress | None:
    """An address as found in a peer name or a forwarded-for entry, or None if it is not one.

    Accepts ``1.2.3.4``, ``::1``, ``[::1]``, ``1.2.3.4:5678`` and ``[::1]:5678``; an IPv4
    address mapped into IPv6 (``::ffff:1.2.3.4``) is taken as the IPv4 address.
    """
    text = text.strip()
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not _is_port(text[end + 1:])):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not _is_port(":" + port):
            return None
        text = host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isascii() and text[1:].isdigit() and len(text) <= 6


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """From ``TRUSTED_PROXIES``; raises ValueError naming the entry that is not an address/CIDR."""
        networks: list[IPNetwork] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ValueError(f"TRUSTED_PROXIES entry {item!r} is not an address or CIDR") from exc
        return cls(tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def forwarded_entries(header_values: Iterable[str]) -> list[str]:
    """Every entry of every ``X-Forwarded-For`` line, in order (several lines form one list)."""
    return [entry.strip() for value in header_values for entry in value.split(",")]


def client_address(peer: str | None, forwarded_for: Iterable[str],
                   trusted: TrustedProxies) -> str | None:
    """The client's address: the peer, or, from a trusted peer, the rule of the module doc."""
    peer_address = parse_address(peer) if peer else None
    if peer_address is None:
        return None
    if not trusted or not trusted.trusts(peer_address):
        return str(peer_address)
    nearest = peer_address
    for entry in reversed(forwarded_entries(forwarded_for)):
        address = parse_address(entry)
        if address is None:
            break
        if not trusted.trusts(address):
            return str(address)
        nearest = address
    return str(nearest)
