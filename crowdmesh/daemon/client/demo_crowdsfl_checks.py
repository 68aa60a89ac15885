"""``make demo`` (CrowdSFL), its measurements and end checks: the requester's held-out rows,
a global model's test accuracy, the per-round table, and the settlement checks (rewards,
deposits, reputation and balances the same on every node; the supply exact).

See ``demo_crowdsfl.py`` for what the demo shows. Every check appends to
:attr:`DemoResult.failures` rather than raising, so one run names every unmet expectation.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Column, Table

from crowdmesh.chain.genesis import Genesis
from crowdmesh.chain.rules import burned_fee
from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.fl import ModelSpec, accuracy, load_default, model_from_bytes

__all__ = [
    "HELD_OUT",
    "STEPS",
    "DemoFailed",
    "DemoResult",
    "check_settlement",
    "console",
    "global_accuracy",
    "held_out_rows",
    "rounds_table",
]

console = Console(width=None if sys.stdout.isatty() else 130)  # logs: no wrapping

# The built-in split the daemons use (crowdmesh.daemon.startup.builtin_split; the client may
# not import the server, so it is restated here): a fixed quarter of scikit-learn's WDBC,
# chosen by a permutation seeded 7, is the requester's held-out data; the workers shard the rest.
HELD_OUT: Final = 142
SPLIT_SEED: Final = 7
# The phase a round is in after each step, and the step's name in the round table.
STEPS: Final = (("training", "train+blind"), ("blinded", "verify+score"),
                ("scored", "select"), ("selected", "aggregate"))


class DemoFailed(Exception):
    """A step could not go on (the message says which and why)."""


@dataclass(slots=True)
class DemoResult:
    """What the demo found: ``failures`` (empty: passed), the task id, per-round records."""

    failures: list[str] = field(default_factory=list)
    task: str = ""
    # (round, phase) -> monotonic time the requester's view first showed it
    seen: dict[tuple[int, str], float] = field(default_factory=dict)
    global_acc: dict[int, float] = field(default_factory=dict)  # model round -> accuracy
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True iff every expectation held."""
        return not self.failures

    def expect(self, ok: bool, what: str) -> bool:
        """Record ``what`` as failed unless ``ok``; print it either way."""
        console.print(("  [green]ok[/green]     " if ok else "  [red]FAILED[/red] ") + what)
        if not ok:
            self.failures.append(what)
        return ok


def held_out_rows() -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The requester's held-out rows of the built-in data (the daemons' default holdout)."""
    data = load_default()
    x, y = data.encoded(), data.y
    held = np.random.default_rng(SPLIT_SEED).permutation(len(y))[:HELD_OUT]
    return x[held], y[held]


def global_accuracy(reply: dict[str, Any], rows: tuple[NDArray[np.float64],
                                                        NDArray[np.int64]]) -> float:
    """The accuracy on ``rows`` of a ``task_model`` reply (float32 bytes as hex)."""
    layers = [int(n) for n in reply["layers"]]
    spec = ModelSpec(layers[0], tuple(layers[1:-1]), layers[-1], str(reply["activation"]),
                     str(reply["init"]))
    return accuracy(model_from_bytes(spec, bytes.fromhex(reply["model"])), *rows)


def _step_times(seen: dict[tuple[int, str], float], r: int, last: int) -> list[str]:
    """Seconds from each observed phase of round ``r`` to the next observed one."""
    marks = [seen.get((r, p)) for p, _ in STEPS]
    end = seen.get((r + 1, "training")) if r < last else seen.get((r, "final"))
    marks.append(end)
    out = []
    for k in range(len(STEPS)):
        start = marks[k]
        nxt = next((m for m in marks[k + 1:] if m is not None), None)
        if start is None or nxt is None:
            out.append("<0.2" if start is None else "-")
        else:
            out.append(f"{nxt - start:.2f}")
    first, final = marks[0], end
    out.append("-" if first is None or final is None else f"{final - first:.2f}")
    return out


def rounds_table(view: dict[str, Any], result: DemoResult) -> None:
    """Per round: step times, the blinded models' accuracies, the selection, global accuracy."""
    last = int(view["rounds"]) - 1
    table = Table("round", *(Column(f"{name} s", no_wrap=True) for _, name in STEPS), "round s",
                  *(Column(h, no_wrap=True) for h in ("blinded models' accuracy", "selected",
                                                      "global acc")),
                  title="rounds: step times as seen by polling the requester's task_show every "
                  "0.2 s (each includes mining\nthe step's block and its propagation); accuracy "
                  "of each blinded model as scored by the requester")
    history = {int(h["round"]): h for h in view["history"]}
    for r in range(last + 1):
        h = history.get(r, {})
        accs = " ".join(f"#{i} {a / 100:.1f}%" for i, a in enumerate(h.get("accuracy_bps", [])))
        sel = ",".join(f"#{i}" for i in h.get("selected", []))
        acc = result.global_acc.get(r + 1)
        table.add_row(str(r), *_step_times(result.seen, r, last), accs or "-", sel or "-",
                      "-" if acc is None else f"{acc * 100:.1f}%")
    console.print(table)
    if 0 in result.global_acc:
        console.print(f"  initial model (round 0): {result.global_acc[0] * 100:.1f}% on the "
                      f"requester's {HELD_OUT} held-out rows; 'global acc': the model posted "
                      "at the end of that round, downloaded and evaluated by this demo")


