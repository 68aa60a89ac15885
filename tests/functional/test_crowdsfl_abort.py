"""The CrowdSFL abort paths between real daemons (the testnet launcher, as
test_crowdsfl_task.py): a CSP that dies after round 0 starts (the requester times it out), a
requester that dies after the first blinded list (the CSP, the one miner here, times it out),
and a task that too few workers join (the requester times it out at the join deadline). Each
ends ABORTED with every escrowed coin back where it came from: the requester's pool and every
worker's deposit (each account's balance is its genesis funds minus the fees it paid, plus
the block rewards it mined), balances equal on every live node, and the supply exact.
Deadlines are short (seconds) so each test takes well under 90 s."""

from __future__ import annotations

import pytest

from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from tests.functional.framework import log, running_testnet
from tests.functional.sfl_util import (
    assert_balances_agree,
    assert_supply_rpc,
    create_task,
    dump,
    gains,
    quiet,
    start_parties,
    step_to_phase,
    wait_phase,
)

pytestmark = pytest.mark.functional

REQ, CSP = 0, 1
ABORT_WAIT_S = 60


async def _check_aborted(net: Testnet, task: str, reason: str, live: list[NodeHandle],
                         workers: int, sender: NodeHandle) -> None:
    """ABORTED for ``reason`` by one ``sfl-timeout`` from ``sender``; every coin refunded;
    live nodes agree; supply exact; no timeout refused."""
    shown = await wait_phase(live[0], task, ["aborted", "settled"], ABORT_WAIT_S, "aborted")
    assert shown["phase"] == "aborted", shown
    assert shown["escrow"] == 0 and len(shown["workers"]) == workers, shown
    await quiet(net, live)
    chain = await dump(live[0])
    aborted = chain.events("sfl-aborted")
    assert [a[1] for a in aborted] == [reason], aborted
    refunded = chain.events("sfl-refunded")
    assert len(refunded) == workers and all(int(r[2]) > 0 for r in refunded), refunded
    accounts = [n.info.account for n in net.nodes]
    assert await gains(net, live[0], chain, accounts) == [0] * len(accounts)
    await assert_balances_agree(live, accounts)
    await assert_supply_rpc(net, live[-1], chain)
    senders = [tx["sender"] for _, tx in chain.txs if tx["kind"] == "sfl-timeout"]
    assert senders == [sender.info.account], senders
    logs = net.combined_logs()
    assert "sfl-call-rejected" not in logs
    assert not [line for line in logs.splitlines() if "call-rejected" in line and "timeout" in line]
    log.info("task %s aborted (%s) by node%d; %d refunds", task[:12], reason, sender.index,
             len(refunded))


async def test_a_csp_that_dies_after_round_0_starts_is_timed_out_with_every_coin_back() -> None:
    async with running_testnet(n=5, topology="mesh", mining_mode="on-demand",
                               start=False) as net:
        req, csp = await start_parties(net, REQ, (2, 3, 4))
        await req.rpc("set_mining", ["off"])  # the requester mines: one step per block
        task = await create_task(req, csp, "--rounds", "2", "--t-wait", "5", "--t-step", "5")
        await step_to_phase(req, task, ["training"], "round 0 started")
        await csp.kill()  # SIGKILL, never restarted: the CSP stalls for good
        await req.rpc("set_mining", ["on-demand"])
        live = [n for n in net.nodes if n is not csp]
        await _check_aborted(net, task, "csp-stall", live, workers=3, sender=req)


async def test_a_requester_that_dies_after_the_first_blinded_list_is_timed_out_by_the_csp() -> None:
    async with running_testnet(n=5, topology="mesh", mining_mode="on-demand",
                               start=False) as net:
        # the CSP is the one miner, so blocks keep coming once the requester is gone
        req, csp = await start_parties(net, CSP, (2, 3, 4))
        await csp.rpc("set_mining", ["off"])  # one step per block
        task = await create_task(req, csp, "--rounds", "2", "--t-wait", "15", "--t-step",
                                 "10")
        shown = await step_to_phase(csp, task, ["blinded"], "first blinded list posted")
        assert shown["round"] == 0, shown
        # SIGKILL, never restarted: the requester stalls for good. Its scores may be in the
        # CSP's pool already; it still owes the round's aggregate and all of round 1.
        await req.kill()
        await csp.rpc("set_mining", ["on-demand"])
        live = [n for n in net.nodes if n is not req]
        await _check_aborted(net, task, "requester-stall", live, workers=3, sender=csp)


async def test_too_few_workers_before_the_join_deadline_aborts_with_every_coin_back() -> None:
    async with running_testnet(n=4, topology="mesh", mining_mode="on-demand",
                               start=False) as net:
        req, csp = await start_parties(net, REQ, (2, 3))
        task = await create_task(req, csp, "--rounds", "2", "--min-workers", "3",
                                 "--max-workers", "3", "--select", "3", "--join-window", "8")
        await _check_aborted(net, task, "too-few-workers", list(net.nodes), workers=2,
                             sender=req)
