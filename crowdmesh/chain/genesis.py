"""Genesis parameters: the consensus constants every node of one network shares.

Invariants:
- A ``Genesis`` is immutable and fully validated at construction; ``from_json(to_json(g)) == g``.
- JSON form: an object with exactly the field names below; ``target`` is a ``0x`` hex string,
  ``alloc`` maps hex account ids (64 hex digits) to integer balances. Unknown or missing fields
  raise ``DecodeError("bad-genesis")``.
- The genesis block (height 0, no transactions, zero miner) is not mined; its state is
  ``alloc``. Its ``parent`` field holds :meth:`Genesis.params_hash`, a commitment to every
  parameter, so the genesis hash identifies the network *and* its rules: two nodes that
  disagree on any parameter disagree on block 0.
- Every transaction pays: ``min_gas_price >= 1``, so a fee is at least the 21000 base gas and a
  never-funded account cannot write state for free.
- Issuance is bounded so no balance can leave u64: ``alloc_total + (block_reward +
  spatial.issuance_per_block) × ISSUANCE_BLOCKS <= U64_MAX`` (rewards never grow, so the supply
  stays in u64 for at least ``ISSUANCE_BLOCKS`` blocks, ≈ 1360 years at 10 s; halving only
  lowers it; the spatial contract mints at most ``issuance_per_block`` per block).
- ``spatial`` holds the spatial-crowdsourcing constants (:class:`SpatialParams`); a genesis file
  without the ``spatial`` object (written before it existed) gets the defaults. The parameters
  hash always commits to them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

from crowdmesh.chain.block import EMPTY_ROOT, MAX_BLOCK_BYTES, MAX_TARGET, BlockHeader
from crowdmesh.chain.codec import U64_MAX, Address, BlockHash, pack
from crowdmesh.chain.spatial_params import DEFAULT_SPATIAL, SpatialParams
from crowdmesh.chain.state import Account, account_key, muhash_of, state_root
from crowdmesh.errors import DecodeError

__all__ = ["ISSUANCE_BLOCKS", "Genesis"]

ISSUANCE_BLOCKS = 1 << 32  # blocks whose full reward must fit in u64 on top of the alloc

_INT_FIELDS = (
    "timestamp", "block_interval", "retarget_interval", "miner_cap_m", "miner_cap_w",
    "block_reward", "halving_interval", "min_gas_price", "fee_burn_bps", "max_block_bytes",
)


@dataclass(frozen=True, slots=True)
class Genesis:
    """Network parameters and initial balances.

    Attributes:
        chain_id: network name, also in topic names and every transaction.
        timestamp: genesis block time (unix seconds).
        target: initial PoW target, also the easiest target retargeting allows.
        block_interval: desired seconds between blocks.
        retarget_interval: retarget every this many blocks (0 = never, for dev chains; 1 is
            refused: an interval of one block measures no time).
        miner_cap_m, miner_cap_w: a miner may mine at most M of the last W blocks (W = 0: off).
        block_reward: reward of block 1; halves every ``halving_interval`` blocks (0 = never).
        min_gas_price: a transaction's fee must be ≥ intrinsic gas × this (≥ 1).
        fee_burn_bps: basis points of every fee that are burned; the miner gets the rest.
        max_block_bytes: consensus cap on an encoded block.
        alloc: initial balances, sorted by account id.
        spatial: spatial-crowdsourcing constants (report types, R, K, windows, rewards…).
    """

    chain_id: str
    timestamp: int
    target: int
    block_interval: int = 10
    retarget_interval: int = 10
    miner_cap_m: int = 0
    miner_cap_w: int = 0
    block_reward: int = 50_000_000
    halving_interval: int = 0
    min_gas_price: int = 1
    fee_burn_bps: int = 0
    max_block_bytes: int = 4 * 1024 * 1024
    alloc: tuple[tuple[Address, int], ...] = ()
    spatial: SpatialParams = DEFAULT_SPATIAL

    def __post_init__(self) -> None:
        problems = [n for n in _INT_FIELDS if not 0 <= getattr(self, n) <= U64_MAX]
        if not 0 < len(self.chain_id) <= 32 or not self.chain_id.isascii():
            problems.append("chain_id")
        if not 0 < self.target <= MAX_TARGET:
            problems.append("target")
        if self.fee_burn_bps > 10_000 or self.max_block_bytes > MAX_BLOCK_BYTES:
            problems.append("fee_burn_bps/max_block_bytes")
        if self.miner_cap_w and not 0 < self.miner_cap_m <= self.miner_cap_w:
            problems.append("miner_cap")
        if self.block_interval <= 0:
            problems.append("block_interval")
        if self.retarget_interval == 1:
            problems.append("retarget_interval (0 or >= 2)")
        if self.min_gas_price < 1:
            problems.append("min_gas_price (>= 1)")
        if list(self.alloc) != sorted(dict(self.alloc).items()) or any(
                len(a) != 32 or not 0 < b <= U64_MAX for a, b in self.alloc):
            problems.append("alloc (sorted, unique, 32-byte ids, positive balances)")
        minted = (self.block_reward + self.spatial.issuance_per_block) * ISSUANCE_BLOCKS
        if sum(b for _, b in self.alloc) + minted > U64_MAX:
            problems.append("alloc total + (block_reward + spatial issuance) × 2**32 exceeds u64")
        if problems:
            raise DecodeError("bad-genesis", ", ".join(problems))

    def reward(self, height: int) -> int:
        """Block reward at ``height`` (0 for the genesis block)."""
        if height == 0:
            return 0
        if self.halving_interval == 0:
            return self.block_reward
        return self.block_reward >> ((height - 1) // self.halving_interval)

    def alloc_total(self) -> int:
        """Sum of the initial balances."""
        return sum(b for _, b in self.alloc)

    def state_items(self) -> list[tuple[bytes, bytes]]:
        """The genesis state as sorted (state key, value) pairs."""
        out = []
        for addr, bal in self.alloc:
            value = Account(balance=bal).encode()
            assert value is not None  # balances are positive
            out.append((account_key(addr), value))
        return out

    def params_hash(self) -> BlockHash:
        """SHA-256 over the canonical encoding of every parameter."""
        fields_ = [getattr(self, n) for n in _INT_FIELDS]
        data = pack([self.chain_id, self.target.to_bytes(32, "big"), fields_,
                     [[a, b] for a, b in self.alloc], self.spatial.encode()])
        return BlockHash(hashlib.sha256(b"crowdmesh/genesis/1\x00" + data).digest())

    def header(self) -> BlockHeader:
        """The genesis block header."""
        return BlockHeader(
            chain_id=self.chain_id, height=0, parent=self.params_hash(), timestamp=self.timestamp,
            target=self.target, tx_root=EMPTY_ROOT,
            state_root=state_root(muhash_of(self.state_items())),
            miner=Address(bytes(32)), nonce=0,
        )

    def to_json(self) -> str:
        """Serialise as JSON text (sorted keys, stable)."""
        obj: dict[str, Any] = {n: getattr(self, n) for n in _INT_FIELDS}
        obj["chain_id"] = self.chain_id
        obj["target"] = f"0x{self.target:064x}"
        obj["alloc"] = {a.hex(): b for a, b in self.alloc}
        obj["spatial"] = self.spatial.to_obj()
        return json.dumps(obj, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Genesis:
        """Parse JSON text strictly.

        Raises:
            DecodeError: ``bad-genesis`` for malformed JSON, unknown/missing fields, bad values.
        """
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise DecodeError("bad-genesis", str(exc)) from exc
        names = {f.name for f in fields(cls)}
        if isinstance(obj, dict) and "spatial" not in obj:
            obj["spatial"] = SpatialParams().to_obj()  # a file from before spatial parameters
        if not isinstance(obj, dict) or set(obj) != names:
            raise DecodeError("bad-genesis", "want exactly the fields " + ", ".join(sorted(names)))
        return cls(**_parse_fields(obj))


def _parse_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """Type-check and convert the JSON values of a genesis object."""
    out: dict[str, Any] = {}
    for name in _INT_FIELDS:
        if type(obj[name]) is not int:
            raise DecodeError("bad-genesis", f"{name} must be an integer")
        out[name] = obj[name]
    target, chain_id, alloc = obj["target"], obj["chain_id"], obj["alloc"]
    if not isinstance(chain_id, str) or not isinstance(alloc, dict):
        raise DecodeError("bad-genesis", "chain_id is text, alloc an object")
    if not isinstance(target, str) or not target.startswith("0x"):
        raise DecodeError("bad-genesis", "target is a 0x hex string")
    try:
        out["target"] = int(target, 16)
        pairs = sorted((bytes.fromhex(k), v) for k, v in alloc.items())
    except ValueError as exc:
        raise DecodeError("bad-genesis", str(exc)) from exc
    if any(type(v) is not int for _, v in pairs):
        raise DecodeError("bad-genesis", "balances are integers")
    out["chain_id"] = chain_id
    out["alloc"] = tuple((Address(a), v) for a, v in pairs)
    out["spatial"] = SpatialParams.from_obj(obj["spatial"])
    return out
