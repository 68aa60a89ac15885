"""Outbound gossip batching (``daemon/relay.py``) against a recording network."""

from __future__ import annotations

import trio
import trio.testing

from crowdmesh.chain.contracts.blob import KIND, PART_BYTES, split_blob
from crowdmesh.chain.tx import make_transaction
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.daemon.relay import TX_BATCH_WINDOW_S, TxRelay
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


class TimedNet(RecordingNet):
    async def publish(self, topic: str, msg: object) -> None:
        self.published.append((topic, (trio.current_time(), msg)))


def _small_txs(n: int) -> list[bytes]:
    key = AccountKey(b"\x04" * 32)
    return [make_transaction(key, "testchain", i, "transfer", b"x" * 40, fee=10**6).encode()
            for i in range(n)]


async def test_a_lone_transaction_leaves_at_once_and_a_burst_shares_messages(
        autojump_clock: trio.testing.MockClock) -> None:
    """Leading edge: a step's transactions queued together leave at once in one message; what
    is queued while the window is still open waits for it to close (one message per window)."""
    net = TimedNet()
    txs = _small_txs(6)
    async with trio.open_nursery() as nursery:
        relay = TxRelay(net, nursery)  # type: ignore[arg-type]
        nursery.start_soon(relay.run)
        await trio.sleep(1)
        start = trio.current_time()
        for raw in txs[:3]:  # one role step: several transactions queued back to back
            relay.queue(raw)
        await trio.sleep(0.001)
        for raw in txs[3:]:  # the next ones, inside the window
            relay.queue(raw)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    (t1, first), (t2, second) = [m for _, m in net.published]
    assert t1 - start < 0.001 and list(first.txs) == txs[:3]
    assert t2 - t1 >= TX_BATCH_WINDOW_S and list(second.txs) == txs[3:]
