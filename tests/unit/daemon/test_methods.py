"""Method tables: composition, each feature table confined to its own service, and a table that
is not built in served by an unmodified control server (over an in-memory stream)."""

from __future__ import annotations

import json
import re
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from crowdmesh.daemon.api import Services
from crowdmesh.daemon.control import ControlServer, EventHub, NodeSlot
from crowdmesh.daemon.methods import (
    Method,
    RpcError,
    account,
    bind_params,
    call_handler,
    chain,
    compose,
    crowdsfl,
    mining,
    node,
    param_int,
    param_str,
    peers,
    spatial,
)
from crowdmesh.daemon.methods.all import DEFAULT_METHODS
from crowdmesh.errors import NotFound, ValidationError
from tests.unit.daemon.conftest import FakeNode as _BaseFake


class FakeNode(_BaseFake):
    """The shared fake plus the CrowdSFL service."""

    def elgamal_key(self, profile="default"):
        return {"profile": profile}

    def elgamal_register(self, profile="default"):
        return {"profile": profile, "call": None}

    def task_create(self, params, request_id):
        return {"request_id": request_id, "task": None, "spec": params}

    def task_join(self, task_hex):
        return {"task": task_hex, "requested": True}

    async def task_timeout(self, task_hex):
        return {"task": task_hex, "beacon": None, "call": None, "phase": "aborted"}

    def task_list(self):
        return []

    def task_show(self, task_hex):
        return {"task": task_hex}

    def task_model(self, task_hex, round_):
        return {"task": task_hex, "round": round_, "model": ""}

    async def set_network_active(self, active):
        return {"network_active": active}

FEATURE_TABLES = {"node": node.METHODS, "chain": chain.METHODS, "mining": mining.METHODS,
                  "peers": peers.METHODS, "account": account.METHODS,
                  "spatial": spatial.METHODS, "crowdsfl": crowdsfl.METHODS}
SAMPLE_PARAMS = {
    "status": [], "peers": [], "connect": ["/ip4/127.0.0.1/tcp/1/p2p/12D3KooWfake"],
    "disconnect": ["12D3KooWfake"], "head": [], "block": [3], "mempool": [],
    "submit_tx": ["aa11"], "tx": ["ab"], "balance": ["ee" * 32], "set_mining": ["continuous"],
    "generate": [2], "account": [], "account_call": ["transfer", "aa", "c1"],
    "account_pay": ["ee" * 32, 5, "c2"], "location_set": [35_227_100, -80_843_100],
    "report_submit": ["flood", 35_227_100, -80_843_100, "r1"],
    "report_vote": ["ab" * 32, "confirm"],
    "report_pending": [], "report_list": [], "report_show": ["ab" * 32], "rewards": ["ee" * 32],
    "elgamal_key": [], "elgamal_register": ["default"],
    "task_create": [{"csp": "ee" * 32, "rounds": 2}, "t1"], "task_join": ["ab" * 32],
    "task_timeout": ["ab" * 32], "task_list": [], "task_show": ["ab" * 32],
    "task_model": ["ab" * 32, 1],
    "setnetworkactive": [False],
}
SERVER_OWN = {"ready", "stop", "methods", "subscribe", "unsubscribe"}


class Forbidden:
    """A service that fails the test on any attribute access."""

    def __init__(self, field):
        object.__setattr__(self, "_field", field)

    def __getattribute__(self, attr):
        field = object.__getattribute__(self, "_field")
        raise AssertionError(f"a handler touched services.{field}.{attr}")


def only(field, fake):
    """Services where ``field`` is ``fake`` and every other service is Forbidden."""
    return Services(**{f: fake if f == field else Forbidden(f) for f in FEATURE_TABLES})


def noop(services, args):
    return None


def test_compose_merges_in_order_and_refuses_a_duplicate_name():
    a = {"x": Method((), noop), "y": Method((), noop)}
    b = {"z": Method((), noop)}
    assert list(compose(a, b)) == ["x", "y", "z"]
    with pytest.raises(ValueError, match=r"duplicate-rpc-method.*'y'"):
        compose(a, b, {"y": Method((), noop)})
    with pytest.raises(ValueError, match=r"duplicate-rpc-method.*'head'"):
        compose(DEFAULT_METHODS, {"head": Method((), noop)})


def test_default_methods_are_the_feature_tables_and_every_name_is_still_served():
    assert compose(*FEATURE_TABLES.values()) == DEFAULT_METHODS
    assert set(DEFAULT_METHODS) == set(SAMPLE_PARAMS)
    assert not SERVER_OWN & set(DEFAULT_METHODS)


@pytest.mark.parametrize(
    ("field", "name"),
    [(field, name) for field, table in FEATURE_TABLES.items() for name in table],
)
async def test_each_feature_table_uses_only_its_own_service(field, name):
    fake = FakeNode()
    method = FEATURE_TABLES[field][name]
    args = bind_params(method.params, SAMPLE_PARAMS[name])
    try:
        result = await call_handler(method.handler, only(field, fake), args)
    except NotFound:
        return  # the fake's own answer (tx-not-found): reached through the right service
    json.dumps(result)  # JSON-able, as the server sends it


