"""What start-up built is left out of later collections; what comes after is not."""

from __future__ import annotations

import gc

import pytest

from pypicache.ops.collector import YOUNG_THRESHOLD, freeze_startup


@pytest.fixture
def restored_collector():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class _Node:
    pass


@pytest.mark.usefixtures("restored_collector")
def test_startup_objects_are_out_of_collections_and_later_ones_in():
    built_at_start = _Node()
    freeze_startup()
    later = _Node()
    tracked = {id(o) for o in gc.get_objects()}
    assert id(built_at_start) not in tracked
    assert id(later) in tracked
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD


@pytest.mark.usefixtures("restored_collector")
def test_a_cycle_made_after_start_up_is_still_collected():
    freeze_startup()
    cycle = _Node()
    cycle.me = cycle
    del cycle
    assert gc.collect() >= 1
