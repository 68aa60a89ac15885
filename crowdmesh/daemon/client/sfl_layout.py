"""Laying out a CrowdSFL testnet after ``testnet init``: funds in the genesis and each node's
roles, mining and dataset shard in its config. Used by ``make demo-crowdsfl``, the CrowdSFL
benchmark and the multi-daemon tests, so all three run the same layout.

Rule: only the nodes told to mine keep the testnet's mining mode; every other node's mode is
``off`` (one on-demand miner: no equal-work forks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from crowdmesh.chain.codec import Address
from crowdmesh.chain.genesis import Genesis
from crowdmesh.daemon.config import load_config, render_config

__all__ = ["fund", "lay_out_node"]


def fund(genesis_path: Path, accounts: Iterable[str], amount: int) -> None:
    """Give every account (hex) ``amount`` more in the genesis allocation."""
    genesis = Genesis.from_json(genesis_path.read_text())
    alloc = tuple(sorted((*genesis.alloc,
                          *((Address(bytes.fromhex(a)), amount) for a in accounts))))
    genesis_path.write_text(dataclasses.replace(genesis, alloc=alloc).to_json())


def lay_out_node(config: Path, roles: Iterable[str], mines: bool,
                 shard: tuple[int, int] | None = None, **fields: Any) -> None:
    """Rewrite one node's config: its roles (plus ``miner`` if it ``mines``), its mining mode,
    and for a worker (``shard`` = (i, n)) its shard of the data and ``auto_join``; ``fields``
    set further config fields (``sfl_dataset``, ``sfl_holdout``…)."""
    cfg = load_config(config)
    worker: dict[str, Any] = {} if shard is None else {"sfl_shard": shard,
                                                       "sfl_auto_join": True}
    cfg = dataclasses.replace(
        cfg, roles=frozenset([*roles, *(["miner"] if mines else [])]),
        mining_mode=cfg.mining_mode if mines else "off", **worker, **fields)
    config.write_text(render_config(cfg))