async def _paid(node: NodeHandle, task: str) -> dict[str, tuple[int, int, int, int]]:
    """This node's ``sfl-paid`` events of ``task``: worker -> (reward, deposit back,
    deposit burned, reputation)."""
    out: dict[str, tuple[int, int, int, int]] = {}
    height = int((await node.rpc("head"))["height"])
    for h in range(height, 0, -1):
        for txid in (await node.rpc("block", [h]))["txids"]:
            for e in (await node.rpc("tx", [txid])).get("events", []):
                f = e["fields"]
                if e["name"] == "sfl-paid" and f[0] == task:
                    out[str(f[1])] = (int(f[2]), int(f[3]), int(f[4]), int(f[5]))
        if out:
            return out
    return out


async def _supply(net: Testnet, node: NodeHandle, accounts: list[str]) -> tuple[int, int]:
    """(Σ balances, genesis + block rewards − burned fees) at ``node``'s head."""
    genesis = Genesis.from_json((net.root / "genesis.json").read_text())
    height = int((await node.rpc("head"))["height"])
    minted = burned = 0
    for h in range(1, height + 1):
        minted += genesis.reward(h)
        for txid in (await node.rpc("block", [h]))["txids"]:
            burned += burned_fee(int((await node.rpc("tx", [txid]))["fee"]), genesis)
    every = sorted({*accounts, *(a.hex() for a, _ in genesis.alloc)})
    total = sum([int((await node.rpc("balance", [a]))["balance"]) for a in every])
    return total, genesis.alloc_total() + minted - burned


async def check_settlement(net: Testnet, view: dict[str, Any], names: dict[str, str],
                           result: DemoResult) -> None:
    """Rewards, deposits, reputation and balances: shown, and checked equal on every node."""
    task = result.task
    result.expect(view["phase"] == "settled", f"the task settled (phase {view['phase']})")
    result.expect(view["escrow"] == 0, f"nothing left in escrow ({view['escrow']})")
    paid = [await _paid(n, task) for n in net.nodes]
    result.expect(all(p == paid[0] for p in paid),
                  f"rewards, deposits and reputation the same on all {len(net.nodes)} nodes")
    deposits = {str(w["account"]): int(w["deposit"]) for w in view["workers"]}
    table = Table("worker", "n_k", "deposit", "reward", "deposit back", "burned",
                  "reputation", title="settlement (sfl-paid events)")
    for w in view["workers"]:
        acct = str(w["account"])
        reward, back, burned, rep = paid[0].get(acct, (0, 0, 0, 0))
        table.add_row(names.get(acct, acct[:12]), str(w["n_k"]), str(w["deposit"]),
                      str(reward), str(back), str(burned), str(rep))
    console.print(table)
    result.expect(set(paid[0]) == set(deposits) and all(p[0] > 0 for p in paid[0].values()),
                  f"every one of the {len(deposits)} workers rewarded")
    result.expect(all(paid[0].get(a, (0, -1))[1] == d for a, d in deposits.items()),
                  "every deposit returned (each worker met every deadline)")
    accounts = list(names)
    views = [[(await n.rpc("balance", [a]))["balance"] for a in accounts] for n in net.nodes]
    table = Table("account", "balance", f"same on all {len(net.nodes)} nodes",
                  title="balances at the common head")
    for k, acct in enumerate(accounts):
        same = len({v[k] for v in views}) == 1
        table.add_row(names[acct], str(views[0][k]), "yes" if same else "NO")
    console.print(table)
    result.expect(all(v == views[0] for v in views),
                  f"every balance the same on all {len(net.nodes)} nodes")
    total, want = await _supply(net, net.nodes[-1], accounts)
    result.expect(total == want, f"supply exact: Σ balances {total} == genesis + block "
                                 f"rewards − burned fees {want}")
