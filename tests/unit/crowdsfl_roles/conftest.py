"""Every test gets a fresh net; the supply identity is checked after it."""

from __future__ import annotations

import pytest

from tests.unit.crowdsfl_roles.net import Net


@pytest.fixture
def net(tmp_path):
    n = Net(tmp_path)
    yield n
    n.assert_supply()
