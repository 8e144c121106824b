"""The client-address rule (services.common.http_edge): unit and property tests."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.http_edge import TrustedProxies, client_address, parse_address

PROXIES = TrustedProxies.parse("10.0.0.0/8, 192.168.1.5, fd00::/8")


def test_without_trusted_proxies_the_peer_is_the_client_and_xff_is_ignored() -> None:
    assert client_address("203.0.113.7", ["198.51.100.1"], TrustedProxies()) == "203.0.113.7"
    assert client_address("10.1.2.3", ["198.51.100.1"], TrustedProxies()) == "10.1.2.3"


def test_a_trusted_proxy_forwards_the_client() -> None:
    assert client_address("10.1.2.3", ["198.51.100.1"], PROXIES) == "198.51.100.1"


def test_multi_hop_chain_takes_the_right_most_untrusted() -> None:
    # client -> (spoofed left part) -> untrusted hop 198.51.100.9 -> trusted 192.168.1.5 -> 10.1.2.3
    xff = ["1.1.1.1, 198.51.100.9", "192.168.1.5"]
    assert client_address("10.1.2.3", xff, PROXIES) == "198.51.100.9"
    assert client_address("10.1.2.3", ["198.51.100.9, 10.9.9.9, 192.168.1.5"], PROXIES) == "198.51.100.9"


def test_spoofed_xff_from_an_untrusted_peer_changes_nothing() -> None:
    assert client_address("203.0.113.7", ["10.1.1.1, 1.2.3.4"], PROXIES) == "203.0.113.7"


def test_only_trusted_hops_gives_the_left_most_trusted_one() -> None:
    assert client_address("10.1.2.3", ["192.168.1.5, 10.0.0.9"], PROXIES) == "192.168.1.5"
    assert client_address("10.1.2.3", [], PROXIES) == "10.1.2.3"


@pytest.mark.parametrize(("xff", "expected"), [
    (["unknown"], "10.1.2.3"),
    (["1.2.3.4, garbage"], "10.1.2.3"),  # never past a malformed entry to what the client wrote
    (["1.2.3.4, , 10.0.0.2"], "10.0.0.2"),
    (["999.1.1.1"], "10.1.2.3"),
    (["1.2.3.4:5678"], "1.2.3.4"),
    (["[2001:db8::1]:443"], "2001:db8::1"),
    (["2001:db8::1"], "2001:db8::1"),
    (["::ffff:198.51.100.3"], "198.51.100.3"),
    (["x" * 5000], "10.1.2.3"),
    (["1.2.3.4\x00"], "10.1.2.3"),
    (["[2001:db8::1"], "10.1.2.3"),
    (["1.2.3.4:port"], "10.1.2.3"),
])
def test_malformed_entries(xff: list[str], expected: str) -> None:
    assert client_address("10.1.2.3", xff, PROXIES) == expected


def test_parse_refuses_garbage_and_accepts_cidrs() -> None:
    with pytest.raises(ValueError, match="nonsense"):
        TrustedProxies.parse("10.0.0.0/8,nonsense")
    assert not TrustedProxies.parse(" , ")
    assert parse_address("::ffff:127.0.0.1") == ipaddress.ip_address("127.0.0.1")
    # a link-local peer's zone names this host's interface: the client is the address alone
    # (a CodeRequested refuses an address with a zone)
    assert str(parse_address("fe80::1%eth0")) == "fe80::1"
    assert client_address("[fe80::1%eth0]:5000", [], PROXIES) == "fe80::1"


@pytest.mark.parametrize("entry", ["::ffff:10.0.0.1", "::ffff:10.0.0.0/104", "::FFFF:a00:1"])
@pytest.mark.parametrize("peer", ["::ffff:10.0.0.1", "10.0.0.1", "[::ffff:10.0.0.1]:443"])
def test_a_proxy_written_in_its_ipv4_mapped_form_is_trusted(entry: str, peer: str) -> None:
    """A mapped peer is taken as its IPv4 address, so a mapped entry must match it too (it was
    accepted and never matched: every subscriber then shared the proxy's address)."""
    trusted = TrustedProxies.parse(entry)
    assert client_address(peer, ["198.51.100.7"], trusted) == "198.51.100.7"
    assert client_address("::ffff:10.0.0.2", ["198.51.100.7"], TrustedProxies.parse(
        "::ffff:10.0.0.1")) == "10.0.0.2"  # the mapped entry is one address, not more


ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)


@given(peer=ips, xff=st.lists(st.text(max_size=40), max_size=5))
def test_untrusted_peer_always_wins(peer: str, xff: list[str]) -> None:
    trusted = TrustedProxies.parse("10.0.0.0/8")
    address = parse_address(peer)
    assert address is not None
    if trusted.trusts(address):
        return
    assert client_address(peer, xff, trusted) == str(address)


@given(client=ips, spoof=st.lists(st.text(max_size=40), max_size=4),
       hops=st.lists(st.ip_addresses(network="10.0.0.0/8").map(str), max_size=4))
def test_whatever_the_client_writes_the_address_added_by_the_first_trusted_proxy_wins(
        client: str, spoof: list[str], hops: list[str]) -> None:
    """A client prepends anything; trusted proxies append the real client, then each other."""
    trusted = TrustedProxies.parse("10.0.0.0/8")
    real = parse_address(client)
    assert real is not None
    if trusted.trusts(real):
        return
    xff = [*spoof, client, *hops[:-1]] if hops else [*spoof, client]
    peer = hops[-1] if hops else "10.0.0.1"
    assert client_address(peer, [", ".join(x.replace(",", "") for x in xff)], trusted) == str(real)


@given(peer=st.text(max_size=50), xff=st.lists(st.text(max_size=60), max_size=6))
def test_never_raises_and_answers_an_address_or_none(peer: str, xff: list[str]) -> None:
    got = client_address(peer, xff, PROXIES)
    assert got is None or ipaddress.ip_address(got)
