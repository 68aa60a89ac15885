"""Benchmark of the chain core against the issue's targets.

Usage: .venv/bin/python bench/chain.py [--json FILE] [--runs N]

Rows (each the median of N runs, default 3, with the minimum beside it):
  tx_per_s             transactions validated (Ed25519 signature, nonce, fee, contract) and
                       applied, with the state root and the SQLite commit: 2,000 transfers from
                       50 senders imported as two 1,000-transaction blocks.
  block_1000_import_s  one 1,000-transaction block imported into a SqliteStore chain.
  reorg_10_s           the import that switches a SqliteStore chain from a 10-block branch to an
                       11-block branch forked at genesis (100 transfers per block): 10 blocks
                       disconnected through undo records, 11 connected and fully validated.
  hashes_per_s         ``mine()`` on one core in batches of 200,000 nonces (target never met).
Beside the chain's own numbers it prints bare Ed25519 verification and bare SHA-256 of a
header-sized input in the same run, so the ratios show the overhead over the primitives. The
load average is printed before and after because the 2-core machine is shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crowdmesh.chain import (
    MAX_TARGET,
    TRANSFER,
    Address,
    Block,
    Chain,
    Genesis,
    MemoryStore,
    SqliteStore,
    Transaction,
    make_transaction,
    mine,
    transfer_payload,
)
from crowdmesh.crypto.identity import AccountKey, verify_signature
from crowdmesh.crypto.rng import DeterministicRng

NOW = 2_000_000_000
KEYS = [AccountKey.generate(DeterministicRng(i)) for i in range(50)]
GENESIS = Genesis(
    chain_id="cm-bench", timestamp=1_700_000_000, target=MAX_TARGET, retarget_interval=0,
    block_reward=1000, fee_burn_bps=2500, max_block_bytes=8 << 20,
    alloc=tuple(sorted((Address(k.public), 10**12) for k in KEYS)),
)
FEE = 25_000  # ≥ a transfer's intrinsic gas at the genesis min_gas_price of 1
TARGETS = {"tx_per_s": 2000, "block_1000_import_s": 1.0, "reorg_10_s": 1.0,
           "hashes_per_s": 300_000}


def transfers(count: int, first_nonce: int, amount: int) -> list[Transaction]:
    """``count`` signed transfers spread over the 50 senders (nonces in order)."""
    out = []
    for i in range(count):
        key = KEYS[i % len(KEYS)]
        payload = transfer_payload(KEYS[(i + 1) % len(KEYS)].public, amount)
        out.append(make_transaction(key, GENESIS.chain_id, first_nonce + i // len(KEYS),
                                    TRANSFER, payload, FEE))
    return out


def build_chain(tx_batches: list[list[Transaction]], miner: bytes, dt: int) -> list[Block]:
    """Blocks on a scratch in-memory chain, one per batch (setup, not timed)."""
    chain = Chain.open(MemoryStore(), GENESIS)
    blocks = []
    for txs in tx_batches:
        tpl = chain.build_block_template(miner, txs, chain.head.timestamp + dt)
        assert not tpl.skipped, tpl.skipped[:3]
        chain.import_block(tpl.block, NOW)
        blocks.append(tpl.block)
    return blocks


def sqlite_chain(tmp: str, name: str) -> tuple[SqliteStore, Chain]:
    store = SqliteStore.open(os.path.join(tmp, name))
    return store, Chain.open(store, GENESIS)


def time_imports(tmp: str, name: str, pre: list[Block], timed: list[Block]) -> float:
    """Seconds to import ``timed`` into a SqliteStore chain already holding ``pre``."""
    store, chain = sqlite_chain(tmp, name)
    for b in pre:
        chain.import_block(b, NOW)
    start = time.perf_counter()
    for b in timed:
        chain.import_block(b, NOW)
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def hash_rate() -> float:
    h = build_chain([[]], bytes(32), 10)[0].header
    hard = dataclasses.replace(h, target=1)
    start = time.perf_counter()
    for batch in range(5):
        assert mine(hard, batch * 200_000, 200_000) is None
    return 1_000_000 / (time.perf_counter() - start)


def bare_rates() -> tuple[float, float]:
    """Ed25519 verifications/s and SHA-256(header-sized)/s in this run."""
    tx = transfers(1, 0, 1)[0]
    msg = tx.signing_bytes()
    start = time.perf_counter()
    for _ in range(2000):
        verify_signature(tx.sender, msg, tx.signature)
    verify = 2000 / (time.perf_counter() - start)
    data = bytes(200)
    start = time.perf_counter()
    for _ in range(200_000):
        hashlib.sha256(data).digest()
    return verify, 200_000 / (time.perf_counter() - start)


def median_min(fn: Callable[[], float], runs: int) -> tuple[float, float, list[float]]:
    values = [fn() for _ in range(runs)]
    return statistics.median(values), min(values), values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    console = Console(width=150)
    console.print(f"load average before: {os.getloadavg()}")
    two = build_chain([transfers(1000, 0, 1), transfers(1000, 20, 1)], KEYS[0].public, 10)
    main10 = build_chain([transfers(100, 2 * n, 1) for n in range(10)], KEYS[1].public, 10)
    side11 = build_chain([transfers(100, 2 * n, 2) for n in range(11)], KEYS[2].public, 9)
    with tempfile.TemporaryDirectory(prefix="cm-bench-") as tmp:
        counter = iter(range(10**6))

        def fresh(prefix: str) -> str:
            return f"{prefix}{next(counter)}.db"

        tx_s = median_min(lambda: 2000 / time_imports(tmp, fresh("tx"), [], two), args.runs)
        blk = median_min(lambda: time_imports(tmp, fresh("blk"), [], two[:1]), args.runs)
        reorg = median_min(
            lambda: time_imports(tmp, fresh("re"), main10 + side11[:10], side11[10:]), args.runs)
    hashes = median_min(hash_rate, args.runs)
    verify, sha = bare_rates()
    results = {"tx_per_s": tx_s[0], "block_1000_import_s": blk[0], "reorg_10_s": reorg[0],
               "hashes_per_s": hashes[0]}
    table = Table(title=f"crowdmesh chain (median of {args.runs}, SqliteStore, WAL, sync=FULL)")
    for col in ("metric", "median", "min/max", "target", "ok", "beside"):
        table.add_column(col)
    better_low = {"block_1000_import_s", "reorg_10_s"}
    beside = {
        "tx_per_s": f"bare Ed25519 verify {verify:,.0f}/s (tx cost {verify / tx_s[0]:.2f}× verify)",
        "block_1000_import_s": f"1000 bare verifies {1000 / verify:.3f} s",
        "reorg_10_s": f"1100 bare verifies {1100 / verify:.3f} s",
        "hashes_per_s": f"bare sha256(200 B) {sha:,.0f}/s",
    }
    for name, (med, _, values) in zip(results, (tx_s, blk, reorg, hashes), strict=True):
        ok = med <= TARGETS[name] if name in better_low else med >= TARGETS[name]
        spread = f"{min(values):,.3f} / {max(values):,.3f}"
        table.add_row(name, f"{med:,.3f}", spread, f"{TARGETS[name]:,}",
                      "yes" if ok else "NO", beside[name])
    console.print(table)
    console.print(f"load average after: {os.getloadavg()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
