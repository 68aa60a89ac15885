"""The control-socket target: ``ControlServer.handle_line`` against a real node (``run_node``)
started in this process, with every method table the daemon serves.

Two handlers are wrapped, and only to keep the campaign safe and fast; their parameter
checkers still see every fuzzed value:
- ``generate`` mines at most 2 blocks per call (a fuzzed ``n`` up to 10,000 would spend minutes
  per input mining; the count's checker is what the fuzzing is about);
- ``connect`` parses the address with the daemon's own parser and then refuses to dial: a
  fuzzed address may name any host (the workplace allows loopback traffic only), and one
  loopback dial that fails costs about 0.7 s of libp2p retries.
Bounds the server owns stay real: the request timeout (2 s here), batch size, line cap.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.api import Services
from crowdmesh.daemon.config import NodeConfig
from crowdmesh.daemon.control import ControlServer, EventHub, NodeSlot, _Conn
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.daemon.methods import MAX_LINE, Method
from crowdmesh.daemon.methods.all import DEFAULT_METHODS
from crowdmesh.daemon.node import run_node
from crowdmesh.errors import UsageError
from tests.fuzz.targets import _CONTROL_SEEDS, Target, _control_mutate
from tests.fuzz.world import KEYS, World

__all__ = ["control_target"]


class _Sink:
    def publish_nowait(self, topic: str, event: Any) -> None:
        pass


class _NullStream(trio.abc.Stream):
    async def send_all(self, data: Any) -> None:
        pass

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return b""

    async def aclose(self) -> None:
        pass


def _no_dial(method: Method) -> Method:
    from crowdmesh.p2p.host import parse_peer_addr

    def handler(services: Services, args: list[Any]) -> Any:
        parse_peer_addr(args[0])  # the daemon's own parser, on every fuzzed address
        raise UsageError("fuzz-no-dial", "parsed; the fuzz campaign does not dial")

    return Method(method.params, handler, method.needs_ready, method.timeout_factor, method.doc)


def _capped_generate(method: Method) -> Method:
    def handler(services: Services, args: list[Any]) -> Any:
        return method.handler(services, [min(args[0], 2)])

    return Method(method.params, handler, method.needs_ready, method.timeout_factor, method.doc)


def _methods() -> dict[str, Method]:
    table = dict(DEFAULT_METHODS)
    table["connect"] = _no_dial(table["connect"])
    table["generate"] = _capped_generate(table["generate"])
    return table


def _outcome(reply: Any) -> str:
    if reply is None:
        return "no-reply"
    if isinstance(reply, list):  # the first failure stands for the batch (no combinations)
        inner = [_outcome(r) for r in reply]
        return "batch:" + next((o for o in inner if o != "ok"), "ok")
    err = reply.get("error")
    if err is None:
        return "ok"
    data = err.get("data")
    return f"{err['code']}:{data['code']}" if isinstance(data, dict) else str(err["code"])


@asynccontextmanager
async def control_target(world: World) -> AsyncIterator[Target]:
    """Start a node on the world's genesis and yield the control target; stop it after."""
    tmp = Path(tempfile.mkdtemp(prefix="cmfz", dir="/tmp"))
    try:
        (tmp / "genesis.json").write_text(world.genesis.to_json())
        Keystore.in_data_dir(tmp / "d").save("node", KEYS[0], None, DeterministicRng(1))
        cfg = NodeConfig(data_dir=tmp / "d", genesis_path=tmp / "genesis.json",
                         control_socket=tmp / "c.sock", listen="/ip4/127.0.0.1/tcp/0",
                         roles=frozenset({"miner", "spatial-worker", "spatial-requester"}),
                         account_key="node", location=(35_227_100, -80_843_100))
        async with trio.open_nursery() as nursery:
            services: Services = await nursery.start(run_node, cfg, _Sink())
            hub = EventHub()
            hub.bind()
            server = ControlServer(NodeSlot(services), hub, methods=_methods(),
                                   request_timeout_s=2.0)
            conn = _Conn(server, _NullStream(), nursery)

            async def run(data: bytes) -> str:
                outcomes = []
                for line in data[:MAX_LINE].split(b"\n")[:4]:
                    if not line.strip():
                        continue
                    reply = await server.handle_line(conn, line)
                    json.dumps(reply, separators=(",", ":"))  # what conn.send does with it
                    outcomes.append(_outcome(reply))
                conn.after_reply.clear()  # never run ``stop``
                conn.close_subs()
                if b"set_mining" in data:
                    services.mining.set_mining("off")
                return ";".join(outcomes) or "blank"

            try:
                yield Target(list(_CONTROL_SEEDS), _control_mutate, run, ())
            finally:
                services.node.request_stop()
                nursery.cancel_scope.deadline = trio.current_time() + 10
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
