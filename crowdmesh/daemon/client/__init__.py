"""crowdmesh.daemon.client: everything that runs outside the daemon and talks to it.

The ``crowdmesh`` command's client side (``cli`` and its ``cli_<group>`` command groups), the
control-socket client (``rpc``), key and transfer helpers (``wallet``), offline database
maintenance (``offline``), local testnets (``testnet`` layout, ``launcher`` for detached
daemons, ``harness`` for daemons owned by a trio nursery) and the demos.

Rule 1 (one direction): this package imports nothing of the server side of
``crowdmesh.daemon``; only the shared modules ``api``, ``config``, ``keystore``, ``rng``,
``views``, ``jobs`` and ``logs``, and anything outside ``crowdmesh.daemon``.
The one module that joins client and server is ``crowdmesh.daemon.main``.
Rule 2 (no argparse in libraries): ``argparse`` is imported only by ``cli`` and the ``cli_*``
modules; every other function takes typed parameters.
``tests/unit/test_imports.py`` checks both rules and that no import cycle exists.
"""

from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.client.rpc import (
    ControlClient,
    DaemonUnavailable,
    Endpoint,
    RpcCallError,
    resolve_socket,
)
from crowdmesh.daemon.client.testnet import NodeInfo, TestnetSpec, init_testnet, load_layout
from crowdmesh.daemon.client.wallet import TestnetWallet, TransferRequest, send_transfer

__all__ = [
    "ControlClient",
    "DaemonUnavailable",
    "Endpoint",
    "NodeHandle",
    "NodeInfo",
    "RpcCallError",
    "Testnet",
    "TestnetSpec",
    "TestnetWallet",
    "TransferRequest",
    "init_testnet",
    "load_layout",
    "resolve_socket",
    "send_transfer",
]
