"""The CrowdSFL control methods over a real node in this process (``run_node``): the ElGamal key
registration, ``task_create`` / ``task_list`` / ``task_show`` / ``task_model`` read from chain
state, and every refusal with its stable code, through the method table as the socket calls
it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import trio

from crowdmesh.chain import Genesis, make_transaction, register_key_payload
from crowdmesh.chain.contracts import REGISTER_KEY
from crowdmesh.chain.tx import minimum_fee
from crowdmesh.crypto.elgamal import keygen
from crowdmesh.crypto.groups import DEFAULT
from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.proofs import prove_key
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.daemon.methods import RpcError, bind_params, call_handler
from crowdmesh.daemon.methods.crowdsfl import METHODS
from crowdmesh.daemon.node import run_node
from crowdmesh.daemon.sflapi import build_spec
from crowdmesh.errors import CrowdmeshError, NotFound

RNG = DeterministicRng(b"sfl-api")
ME, CSP = AccountKey.generate(RNG), AccountKey.generate(RNG)
FUNDS = 10**9


class Sink:
    def publish_nowait(self, topic, event) -> None:
        pass


def _config(tmp: Path, roles: set[str]) -> NodeConfig:
    genesis = Genesis(chain_id="sfl-api", timestamp=1_700_000_000, target=1 << 250,
                      block_interval=1, retarget_interval=0,
                      alloc=tuple(sorted((k.public, FUNDS) for k in (ME, CSP))))
    (tmp / "genesis.json").write_text(genesis.to_json())
    Keystore.in_data_dir(tmp / "d").save("node", ME, None, RNG)
    return NodeConfig(data_dir=tmp / "d", genesis_path=tmp / "genesis.json",
                      control_socket=tmp / "c.sock", listen="/ip4/127.0.0.1/tcp/0",
                      roles=frozenset(roles), account_key="node")


async def call(services, name, params):
    method = METHODS[name]
    return await call_handler(method.handler, services, bind_params(method.params, params))


async def code_of(services, name, params) -> str:
    with pytest.raises(CrowdmeshError) as info:
        await call(services, name, params)
    return info.value.code


def _csp_registration(genesis_id: str) -> str:
    pair = keygen(DEFAULT, DeterministicRng(b"csp-elgamal"))
    payload = register_key_payload("default", pair.pk,
                                   prove_key(DEFAULT, CSP.public, pair.sk, RNG))
    tx = make_transaction(CSP, genesis_id, 0, REGISTER_KEY, payload, minimum_fee(payload, 1))
    return tx.encode().hex()


async def test_a_requester_registers_its_key_creates_a_task_and_reads_it_back(tmp_path):
    cfg = _config(tmp_path, {"miner", "requester"})
    async with trio.open_nursery() as nursery:
        services = await nursery.start(run_node, cfg, Sink())
        try:
            with trio.fail_after(60):
                await _scenario(services, cfg)
        finally:
            services.node.request_stop()


async def _scenario(s, cfg: NodeConfig) -> None:
    key_file = cfg.data_dir / "keys" / "default.elgamal"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # made at start, private
    spec = {"csp": CSP.public.hex(), "rounds": 2}
    # before any key is on chain: refused with the contract's code, nothing sent
    assert await code_of(s, "task_create", [spec, "r1"]) == "sfl-key-missing"
    assert (await call(s, "elgamal_key", []))["registered"] is False
    reply = await call(s, "elgamal_register", [])
    assert reply["call"]["kind"] == REGISTER_KEY
    await s.chain.submit_tx(_csp_registration("sfl-api"))
    await s.mining.generate(1)
    shown = await call(s, "elgamal_key", [])
    assert shown["registered"] is True and shown["account"] == ME.public.hex()
    assert (await call(s, "elgamal_register", []))["call"] is None  # once only
    # refusals with stable codes
    assert await code_of(s, "task_create", [{**spec, "csp": ME.public.hex()}, "r2"]) \
        == "sfl-csp-is-requester"
    assert await code_of(s, "task_create", [{**spec, "rounds": 0}, "r3"]) == "sfl-bad-spec"
    assert await code_of(s, "task_create", [{**spec, "colour": 1}, "r4"]) == "sfl-bad-spec"
    assert await code_of(s, "task_create", [{"rounds": 2}, "r5"]) == "bad-hex"
    assert await code_of(s, "task_show", ["ab" * 32]) == "sfl-unknown-task"
    assert await code_of(s, "task_join", ["ab" * 32]) == "sfl-not-a-worker"
    with pytest.raises(RpcError):
        await call(s, "task_create", ["not an object", "r6"])
    # create (idempotent by id), mine, read back from chain state
    created = await call(s, "task_create", [spec, "r7"])
    again = await call(s, "task_create", [spec, "r7"])
    assert created["task"] and again["task"] == created["task"]
    assert created["spec"]["layers"] == [30, 6, 2] and created["spec"]["bundle_chunks"] == 3
    # our own new task, not in a block yet, is pending (not unknown)
    pending = await call(s, "task_show", [created["task"]])
    assert pending["phase"] == "pending" and pending["round"] == 0 and pending["history"] == []
    await s.mining.generate(1)
    listed = await call(s, "task_list", [])
    assert [t["task"] for t in listed] == [created["task"]]
    shown = await call(s, "task_show", [created["task"]])
    assert shown["phase"] == "joining" and shown["round"] == 0 and shown["rounds"] == 2
    assert shown["csp"] == CSP.public.hex() and shown["requester"] == ME.public.hex()
    assert shown["escrow"] == shown["pool"] == 90_000 and shown["workers"] == []
    with pytest.raises(NotFound) as info:
        await call(s, "task_model", [created["task"], None])
    assert info.value.code == "sfl-no-model"
    await _timeouts(s, spec, created["task"])


async def _timeouts(s, spec: dict, open_task: str) -> None:
    """``task_timeout``: refused while nothing is overdue, then aborts a task nobody joined
    before its (one-second) join deadline, refunding the pool; a finished task refuses."""
    assert await code_of(s, "task_timeout", [open_task]) == "sfl-not-expired"
    assert await code_of(s, "task_timeout", ["ab" * 32]) == "sfl-unknown-task"
    lonely = (await call(s, "task_create", [{**spec, "join_window": 1}, "r8"]))["task"]
    await s.mining.generate(1)
    await trio.sleep(2.1)  # past the join deadline by the wall clock, not yet by block time
    sent: dict = {}

    async def timeout() -> None:
        sent.update(await call(s, "task_timeout", [lonely]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(timeout)
        while not sent:  # mining is off here: the beacon waits for a block, so give it one
            await trio.sleep(0.1)
            if s.node.ledger.mempool:
                await s.mining.generate(1)
    # this node is the requester, so its role may time the task out in the beacon's block
    assert sent["task"] == lonely and sent["beacon"]["kind"] == "transfer"
    assert sent["call"] is None if sent["phase"] in ("aborted", "aborting") \
        else sent["call"]["kind"] == "sfl-timeout"
    await s.mining.generate(1)
    shown = await call(s, "task_show", [lonely])
    assert shown["phase"] == "aborted" and shown["escrow"] == 0
    assert await code_of(s, "task_timeout", [lonely]) == "sfl-wrong-phase"


async def test_a_node_without_a_crowdsfl_role_answers_sfl_off(tmp_path):
    cfg = _config(tmp_path, {"miner"})
    async with trio.open_nursery() as nursery:
        services = await nursery.start(run_node, cfg, Sink())
        try:
            assert services.crowdsfl is None
            assert await code_of(services, "task_list", []) == "sfl-off"
        finally:
            services.node.request_stop()


def test_build_spec_fills_defaults_and_sizes_the_bundle():
    spec = build_spec({"hidden": [], "rounds": 3}, CSP.public, 9, 2, 1_700_000_000)
    assert spec.layers == (9, 2) and spec.rounds == 3 and spec.select_m == spec.max_workers
    assert spec.join_deadline == 1_700_000_120 and spec.bundle_chunks == 1
    with pytest.raises(CrowdmeshError) as info:
        build_spec({"layers": "x"}, CSP.public, 9, 2, 0)
    assert info.value.code == "sfl-bad-spec"


def test_the_crowdsfl_section_parses_renders_and_refuses_bad_values(tmp_path):
    from crowdmesh.daemon.config import ConfigError, parse_config, render_config

    text = ('data_dir = "d"\nroles = ["worker"]\n[crowdsfl]\ndataset = "rows.csv"\n'
            'shard = "2/3"\nauto_join = true\nbehaviour = "label-flip"\n')
    cfg = parse_config(text, base_dir=tmp_path)
    assert cfg.sfl_dataset == tmp_path / "rows.csv" and cfg.sfl_shard == (2, 3)
    assert cfg.sfl_auto_join and cfg.sfl_behaviour == "label-flip"
    assert parse_config(render_config(cfg), base_dir=tmp_path) == cfg
    for bad in ('shard = "4/3"', 'shard = "0/3"', "auto_join = 1", 'behaviour = "evil"'):
        with pytest.raises(ConfigError, match="crowdsfl"):
            parse_config(f'data_dir = "d"\n[crowdsfl]\n{bad}\n', base_dir=tmp_path)


def test_a_worker_reads_any_numeric_csv_and_keeps_its_shard(tmp_path):
    from crowdmesh.daemon.startup import _shard, builtin_split, load_rows

    path = tmp_path / "rows.csv"
    path.write_text("a,b,label\n1,10,0\n?,20,1\n3,,1\n5,40,0\n")
    x, y = load_rows(path, None)
    assert x.shape == (4, 2) and list(y) == [0, 1, 1, 0]
    assert x.min() >= 0 and x.max() <= 1 and x[0, 0] == 0 and x[3, 0] == 1
    assert len(_shard((x, y), (2, 2))[1]) == 2
    with pytest.raises(CrowdmeshError) as info:
        load_rows(path, "nope")
    assert info.value.code == "bad-dataset"
    held, rest = builtin_split(None)
    thirds = [builtin_split((i, 3))[1] for i in (1, 2, 3)]
    assert len(held[1]) == 142 and sum(len(t[1]) for t in thirds) == len(rest[1]) == 427
