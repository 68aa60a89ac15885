"""FL test fixtures: the shared datasets, from CROWDMESH_DATA_DIR or ../shared/data."""

from __future__ import annotations

import pytest

from crowdmesh.fl import Dataset, data_dir, load_named


def _load(name: str) -> Dataset:
    if not (data_dir() / f"{name}.csv").is_file():
        pytest.skip(f"{name}.csv not found in {data_dir()} (set CROWDMESH_DATA_DIR)")
    return load_named(name)


@pytest.fixture(scope="session")
def bcwd() -> Dataset:
    return _load("bcwd")


@pytest.fixture(scope="session")
def hdd() -> Dataset:
    return _load("hdd")
