"""Fixtures for the daemon unit tests: a short socket directory and a test double of the node's
services (``crowdmesh.daemon.api``)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import trio

from crowdmesh.daemon.api import Services
from crowdmesh.errors import NotFound, ValidationError


@pytest.fixture
def sock_dir():
    # Unix socket paths are capped at 107 bytes; pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="cmctl", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class FakeNode:
    """In-memory NodeService, ChainService, MiningService and PeerService at once, for the RPC
    layer's tests (the functional tests use real daemons); ``services`` offers it as all four."""

    def __init__(self, ready=True):
        self.ready = ready
        self.stopped = False
        self.mode = "off"
        self.submitted = []
        self.generate_delay = 0.0
        self.bootstrap = ()

    @property
    def services(self):
        return Services(node=self, chain=self, mining=self, peers=self, account=self,
                        spatial=self)

    def is_ready(self):
        return self.ready

    def status(self):
        return {"height": 3, "peers": 0, "mining": self.mode}

    def peers(self):
        return [{"peer_id": "12D3KooWfake", "addr": "/ip4/127.0.0.1/tcp/1"}]

    def head(self):
        return {"height": 3, "hash": "ab" * 32}

    def block(self, ref):
        if ref in (3, "ab" * 32):
            return {"height": 3, "hash": "ab" * 32, "txs": []}
        raise NotFound("block-not-found", str(ref))

    def mempool(self):
        return {"size": len(self.submitted), "txids": list(self.submitted)}

    async def submit_tx(self, raw_hex):
        if raw_hex.startswith("00"):
            raise ValidationError("bad-tx-sig", "signature does not verify")
        self.submitted.append(raw_hex[:8])
        return {"txid": raw_hex[:8]}

    def tx(self, txid_hex):
        raise NotFound("tx-not-found", txid_hex)

    def balance(self, account_hex):
        return {"account": account_hex, "balance": 100, "nonce": 0}

    def set_mining(self, mode):
        self.mode = mode
        return {"mode": mode}

    async def generate(self, n_blocks):
        await trio.sleep(self.generate_delay)
        return ["cd" * 32] * n_blocks

    async def connect_peer(self, addr):
        return {"addr": addr, "connected": False}

    async def disconnect_peer(self, peer_id):
        return {"peer": peer_id, "disconnected": True}

    def set_bootstrap(self, addrs):
        self.bootstrap = addrs
        return {"bootstrap": list(addrs)}

    async def set_network_active(self, active):
        return {"network_active": active}

    def request_stop(self):
        self.stopped = True

    def account(self):
        return {"account": None, "calls": []}

    def call(self, kind, payload_hex, call_id):
        return {"call_id": call_id, "kind": kind, "txid": "ab" * 32}

    def pay(self, to_hex, amount, call_id):
        return self.call("transfer", to_hex, call_id)

    async def location_set(self, lat_e6, lon_e6):
        return {"lat_e6": lat_e6, "lon_e6": lon_e6}

    def report_submit(self, kind, lat_e6, lon_e6, request_id):
        return {"request_id": request_id, "report_id": "ab" * 32}

    def report_vote(self, report_id_hex, vote):
        return {"report_id": report_id_hex, "vote": vote}

    def report_pending(self):
        return []

    def report_list(self, near, radius_m, status):
        return [{"near": near, "radius_m": radius_m, "status": status}]

    def report_show(self, report_id_hex):
        return {"report_id": report_id_hex}

    def rewards(self, account_hex):
        return {"account": account_hex}


@pytest.fixture
def fake_node():
    return FakeNode()
