"""Future-nonce flooding (issue 11, fault 2): the gap buffer is bounded per sender, refuses
what can never become valid, and nothing it refuses is answered ``queued`` or relayed."""

from __future__ import annotations

import pytest

from crowdmesh.chain import Chain, Genesis, MemoryStore, Mempool, make_transaction
from crowdmesh.chain import transfer_payload as pay
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.chainfeed import ChainFeed
from crowdmesh.daemon.ledger import Ledger
from crowdmesh.errors import ValidationError
from crowdmesh.p2p.messages import TxBatch, TxGossip

_RNG = DeterministicRng(11)
FLOODER, VICTIM, POOR, SINK = (AccountKey.generate(_RNG) for _ in range(4))
FUNDS = 10**15
GENESIS = Genesis(chain_id="flood", timestamp=1_700_000_000, target=1 << 250, block_interval=1,
                  retarget_interval=0,
                  alloc=tuple(sorted((k.public, FUNDS) for k in (FLOODER, VICTIM))))
FEE = 100_000


def tx(key: AccountKey, nonce: int, amount: int = 1):
    return make_transaction(key, "flood", nonce, "transfer", pay(SINK.public, amount), FEE)


class Recorder:
    """The feed's ports: events, relay, role host; records what was relayed."""

    def __init__(self):
        self.relayed: list[bytes] = []

    def publish_nowait(self, topic, event):
        pass

    def queue(self, raw: bytes) -> None:
        self.relayed.append(raw)

    def deliver(self, event):
        pass

    def feed_import(self, result, receipts_of):
        pass


def feed_and_ledger():
    chain = Chain.open(MemoryStore(), GENESIS)
    led = Ledger(chain, Mempool(chain))
    rec = Recorder()
    return ChainFeed(led, rec, rec, rec, lambda: None), led, rec


def submit_code(feed: ChainFeed, t) -> str:
    try:
        return feed.submit(t)
    except ValidationError as exc:
        return exc.code


def test_one_sender_flooding_4100_future_txs_leaves_another_accounts_queued_tx() -> None:
    feed, led, rec = feed_and_ledger()
    victim = tx(VICTIM, 1)
    assert feed.submit(victim) == "queued"
    codes = [submit_code(feed, tx(FLOODER, n)) for n in range(1, 4101)]
    assert codes.count("queued") == 64  # the per-sender slots
    assert set(codes) == {"queued", "mempool-account-queue-full", "mempool-gap-too-far"}
    assert led.sync_txs((victim.txid,)).txs == (victim.encode(),)  # still buffered
    assert led.mempool_view()["gap_buffered"] == 65
    assert len(rec.relayed) == 65  # only what is kept went out
    assert [t.nonce for t in led.add_tx(tx(VICTIM, 0))] == [0, 1]  # and it is released


@pytest.mark.parametrize(("key", "nonce", "amount", "code"), [
    (POOR, 5, 1, "mempool-sender-cannot-pay"),  # unfunded sender
    (VICTIM, 5, FUNDS, "mempool-sender-cannot-pay"),  # overspend: value + fee > balance
    (VICTIM, (1 << 64) - 1, 1, "mempool-gap-too-far"),
])
def test_hopeless_future_txs_are_refused_not_queued_and_not_relayed(key, nonce, amount,
                                                                      code) -> None:
    feed, led, rec = feed_and_ledger()
    bad = tx(key, nonce, amount)
    assert submit_code(feed, bad) == code
    assert rec.relayed == [] and led.mempool_view()["gap_buffered"] == 0
    # a peer's copy is refused by the gossip validator too, so gossipsub does not forward it
    with pytest.raises(ValidationError) as exc:
        led.check_gossip(TxGossip(bad.encode()))
    assert exc.value.code == code
    with pytest.raises(ValidationError):
        led.check_gossip(TxBatch((tx(VICTIM, 0).encode(), bad.encode())))


def test_queued_spends_count_with_the_pooled_ones() -> None:
    feed, led, rec = feed_and_ledger()
    half = FUNDS // 2
    assert feed.submit(tx(VICTIM, 0, half)) == "pending"
    assert feed.submit(tx(VICTIM, 2, half - 10 * FEE)) == "queued"
    assert submit_code(feed, tx(VICTIM, 3, 10 * FEE)) == "mempool-sender-cannot-pay"
    led.check_gossip(TxGossip(tx(VICTIM, 3, 10 * FEE).encode()))  # alone it is payable
    assert len(rec.relayed) == 2


def test_a_head_change_drops_queued_txs_the_sender_can_no_longer_pay() -> None:
    import dataclasses

    from crowdmesh.chain import Block, mine

    feed, led, _ = feed_and_ledger()
    assert feed.submit(tx(VICTIM, 2, FUNDS // 2)) == "queued"
    spend = tx(VICTIM, 0, FUNDS - 2 * FEE)
    block = led.chain.build_block_template(b"\x0a" * 32, [spend], 1_700_000_100).block
    nonce = mine(block.header, 0, 1 << 20)
    assert nonce is not None
    led.import_block(Block(dataclasses.replace(block.header, nonce=nonce), block.txs),
                     1_700_000_100)
    assert led.mempool_view()["gap_buffered"] == 0


def test_buffered_txs_a_head_change_pools_are_relayed_again() -> None:
    """A tx buffered for a nonce gap was relayed when it arrived, and peers refused it for the
    same gap; once a block fills the gap it enters the pool and is relayed again (else a
    sender's later nonces never reach the miners: a stalled 1 MiB upload)."""
    import dataclasses

    from crowdmesh.chain import Block, mine

    feed, led, rec = feed_and_ledger()
    later = tx(VICTIM, 1)
    assert feed.submit(later) == "queued"
    rec.relayed.clear()
    first = tx(VICTIM, 0)
    block = led.chain.build_block_template(b"\x0a" * 32, [first], 1_700_000_100).block
    nonce = mine(block.header, 0, 1 << 20)
    assert nonce is not None
    feed.imported(led.import_block(Block(dataclasses.replace(block.header, nonce=nonce),
                                         block.txs), 1_700_000_100), "peer")
    assert later.txid in led.mempool and rec.relayed == [later.encode()]
    feed.imported(led.import_block(Block(dataclasses.replace(block.header, nonce=nonce),
                                         block.txs), 1_700_000_100), "peer")
    assert rec.relayed == [later.encode()]  # once