async def test_handlers_reach_the_fake_with_checked_arguments():
    fake = FakeNode()

    def call(table, name, params, field):
        method = table[name]
        return call_handler(method.handler, only(field, fake), bind_params(method.params, params))

    assert await call(chain.METHODS, "block", ["AB" * 32], "chain") == fake.block(3)
    assert await call(mining.METHODS, "set_mining", {"mode": "on-demand"}, "mining") == {
        "mode": "on-demand"}
    assert fake.mode == "on-demand"
    assert await call(mining.METHODS, "generate", [2], "mining") == ["cd" * 32] * 2
    with pytest.raises(ValidationError):
        await call(chain.METHODS, "submit_tx", ["00ff"], "chain")


@pytest.mark.parametrize(
    ("params", "message"),
    [(None, "expected params ['n', 'label']"), ([1], "expected params"),
     ({"n": 1, "label": "a", "x": 0}, "unknown params ['x']"), ("n", "array or an object"),
     ([0, "a"], "n must be an integer in 1..5"), ([1, ""], "label must be a non-empty string")],
)
def test_bind_params_rejects_with_invalid_params(params, message):
    spec = (("n", param_int(1, 5)), ("label", param_str))
    with pytest.raises(RpcError, match=re.escape(message)) as info:
        bind_params(spec, params)
    assert info.value.code == -32602
    assert bind_params(spec, {"label": "a", "n": 5}) == [5, "a"]


# ---- a later feature plugs in its own table --------------------------------------------------


async def _echo(services, args):
    head = services.chain.head()
    await trio.sleep(0)
    return {"echo": args[0], "height": head["height"]}


def _missing(services, args):
    raise NotFound("cell-not-found", args[0])


SPATIAL = {
    "spatial_echo": Method((("text", param_str),), _echo, doc="echo at the tip"),
    "spatial_cell": Method((("cell", param_str),), _missing, doc="a sync handler"),
    "spatial_early": Method((), lambda s, a: "early", needs_ready=False, doc="before ready"),
}


@asynccontextmanager
async def in_memory(server):
    """A client stream to ``server.handle_stream`` and a ``call(method, params)`` helper."""
    client, server_end = trio.testing.memory_stream_pair()
    buf = bytearray()

    async def call(method, params=None):
        req = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        await client.send_all(json.dumps(req).encode() + b"\n")
        with trio.fail_after(5):
            while b"\n" not in buf:
                buf.extend(await client.receive_some())
        line, _, rest = bytes(buf).partition(b"\n")
        buf[:] = rest
        return json.loads(line)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_stream, server_end)
        yield call
        nursery.cancel_scope.cancel()


async def test_the_server_serves_an_extra_table_without_changes():
    fake = FakeNode()
    slot = NodeSlot(fake.services)
    server = ControlServer(slot, EventHub(), methods=compose(DEFAULT_METHODS, SPATIAL))
    async with in_memory(server) as call:
        assert (await call("spatial_echo", ["hi"]))["result"] == {"echo": "hi", "height": 3}
        assert (await call("spatial_echo", {"text": "named"}))["result"]["echo"] == "named"
        assert (await call("spatial_echo", [5]))["error"]["code"] == -32602
        err = (await call("spatial_cell", ["c1"]))["error"]
        assert (err["code"], err["data"]["code"]) == (-32004, "cell-not-found")
        listed = (await call("methods"))["result"]
        assert listed["spatial_echo"] == {"params": ["text"], "doc": "echo at the tip"}
        assert set(listed) == SERVER_OWN | set(DEFAULT_METHODS) | set(SPATIAL)
        assert (await call("head"))["result"]["height"] == 3  # the defaults still serve
        fake.ready = False
        assert (await call("spatial_echo", ["hi"]))["error"]["code"] == -28
        assert (await call("spatial_early"))["result"] == "early"  # needs_ready=False
        slot.services = None
        assert (await call("spatial_early"))["error"]["code"] == -28  # no services yet


async def test_only_the_given_table_is_served():
    server = ControlServer(NodeSlot(FakeNode().services), EventHub(), methods=SPATIAL)
    async with in_memory(server) as call:
        assert (await call("head"))["error"]["code"] == -32601
        assert (await call("spatial_echo", ["x"]))["result"]["echo"] == "x"
        assert (await call("ready"))["result"] == {"ready": True}


def test_a_table_may_not_redefine_the_servers_own_methods():
    with pytest.raises(ValueError, match=r"duplicate-rpc-method.*stop"):
        ControlServer(NodeSlot(), EventHub(), methods={"stop": Method((), noop)})


def test_optional_params_may_be_left_out_or_null_and_others_may_not():
    spec = spatial.METHODS["report_list"].params
    assert bind_params(spec, []) == [None, None, None, None]
    assert bind_params(spec, {"status": "confirmed"}) == [None, None, None, "confirmed"]
    assert bind_params(spec, [1, 2, None]) == [1, 2, None, None]
    with pytest.raises(RpcError):
        bind_params(spec, {"status": "maybe"})
    with pytest.raises(RpcError):
        bind_params(spatial.METHODS["report_show"].params, [])  # required stays required
