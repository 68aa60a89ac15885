"""``make demo``: a whole CrowdSFL federated-learning task between 5 real daemons.

Run as ``python -m crowdmesh.daemon.client.cli_demo_crowdsfl [--rounds 5] [--seed 3] [--keep]``
(the arguments are parsed there; this module is the demo itself).

The testnet (``testnet init``'s layout, each daemon started with the same command
``crowdmesh testnet up`` uses): 5 daemons on 127.0.0.1, mesh topology. node0 is the
requester and the one on-demand miner (one miner: no equal-work forks), node1 the CSP,
node2-node4 workers holding a third each of the built-in data (scikit-learn's WDBC minus the
requester's held-out quarter) through ``[crowdsfl] shard = "i/3"`` and ``auto_join``. Before
any daemon starts, the genesis funds every node's account and every config gets its roles, as
``tests/functional/test_crowdsfl_task.py`` does.

What it shows, in order:

1. the daemons start and converge; the requester and the CSP register their ElGamal keys
   (``elgamal_register``: register-key with a Schnorr proof) and the demo waits until both
   are on chain;
2. the requester creates a task of ``--rounds`` rounds (k = 3 workers, full crypto and proofs:
   encryption-randomness proofs, the CSP's blinding with its batched DLEQ proof, which the
   requester verifies before it decrypts); the workers join on their own;
3. while it runs, one line per step as the requester's ``task_show`` reports it (polled every
   0.2 s, so a time is "when the requester's view showed it": it includes the mining of the
   step's block and its propagation), and a heartbeat while nothing changes;
4. per round: the step times, the requester's accuracy of each blinded model, the CSP's
   selection (positions in the blinded list) and the test accuracy of the global model posted
   at the round's end, downloaded (``task_model``) and evaluated here with ``crowdmesh.fl`` on
   the requester's held-out rows;
5. at the end: rewards, deposits and reputation (the ``sfl-paid`` events) and every balance,
   each the same on all 5 nodes, and the exact supply; the wall time; every daemon stops.

Every wait is bounded (:data:`STEP_TIMEOUT_S` without progress, :data:`TASK_TIMEOUT_S` in
all). Rule: the library never exits the process; :func:`run_demo` returns a
:class:`DemoResult` whose ``failures`` name every unmet expectation, and
:func:`run_demo_in_tmp` turns it into the exit status. The daemons are children of the demo's
nursery: they are stopped (SIGTERM, then killed) on success, failure and Ctrl-C alike.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Final

import trio

from crowdmesh.daemon.client.demo_crowdsfl_checks import (
    HELD_OUT,
    DemoFailed,
    DemoResult,
    check_settlement,
    console,
    global_accuracy,
    held_out_rows,
    rounds_table,
)
from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.client.rpc import RpcCallError
from crowdmesh.daemon.client.sfl_layout import fund, lay_out_node
from crowdmesh.daemon.client.testnet import TestnetSpec, init_testnet

__all__ = ["run_demo", "run_demo_in_tmp"]

N_NODES: Final = 5
REQ, CSP, WORKERS = 0, 1, (2, 3, 4)
FUNDS: Final = 10**9
DEFAULT_SEED: Final = 3
T_WAIT_S: Final = 20  # per-round submission window (block time)
T_STEP_S: Final = 30  # the requester's and the CSP's time per step before a timeout
START_TIMEOUT_S: Final = 90.0
KEY_TIMEOUT_S: Final = 30.0
STEP_TIMEOUT_S: Final = 60.0  # no phase change for this long: the demo fails
TASK_TIMEOUT_S: Final = 300.0
POLL_S: Final = 0.2
HEARTBEAT_S: Final = 5.0
STOP_TIMEOUT_S: Final = 20.0
NAMES: Final = {REQ: "node0 requester", CSP: "node1 CSP", 2: "node2 worker",
                3: "node3 worker", 4: "node4 worker"}


def configure(root: Path, accounts: list[str]) -> None:
    """Funds (:data:`FUNDS` each: pool, deposits, fees), roles, shards and mining in every
    config: only the requester mines."""
    fund(root / "genesis.json", accounts, FUNDS)
    for i in range(N_NODES):
        roles = {REQ: ["requester"], CSP: ["csp"]}.get(i, ["worker"])
        lay_out_node(root / f"node{i}" / "crowdmesh.toml", roles, i == REQ,
                     (i - 1, 3) if i in WORKERS else None)


async def _wait(what: str, timeout: float, check: Any) -> Any:
    """Poll ``await check()`` until truthy; DemoFailed naming ``what`` after ``timeout``."""
    started = trio.current_time()
    beat = started
    while True:
        got = await check()
        if got:
            return got
        now = trio.current_time()
        if now - started > timeout:
            raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        if now - beat > HEARTBEAT_S:
            console.print(f"  … waiting for {what} ({now - started:.0f} s of {timeout:.0f})")
            beat = now
        await trio.sleep(POLL_S)


async def register_keys(net: Testnet) -> None:
    """The requester's and the CSP's ElGamal keys on chain (register-key + proof)."""
    req, csp = net.nodes[REQ], net.nodes[CSP]
    for node in (req, csp):
        reply = await node.rpc("elgamal_register", [])
        console.print(f"  {NAMES[node.index]}: ElGamal key {str(reply['public_key'])[:16]}… "
                      f"register-key {'sent' if reply.get('call') else 'already on chain'}")
    await net.mine(req, 1)
    for node in (req, csp):
        await _wait(f"{NAMES[node.index]}'s key on chain", KEY_TIMEOUT_S,
                    lambda n=node: _registered(n))
    console.print("  both keys registered")


async def _registered(node: NodeHandle) -> bool:
    return bool((await node.rpc("elgamal_key"))["registered"])


async def create_task(net: Testnet, rounds: int) -> str:
    """``task create`` on the requester; its id once the call is made."""
    req = net.nodes[REQ]
    csp = (await net.nodes[CSP].rpc("account"))["account"]
    params = {"csp": csp, "rounds": rounds, "t_wait": T_WAIT_S, "t_step": T_STEP_S}
    request_id = uuid.uuid4().hex

    async def created() -> str | None:
        reply = await req.rpc("task_create", [params, request_id])  # idempotent by id
        task = reply.get("task")
        return None if task is None else str(task)

    task = str(await _wait("the task's id", KEY_TIMEOUT_S, created))
    reply = await req.rpc("task_create", [params, request_id])
    spec = reply["spec"]
    console.print(f"  task {task[:16]}: layers {spec['layers']}, {rounds} rounds, k = 3, "
                  f"pool {spec['pool']}, T_wait {T_WAIT_S} s, aggregation "
                  f"{spec['aggregation']}")
    return task


async def _show(req: NodeHandle, task: str) -> dict[str, Any] | None:
    """The requester's ``task_show``, or None while the sfl-create call is not in a block."""
    try:
        view = dict(await req.rpc("task_show", [task]))
    except RpcCallError as exc:
        if exc.code != "sfl-unknown-task":
            raise
        return None
    return None if view["phase"] == "pending" else view


