"""The caches one process keeps between jobs: bounded, named, and emptied by reset_all."""

from __future__ import annotations

from resnet_lab.data.cache import DECODED
from resnet_lab.data.datasets import RESIDENT
from resnet_lab.process_cache import ProcessCache, reset_all
from resnet_lab.train.compiled import COMPILED


def test_a_cache_keeps_at_most_its_capacity_dropping_the_oldest():
    cache: ProcessCache[int] = ProcessCache("test", capacity=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.put("c", 3) == 3
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (None, 2, 3, 2)


def test_reset_all_empties_every_cache_of_the_process():
    for cache in (DECODED, RESIDENT, COMPILED):
        cache.put("key", object())
    assert [len(c) for c in (DECODED, RESIDENT, COMPILED)] == [1, 1, 1]
    reset_all()
    assert [len(c) for c in (DECODED, RESIDENT, COMPILED)] == [0, 0, 0]
    assert RESIDENT.capacity == COMPILED.capacity == 1, "device memory holds one data set and one compiled model at a time"
