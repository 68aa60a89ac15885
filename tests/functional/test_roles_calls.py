"""Daemon-owned signing between real daemons: a call the operator (or a role) asks for is
signed by the daemon, survives a SIGKILL while in flight, and lands exactly once."""

from __future__ import annotations

import sys

import pytest
import trio

from crowdmesh.daemon.calls import FINAL_DEPTH
from tests.functional.framework import log, running_testnet, wait_until

pytestmark = pytest.mark.functional

PAYEE = "ab" * 32


async def test_sigkill_with_a_call_in_flight_then_restart_lands_it_exactly_once() -> None:
    async with running_testnet(n=2, topology="line", mining_mode="off") as net:
        caller, miner = net.nodes
        await net.mine(caller, 3)  # block rewards fund the caller's account
        account = (await caller.rpc("account"))["account"]
        nonce = (await caller.rpc("balance", [account]))["nonce"]
        # the miner is down, so the call can only be in the caller's mempool and role store
        await miner.stop_node()
        call = await caller.rpc("account_pay", [PAYEE, 25, "pay-1"])
        assert call["nonce"] == nonce and call["included_in"] is None
        await caller.kill()  # SIGKILL: submit_tx never saved this call; only the role store has it
        await caller.start(net.nursery)
        await caller.wait_ready()
        # back in the mempool from the role store alone, before anyone asks again
        assert (await caller.rpc("mempool"))["txids"] == [call["txid"]]
        again = await caller.rpc("account_pay", [PAYEE, 25, "pay-1"])  # a retried request
        assert again["txid"] == call["txid"]  # the same signed bytes, not a second payment
        assert (await caller.rpc("mempool"))["txids"] == [call["txid"]]
        await miner.start(net.nursery)
        await miner.wait_ready()
        await net.wait_connected()
        await net.sync_mempools()
        await net.mine(miner, FINAL_DEPTH)
        assert (await miner.rpc("balance", [PAYEE]))["balance"] == 25
        tx = await miner.rpc("tx", [call["txid"]])
        assert tx["status"] == "confirmed"
        assert tx["events"] == [{"name": "transferred", "fields": [account, PAYEE, 25]}]
        assert (await miner.rpc("balance", [account]))["nonce"] == nonce + 1
        await wait_until(lambda: _no_calls(caller), 30, "the call to be final")
        final = await caller.rpc("account_pay", [PAYEE, 25, "pay-1"])  # asked once more
        assert final["txid"] == call["txid"] and final["final"] is True
        assert (await caller.rpc("mempool"))["size"] == 0
        log.info("call %s landed once in %s", call["txid"], tx["block"])


async def _no_calls(node) -> bool:
    return not (await node.rpc("account"))["calls"]


async def test_a_role_whose_dataset_is_unreadable_fails_at_start_with_78() -> None:
    # every role is implemented now (role-not-implemented: tests/unit/daemon/test_startup.py);
    # a worker whose [crowdsfl] dataset cannot be read is the same kind of operator problem
    async with running_testnet(n=1, start=False) as net:
        node = net.nodes[0]
        text = node.config.read_text().replace('roles = ["miner"]', 'roles = ["miner", "worker"]')
        node.config.write_text(text + '\n[crowdsfl]\ndataset = "missing.csv"\n')
        proc = await trio.run_process(
            [sys.executable, "-m", "crowdmesh", "daemon", "--config", str(node.config)],
            capture_stdout=True, capture_stderr=True, check=False)
        assert proc.returncode == 78, proc.stderr
        assert b"bad-dataset" in proc.stderr and b"Traceback" not in proc.stderr


async def test_the_account_commands_pay_from_the_daemon_and_show_the_call() -> None:
    async with running_testnet(n=1, mining_mode="off") as net:
        node = net.nodes[0]
        await net.mine(node, 2)
        cli = [sys.executable, "-m", "crowdmesh", "--socket", str(node.socket), "--json"]
        paid = await trio.run_process([*cli, "pay", PAYEE, "9", "--id", "cli-1"],
                                      capture_stdout=True, capture_stderr=True, check=False)
        assert paid.returncode == 0, paid.stderr
        shown = await trio.run_process([*cli, "account"], capture_stdout=True, check=True)
        import json
        calls = json.loads(shown.stdout)["calls"]
        assert [c["call_id"] for c in calls] == ["cli-1"]
        assert calls[0]["txid"] == json.loads(paid.stdout)["txid"]
        await net.mine(node, 1)
        assert (await node.rpc("balance", [PAYEE]))["balance"] == 9
