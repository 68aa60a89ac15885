"""Shared fixtures for the chain tests: deterministic keys, a test genesis, signing helpers."""

from __future__ import annotations

import dataclasses

from crowdmesh.chain import (
    MAX_TARGET,
    TRANSFER,
    Address,
    Block,
    Chain,
    Genesis,
    MemoryStore,
    Transaction,
    make_transaction,
    mine,
    transfer_payload,
)
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng

CHAIN_ID = "cm-test"
KEYS = [AccountKey.generate(DeterministicRng(i)) for i in range(6)]
ADDRS = [Address(k.public) for k in KEYS]
MINERS = [Address(bytes([0xA0 + i]) * 32) for i in range(3)]
T0 = 1_700_000_000
NOW = T0 + 10**6
ALLOC = 10**9  # per funded account
BASE_FEE = 25_000  # ≥ a transfer's intrinsic gas (21000 + payload) at min_gas_price 1


def make_genesis(**overrides: object) -> Genesis:
    """An easy-PoW test network: 4 funded accounts, reward 1000, a quarter of fees burned,
    min gas price 1 (the lowest a genesis allows)."""
    params: dict[str, object] = dict(
        chain_id=CHAIN_ID, timestamp=T0, target=MAX_TARGET, block_interval=10,
        retarget_interval=0, miner_cap_m=0, miner_cap_w=0, block_reward=1000,
        halving_interval=0, min_gas_price=1, fee_burn_bps=2500, max_block_bytes=1 << 20,
        alloc=tuple(sorted((a, ALLOC) for a in ADDRS[:4])),
    )
    params.update(overrides)
    return Genesis(**params)  # type: ignore[arg-type]


def transfer(sender: int, nonce: int, to: bytes, amount: int, tip: int = 10,
             chain_id: str = CHAIN_ID) -> Transaction:
    """A signed transfer from KEYS[sender] paying ``BASE_FEE + tip``."""
    return make_transaction(KEYS[sender], chain_id, nonce, TRANSFER,
                            transfer_payload(to, amount), BASE_FEE + tip)


def mine_block(block: Block) -> Block:
    """Set a nonce that meets the header's target."""
    nonce = mine(block.header, 0, 1 << 22)
    assert nonce is not None
    return Block(dataclasses.replace(block.header, nonce=nonce), block.txs)


def next_block(chain: Chain, txs: tuple[Transaction, ...] = (), miner: bytes = MINERS[0],
               now: int | None = None) -> Block:
    """A mined block on ``chain``'s head holding every one of ``txs``."""
    tpl = chain.build_block_template(miner, txs, chain.head.timestamp + 10 if now is None else now)
    assert tpl.skipped == (), tpl.skipped
    return mine_block(tpl.block)


def fresh_chain(**overrides: object) -> Chain:
    """A chain over a new MemoryStore."""
    return Chain.open(MemoryStore(), make_genesis(**overrides))