def _label(key: tuple[int, str], rounds: int) -> str:
    r, phase = key
    if phase == "training":
        return f"round {r}: global model {r} posted, workers training"
    return {"blinded": f"round {r}: all 3 submitted; CSP posted the blinded list + DLEQ proof",
            "scored": f"round {r}: requester verified every proof, posted the accuracies",
            "selected": f"round {r}: CSP posted its selection + score commitment",
            "final": f"round {rounds - 1}: final model posted; CSP settles",
            "joining": "sfl-create in a block; workers joining",
            "creating": "sfl-create sent, waiting for its block",
            "settled": "settled",
            "aborted": "ABORTED"}.get(phase, f"round {r}: {phase}")


async def follow(net: Testnet, result: DemoResult, rounds: int, rows: Any) -> dict[str, Any]:
    """Poll the requester's view until the task ends; record when each step was first seen
    and evaluate each new global model. Returns the final view."""
    req = net.nodes[REQ]
    started = last_change = beat = trio.current_time()
    key: tuple[int, str] | None = None
    while True:
        shown = await _show(req, result.task)
        view = shown or {"round": 0, "phase": "creating", "workers": [], "history": []}
        now = trio.current_time()
        new = (int(view["round"]), str(view["phase"]))
        if new != key:
            key, last_change = new, now
            result.seen.setdefault(new, time.monotonic())
            joined = f" ({len(view['workers'])}/3 joined)" if new[1] == "joining" else ""
            console.print(f"  {now - started:6.1f} s  {_label(new, rounds)}{joined}")
        await _evaluate_new(req, view, rows, result)
        if new[1] in ("settled", "aborted"):
            return dict(view)
        if now - last_change > STEP_TIMEOUT_S or now - started > TASK_TIMEOUT_S:
            raise DemoFailed(f"the task made no progress: phase {new[1]} round {new[0]} for "
                             f"{now - last_change:.0f} s ({now - started:.0f} s in all; limits "
                             f"{STEP_TIMEOUT_S:.0f} s per step, {TASK_TIMEOUT_S:.0f} s)")
        if now - beat > HEARTBEAT_S and now - last_change > HEARTBEAT_S:
            head = await req.rpc("head")
            console.print(f"  {now - started:6.1f} s  … still {new[1]} (round {new[0]}, "
                          f"height {head['height']}, {now - last_change:.0f} s in this step)")
            beat = now
        await trio.sleep(POLL_S)


async def _evaluate_new(req: NodeHandle, view: dict[str, Any], rows: Any,
                        result: DemoResult) -> None:
    for h in view["history"]:
        r = int(h["round"])
        if "model" in h and r not in result.global_acc:
            reply = await req.rpc("task_model", [result.task, r])
            result.global_acc[r] = global_accuracy(reply, rows)
            console.print(f"           global model {r}: {result.global_acc[r] * 100:.1f}% "
                          f"test accuracy on the requester's {HELD_OUT} held-out rows")


