"""The chaos harness's invariants, checked after every fault and at the end.

- ``converge``: every running node reports one head within ``bound`` seconds of the heal
  (the seconds are recorded), then every mempool drains (the load is paused meanwhile). Heads
  that differ at equal total work are a tie that only the next block breaks (fork choice keeps
  the first seen, as Bitcoin does); with the load paused none would come, so after
  :data:`TIE_STALL_S` of an unchanged tie one block is generated on a node holding the most
  common head (counted as a ``tiebreak``). Different work that does not resolve is a violation.
- ``supply``: Σ balances of every account the load touches (users and miners) equals the
  genesis allocation + Σ block rewards − Σ burned fee parts of the main chain
  (``chain/rules.py``: supply), read at one head that did not move during the reads.
- ``confirmed``: a transaction on the main chain at the previous checkpoint is still confirmed
  (the checkpoint head is an ancestor of the new head; otherwise every transaction of the
  blocks that left the main chain is looked up; each missing one counts in
  ``lost_confirmed``), and a sample of confirmed ids is confirmed on every node.
- ``traceback``: no daemon log holds ``Traceback`` (each log is read from where the last
  check stopped). ``check-db`` runs in the faults themselves and at the end
  (:meth:`ChaosRun.check_db`).

Invariant: :class:`ChainTracker` walks only new main-chain blocks (O(new blocks + reorg
depth) RPCs per check), so a 100-fault run stays cheap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.rules import burned_fee
from crowdmesh.daemon.client.chaos_base import ChaosRun
from crowdmesh.daemon.client.harness import NodeHandle
from crowdmesh.daemon.client.rpc import RpcCallError

__all__ = ["ChainTracker", "check_tracebacks", "wait_converged", "wait_drained"]

POLL_S: Final = 0.2
TIE_STALL_S: Final = 10.0
STABLE_READS: Final = 5
SAMPLE_TXS: Final = 10


async def _heads(nodes: list[NodeHandle]) -> list[Any]:
    return [(await n.rpc("head")).get("hash") for n in nodes]


async def wait_converged(run: ChaosRun, bound: float) -> float | None:
    """Seconds until every running node shares one head, or None (a ``converge`` violation)
    if that takes over ``bound``; breaks a stalled equal-work tie (see the module docstring)."""
    started = time.monotonic()
    last: tuple[str, ...] = ()
    since = started
    with trio.move_on_after(bound):
        while True:
            nodes = run.available()
            status = [await n.rpc("status") for n in nodes]
            heads = tuple(str(s["head"]) for s in status)
            if len(set(heads)) == 1:
                return round(time.monotonic() - started, 2)
            if heads != last:
                last, since = heads, time.monotonic()
            elif (len({s["total_work"] for s in status}) == 1
                  and time.monotonic() - since >= TIE_STALL_S):
                await _break_tie(run, nodes, heads)
                since = time.monotonic()
            await trio.sleep(POLL_S)
    tips = await run.net.tips(run.available())
    run.violate("converge", f"no common head within {bound} s: {tips}")
    return None


async def wait_drained(run: ChaosRun, bound: float) -> bool:
    """Wait until every mempool is empty and the nodes share one head (quiet: the supply and
    confirmation checks read a chain that does not move)."""
    deadline = time.monotonic() + bound
    with trio.move_on_after(bound):
        while True:
            pools = await run.rpc_all("mempool")
            if not any(p["size"] for p in pools):
                if len(set(await _heads(run.available()))) == 1:
                    return True
                # why: the last transactions can leave an equal-work tie that, with the load
                # paused, no block would ever break; wait_converged breaks a stalled one
                if await wait_converged(run, max(0.0, deadline - time.monotonic())) is None:
                    return False
            await trio.sleep(POLL_S)
    sizes = [(n.index, p["size"]) for n, p in zip(run.available(), await run.rpc_all("mempool"),
                                                  strict=True)]
    run.violate("converge", f"mempools not drained within {bound} s: {sizes}")
    return False


async def _break_tie(run: ChaosRun, nodes: list[NodeHandle], heads: tuple[str, ...]) -> None:
    common = max(set(heads), key=heads.count)
    miner = next(n for n, h in zip(nodes, heads, strict=True) if h == common)
    await miner.rpc("generate", [1])
    run.tiebreaks += 1


def check_tracebacks(run: ChaosRun, offsets: dict[int, int]) -> None:
    """A ``traceback`` violation per daemon log that gained a ``Traceback`` since last time."""
    for node in run.nodes:
        path: Path = node.log_path
        if not path.exists():
            continue
        with path.open("rb") as f:
            f.seek(offsets.get(node.index, 0))
            text = f.read().decode(errors="replace")
            offsets[node.index] = f.tell()
        at = text.find("Traceback")
        if at >= 0:
            run.violate("traceback", f"node{node.index}: {text[max(0, at - 300):at + 3000]}")


@dataclass(slots=True)
class ChainTracker:
    """The main chain as last seen (hash, txids, burned fees per height) and the checkpoint."""

    genesis: Genesis
    accounts: list[str]
    hashes: list[str] = field(default_factory=list)
    txids: list[list[str]] = field(default_factory=list)
    burned: list[int] = field(default_factory=list)
    checkpoint: int = 0  # height confirmed at the last check
    lost_confirmed: set[str] = field(default_factory=set)
    confirmed_total: int = 0

    @classmethod
    def for_testnet(cls, root: Path, accounts: list[str]) -> ChainTracker:
        return cls(Genesis.from_json((root / "genesis.json").read_text()), accounts)

    async def check(self, run: ChaosRun) -> int:
        """Run the ``confirmed`` and ``supply`` checks on a quiet network; return the height."""
        node = run.available()[0]
        height = int((await node.rpc("head"))["height"])
        removed = await self._rewind(node, height)
        lost = await self._missing(node, removed)
        if lost:
            self.lost_confirmed |= lost
            run.violate("confirmed", f"{len(lost)} txs confirmed before the fault are gone: "
                        f"{sorted(lost)[:5]}")
        await self._extend(run, node, height)
        await self._sample(run)
        height = await self._supply(run, node)
        self.checkpoint = height
        self.confirmed_total = sum(len(t) for t in self.txids)
        return height

    async def refresh(self, run: ChaosRun, node: NodeHandle) -> int:
        """Follow ``node``'s main chain to its head (no checks); return the height."""
        height = int((await node.rpc("head"))["height"])
        await self._rewind(node, height)
        await self._extend(run, node, height)
        return height

    async def _rewind(self, node: NodeHandle, height: int) -> list[str]:
        """Drop heights whose block left the main chain; return the txids of those that were
        at or below the checkpoint (confirmed before the fault)."""
        h = min(len(self.hashes) - 1, height)
        while h >= 0 and (await node.rpc("block", [h]))["hash"] != self.hashes[h]:
            h -= 1
        removed = [t for k in range(h + 1, min(len(self.hashes), self.checkpoint + 1))
                   for t in self.txids[k]]
        del self.hashes[h + 1:], self.txids[h + 1:], self.burned[h + 1:]
        return removed

    async def _missing(self, node: NodeHandle, txids: list[str]) -> set[str]:
        lost = set()
        for txid in txids:
            try:
                if (await node.rpc("tx", [txid])).get("status") != "confirmed":
                    lost.add(txid)
            except RpcCallError:
                lost.add(txid)
        return lost

    async def _extend(self, run: ChaosRun, node: NodeHandle, height: int) -> None:
        for h in range(len(self.hashes), height + 1):
            block = await node.rpc("block", [h])
            txids = list(block.get("txids", []))
            fees = [run.fees.get(t) or int((await node.rpc("tx", [t]))["fee"]) for t in txids]
            self.hashes.append(block["hash"])
            self.txids.append(txids)
            self.burned.append(sum(burned_fee(f, self.genesis) for f in fees))

    async def _sample(self, run: ChaosRun) -> None:
        confirmed = [t for ts in self.txids for t in ts]
        for txid in run.rng.sample(confirmed, min(SAMPLE_TXS, len(confirmed))):
            for node in run.available():
                try:
                    status = (await node.rpc("tx", [txid])).get("status")
                except RpcCallError as exc:
                    status = str(exc)
                if status != "confirmed":
                    run.violate("confirmed", f"node{node.index}: tx {txid} is {status}")

    async def _supply(self, run: ChaosRun, node: NodeHandle) -> int:
        """Check the supply at one head (following the chain if a late block moves it)."""
        for _ in range(STABLE_READS):
            head = await node.rpc("head")
            balances = [await node.rpc("balance", [a]) for a in self.accounts]
            if (await node.rpc("head"))["hash"] == head["hash"] == self.hashes[-1]:
                break
            await self.refresh(run, node)
        else:
            run.violate("supply", "the head kept moving; supply not checked")
            return len(self.hashes) - 1
        height = int(head["height"])
        minted = sum(self.genesis.reward(h) for h in range(1, height + 1))
        alloc = sum(amount for _, amount in self.genesis.alloc)
        expected = alloc + minted - sum(self.burned)
        total = sum(int(b["balance"]) for b in balances)
        if total != expected:
            run.violate("supply", f"height {height}: Σ balances {total} != alloc {alloc} + "
                        f"rewards {minted} - burned {sum(self.burned)} = {expected}")
        return height
