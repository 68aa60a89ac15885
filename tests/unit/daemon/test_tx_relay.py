"""Outbound gossip batching (``daemon/relay.py``) against a recording network."""

from __future__ import annotations

import trio
import trio.testing

from crowdmesh.chain.contracts.blob import KIND, PART_BYTES, split_blob
from crowdmesh.chain.tx import make_transaction
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon.relay import TxRelay
from crowdmesh.p2p.messages import MAX_GOSSIP_BYTES, MAX_TXIDS_PER_MESSAGE, TxAnnounce


class RecordingNet:
    def __init__(self) -> None:
        self.published: list[tuple[str, object]] = []

    async def publish(self, topic: str, msg: object) -> None:
        self.published.append((topic, msg))


async def test_the_parts_of_a_blob_are_announced_in_few_messages(
        autojump_clock: trio.testing.MockClock) -> None:
    key = AccountKey(b"\x03" * 32)
    parts = [make_transaction(key, "testchain", i, KIND, p, fee=10**7)
             for i, p in enumerate(split_blob(bytes(range(256)) * (PART_BYTES * 79 // 256)))]
    assert len(parts) == 79  # a ~5 MB blob
    assert all(len(tx.encode()) > MAX_GOSSIP_BYTES for tx in parts)  # announced, not gossiped
    net = RecordingNet()
    async with trio.open_nursery() as nursery:
        relay = TxRelay(net, nursery)  # type: ignore[arg-type]
        nursery.start_soon(relay.run)
        for tx in parts:  # a role submits a blob's parts back to back
            relay.queue(tx.encode())
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    announces = [m for _, m in net.published if isinstance(m, TxAnnounce)]
    assert len(announces) == len(net.published) == -(-len(parts) // MAX_TXIDS_PER_MESSAGE)
    assert [t for m in announces for t in m.txids] == [tx.txid for tx in parts]
