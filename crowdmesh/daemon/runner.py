"""``crowdmesh daemon``: one trio nursery holding the control server, signal watcher and node.

Rule 1 (order): logging → data dir check → signal watcher → control socket (answers ``-28`` at
once) → node. The data dir comes before the socket, which usually lives in it: a data dir that
is a file or not writable is reported as such, not as a socket that cannot be bound.
``READY=1`` goes to systemd exactly once, right after the last ``nursery.start`` has returned:
``run_node`` calls ``task_status.started`` only once the node serves, so there is nothing to
poll.
Rule 2 (stop): SIGTERM/SIGINT or the ``stop`` RPC ask the node to stop; when ``run_node``
returns the nursery is cancelled, the socket removed, and the process exits 0. If the node has
not stopped after :data:`STOP_GRACE_S` the whole nursery is cancelled (still exit 0).
Rule 3 (reload): SIGHUP re-reads the config file and applies the fields in
``config.RELOADABLE`` (log level, mining mode, bootstrap peers); other changes are logged as
needing a restart.
A bad file, or a change the node refuses (e.g. mining without the miner role, which needs a
restart), is logged as ``reload-failed`` with its code and the old config is kept; ``READY=1``
follows either way: a running daemon never dies from a reload.
Rule 4: anything but a ``CrowdmeshError`` is a bug and propagates out of the nursery.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from crowdmesh.daemon.api import Services
from crowdmesh.daemon.config import RELOADABLE, NodeConfig, load_config
from crowdmesh.daemon.control import ControlServer, EventHub, NodeSlot
from crowdmesh.daemon.logs import adopt_library_loggers, log_event, set_level, setup_logging
from crowdmesh.daemon.notify import sd_notify
from crowdmesh.daemon.startup import prepare_data_dir
from crowdmesh.errors import CrowdmeshError

if TYPE_CHECKING:
    from trio_typing import TaskStatus

__all__ = ["STOP_GRACE_S", "run_daemon"]

STOP_GRACE_S: Final = 4.0
log = logging.getLogger("crowdmesh.daemon")


class _Daemon:
    """The daemon's mutable wiring; lives for one ``run_daemon`` call."""

    def __init__(self, cfg: NodeConfig, config_path: Path | None, hub: EventHub) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.hub = hub
        self.slot = NodeSlot()
        self.nursery: trio.Nursery | None = None
        self.stopping = False

    def request_stop(self, reason: str) -> None:
        """Graceful stop: ask the node, and cancel everything after the grace period."""
        assert self.nursery is not None
        if self.stopping:
            return
        self.stopping = True
        log_event(log, "stopping", reason=reason)
        sd_notify("STOPPING=1")
        if self.slot.services is None:
            self.nursery.cancel_scope.cancel()
            return
        self.slot.services.node.request_stop()
        self.nursery.cancel_scope.deadline = min(
            self.nursery.cancel_scope.deadline, trio.current_time() + STOP_GRACE_S)

    async def watch_signals(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
            task_status.started()
            async for signum in sigs:
                if signum == signal.SIGHUP:
                    self.reload()
                else:
                    self.request_stop(signal.Signals(signum).name)

    def reload(self) -> None:
        """Apply the reloadable fields of the config file (SIGHUP)."""
        if self.config_path is None:
            return
        sd_notify("RELOADING=1")
        try:
            new = load_config(self.config_path)
            self.apply(new)
        except CrowdmeshError as exc:
            log_event(log, "reload-failed", logging.ERROR, code=exc.code, detail=exc.detail)
        else:
            changed = [f.name for f in fields(NodeConfig)
                       if f.compare and getattr(new, f.name) != getattr(self.cfg, f.name)]
            pending = sorted(set(changed) - RELOADABLE)
            self.cfg = new
            log_event(log, "config-reloaded", changed=",".join(changed) or "-",
                      restart_needed=",".join(pending) or "-")
        sd_notify("READY=1")

    def apply(self, new: NodeConfig) -> None:
        """Apply the reloadable fields of ``new`` that differ from the running config.

        Raises:
            CrowdmeshError: the node refused a change (e.g. ``not-a-miner``).
        """
        services = self.slot.services
        if new.mining_mode != self.cfg.mining_mode and services is not None:
            services.mining.set_mining(new.mining_mode)
        if new.bootstrap != self.cfg.bootstrap and services is not None:
            services.peers.set_bootstrap(new.bootstrap)
        if new.log_level != self.cfg.log_level:
            set_level(new.log_level)  # last: it cannot fail, so a refused change keeps the level

    async def run_node_task(self, task_status: TaskStatus[Services]) -> None:
        from crowdmesh.daemon.node import run_node

        adopt_library_loggers()  # importing the node imported py-libp2p, which hides its logs
        await run_node(self.cfg, self.hub, task_status=task_status)
        log_event(log, "node-stopped")
        assert self.nursery is not None
        self.nursery.cancel_scope.cancel()  # the node is done: stop serving the socket too

    def notify_ready(self) -> None:
        """Tell systemd the daemon serves (the node has started, so it is ready)."""
        log_event(log, "ready", socket=str(self.cfg.control_socket))
        sd_notify(f"READY=1\nSTATUS=serving on {self.cfg.control_socket}\nMAINPID={os.getpid()}")


async def run_daemon(cfg: NodeConfig, config_path: Path | None = None) -> None:
    """Run the daemon until it is stopped (SIGTERM, SIGINT, ``stop`` RPC or the node exits).

    Raises:
        CrowdmeshError: startup failed for an operator-fixable reason (socket in use, bad data
            dir, bad genesis…); the CLI prints it and exits 78 (EX_CONFIG), which the systemd
            units do not restart.
    """
    hub = EventHub()
    hub.bind()
    setup_logging(cfg.log_level, hub)
    log_event(log, "starting", config=cfg.source, data_dir=str(cfg.data_dir),
              listen=cfg.listen, roles=",".join(sorted(cfg.roles)) or "-",
              mining=cfg.mining_mode)
    prepare_data_dir(cfg.data_dir)  # Rule 1
    daemon = _Daemon(cfg, config_path, hub)
    server = ControlServer(
        daemon.slot, hub, max_clients=cfg.control_max_clients,
        request_timeout_s=cfg.control_request_timeout_s,
        on_stop=lambda: daemon.request_stop("rpc"),
    )
    async with trio.open_nursery() as nursery:
        daemon.nursery = nursery
        await nursery.start(daemon.watch_signals)
        await nursery.start(server.serve, cfg.control_socket)
        services: Services = await nursery.start(daemon.run_node_task)
        daemon.slot.services = services
        daemon.notify_ready()
    log_event(log, "stopped")
