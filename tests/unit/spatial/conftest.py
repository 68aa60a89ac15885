"""Shared checks for the spatial tests.

The supply invariant of issue 10 ("after every test the total supply equals genesis plus block
rewards plus the rewards the contract recomputes") is checked by an autouse fixture: every
:class:`Chain` a test (or a bench module it drives) opens is recorded, and after the test each
one's head state must satisfy

    Σ balances == Σ genesis alloc + Σ block rewards + Σ spatial rewards − Σ burned fees,

where the spatial rewards are the ``spatial-reward`` events of the main chain's receipts (the
amounts the contract recomputed from chain data; no payload names one), cross-checked against
the contract's per-account earnings records (``x e‖account``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crowdmesh.chain.chain import Chain
from crowdmesh.chain.codec import unpack
from crowdmesh.chain.rules import burned_fee


def supply_terms(chain: Chain) -> dict[str, int]:
    """The terms of the supply equation for the chain's main chain, from genesis to head."""
    genesis = chain.genesis
    minted = burned = spatial = 0
    for height in range(1, chain.height + 1):
        block = chain.get_block_by_height(height)
        minted += genesis.reward(height)
        burned += sum(burned_fee(tx.fee, genesis) for tx in block.txs)
        for receipt in chain.block_receipts(block.hash):
            spatial += sum(int(e.fields[1]) for e in receipt.events
                           if e.name == "spatial-reward")
    earned = sum(int(v[0]) + int(v[1]) for v in
                 (unpack(raw, 128) for _, raw in chain.iter_state(b"xe")))
    total = sum(a.balance for _, a in chain.iter_accounts())
    return {"supply": total, "alloc": genesis.alloc_total(), "block_rewards": minted,
            "spatial_rewards": spatial, "burned": burned, "earned_records": earned}


def assert_supply(chain: Chain) -> None:
    """Fail unless the chain's supply is exactly what genesis, blocks and rewards account for."""
    t = supply_terms(chain)
    expected = t["alloc"] + t["block_rewards"] + t["spatial_rewards"] - t["burned"]
    assert t["supply"] == expected, f"supply {t['supply']} != {expected}: {t}"
    assert t["earned_records"] == t["spatial_rewards"], t


@pytest.fixture(autouse=True)
def supply_is_conserved(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Chain]]:
    """Record every chain opened during the test; check each one's supply afterwards."""
    opened: list[Chain] = []
    real_open = Chain.open.__func__  # type: ignore[attr-defined]

    def recording_open(cls: type[Chain], *args: object, **kwargs: object) -> Chain:
        chain = real_open(cls, *args, **kwargs)
        opened.append(chain)
        return chain

    monkeypatch.setattr(Chain, "open", classmethod(recording_open))
    yield opened
    for chain in opened:
        assert_supply(chain)