async def _run(net: Testnet, result: DemoResult, rounds: int) -> None:
    wall = time.monotonic()
    rows = await trio.to_thread.run_sync(held_out_rows)
    console.print(f"requester's held-out rows for the demo's own evaluation: {len(rows[1])}")
    console.rule(f"{N_NODES}-daemon testnet: requester + miner, CSP, 3 workers")
    await net.start_all(progress=lambda n: console.print(f"  {NAMES[n.index]} ready"))
    result.timings["start"] = time.monotonic() - wall
    console.print(f"all {N_NODES} daemons ready and on genesis in "
                  f"{result.timings['start']:.1f} s")
    console.rule("ElGamal keys")
    await register_keys(net)
    console.rule(f"a CrowdSFL task of {rounds} rounds, full crypto and proofs")
    task_started = time.monotonic()
    result.task = await create_task(net, rounds)
    view = await follow(net, result, rounds, rows)
    result.timings["task"] = time.monotonic() - task_started
    result.expect(view["phase"] == "settled",
                  f"the task ran to settlement in {result.timings['task']:.1f} s "
                  "(task create → settled as seen by the requester)")
    console.rule("per round")
    rounds_table(view, result)
    console.rule("settlement, checked on every node")
    await net.sync_blocks(timeout=30)
    names = {n.info.account: NAMES[n.index] for n in net.nodes}
    await check_settlement(net, view, names, result)
    result.timings["wall"] = time.monotonic() - wall


async def run_demo(root: Path, rounds: int = 5, seed: int = DEFAULT_SEED) -> DemoResult:
    """Run the demo in ``root``; the result names every failure (none: passed)."""
    nodes = init_testnet(root, TestnetSpec(n=N_NODES, seed=seed, topology="mesh",
                                           mining_mode="on-demand"))
    configure(root, [n.account for n in nodes])
    console.print(f"testnet in {root}, ports {nodes[0].port}-{nodes[-1].port}")
    result = DemoResult()
    async with trio.open_nursery() as nursery:
        net = Testnet(root, nursery)
        try:
            with trio.fail_after(START_TIMEOUT_S + TASK_TIMEOUT_S + 120):
                await _run(net, result, rounds)
        except (DemoFailed, AssertionError, trio.TooSlowError, RpcCallError) as exc:
            result.failures.append(str(exc) or type(exc).__name__)
            console.print(f"[red]FAILED[/red] {exc}")
        finally:
            await _stop(net, nursery, result)
    return result


async def _stop(net: Testnet, nursery: trio.Nursery, result: DemoResult) -> None:
    """SIGTERM every daemon we started, in parallel (a straggler is killed after
    :data:`STOP_TIMEOUT_S`), shielded from a Ctrl-C; an unclean stop is a failure."""
    console.rule("stopping (SIGTERM)")
    times: list[str] = []

    async def one(node: NodeHandle) -> None:
        try:
            times.append(f"{await node.stop_node(timeout=STOP_TIMEOUT_S):.2f} s")
        except AssertionError as exc:
            times.append(f"node{node.index} FAILED")
            result.failures.append(str(exc).splitlines()[0])

    with trio.CancelScope(shield=True), trio.move_on_after(STOP_TIMEOUT_S + 15):
        async with trio.open_nursery() as stops:
            for node in net.nodes:
                if node.running:
                    stops.start_soon(one, node)
    console.print("stopped: " + (", ".join(times) or "none was running"))
    nursery.cancel_scope.cancel()  # anything still running is killed with the nursery


def run_demo_in_tmp(rounds: int = 5, seed: int = DEFAULT_SEED, keep: bool = False) -> int:
    """Run the demo in a fresh ``/tmp/cmsfl-*`` directory, removed afterwards on success
    unless ``keep``.

    Returns:
        The exit status: 0 if every check passed, 130 on Ctrl-C, else 1.
    """
    root = Path(tempfile.mkdtemp(prefix="cmsfl-", dir="/tmp"))
    began = time.monotonic()
    result = DemoResult(failures=["interrupted"])
    try:
        result = trio.run(run_demo, root / "tn", rounds, seed)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]: every daemon the demo started was stopped")
    except BaseExceptionGroup as group:
        if group.split(KeyboardInterrupt)[1] is not None:  # anything besides a Ctrl-C
            raise
        console.print("[red]interrupted[/red]: every daemon the demo started was stopped")
    finally:
        if keep or not result.passed:
            console.print(f"testnet and daemon logs kept in {root}/tn (nodeI/daemon.log)")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if result.failures == ["interrupted"]:
        return 130
    if result.passed:
        wall = result.timings.get("wall", 0.0)
        console.print(f"[green]demo passed[/green]: task {result.task[:16]} of {rounds} rounds "
                      f"settled in {result.timings.get('task', 0.0):.1f} s; "
                      f"{wall:.1f} s wall from the first daemon's start to the last check, "
                      f"{time.monotonic() - began:.1f} s with setup and the stop")
        return 0
    console.print("[red]demo FAILED[/red]:")
    for failure in result.failures:
        console.print(f"  - {failure}")
    return 1
