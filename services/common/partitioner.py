"""The producers' partitioner: Kafka's default (murmur2 of the key), computed in fewer steps.

A keyed record must land where Java's ``DefaultPartitioner`` and aiokafka's put it: readers
that join by key (recovery's accounts, the ops tool's ``trace``) and compaction rely on one
partition per key. aiokafka's ``murmur2`` reads the key a byte at a time and masks after every
operation; this one reads it four bytes at a time and masks only where a product can pass 32
bits. ``tests/common/test_partitioner.py`` holds the two equal over generated keys of every
length, and the partitions equal over partition counts.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from aiokafka.partitioner import DefaultPartitioner

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<I").iter_unpack


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` as an unsigned 32-bit integer."""
    length = len(data)
    h = _SEED ^ length
    whole = length & ~3
    for (k,) in _WORDS(data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    extra = length & 3
    if extra >= 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h = ((h ^ data[whole]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


class KeyPartitioner(DefaultPartitioner):
    """aiokafka's default partitioner with the murmur2 above: a key's partition as Kafka's
    default one chooses it; a record without a key is left to aiokafka's own choice."""

    def __call__(self, key: bytes | None, all_partitions: Sequence[int],
                 available: Sequence[int]) -> int:
        if key is None:
            return int(super().__call__(key, all_partitions, available))
        return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]
