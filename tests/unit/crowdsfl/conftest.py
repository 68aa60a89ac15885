"""Every CrowdSFL test gets a fresh world, and the supply identity is checked after it."""

from __future__ import annotations

import pytest

from tests.unit.crowdsfl.world import World, new_world


@pytest.fixture
def world():
    w: World = new_world()
    yield w
    w.assert_supply()
