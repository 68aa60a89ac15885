"""A deterministic, structure-aware mutator: byte edits, msgpack tree edits, JSON tree edits and
TOML line edits, all driven by one ``random.Random`` so an input is a pure function of
(surface, seed, index) and any finding replays exactly.

Why structure-aware: every surface starts with a strict decoder, so random bytes die at the
first check. Mutating the decoded tree (and re-encoding it canonically) produces inputs that
decode and then fail a *later* rule, which is where the bugs are.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

__all__ = [
    "Mutator",
    "json_values",
    "msgpack_values",
]

# msgpack type markers and edge encodings worth splicing in at the byte level.
_MSGPACK_TOKENS = [
    b"\xc0", b"\xc2", b"\xc3",  # nil, false, true
    b"\xca\x7f\xc0\x00\x00", b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # float32/64 NaN
    b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00",
    b"\xcc\x01", b"\xcd\x00\x01", b"\xce\x00\x00\x00\x01",  # non-minimal ints
    b"\xdc\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xde\x00\x01", b"\x81",  # huge arrays, maps
    b"\xc4\x20", b"\xc5\xff\xff", b"\xc6\xff\xff\xff\xff",  # bin 8/16/32 headers
    b"\xd9\x20", b"\xdb\xff\xff\xff\xff", b"\xa1\xff",  # str headers, bad utf-8
    b"\xc7\x01\x01", b"\xd4\x00\x00", b"\xd6\xff\x00\x00\x00\x00",  # ext, timestamp ext
    b"\x90", b"\x91", b"\x97", b"\x99", b"\x92",
]
_INTERESTING_BYTES = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0, 0xC1, 0xC4, 0xD9, 0xDC, 0xDD, 0x90]

_INTS = [0, 1, -1, 2, 255, 256, 65535, 2**31 - 1, 2**32, 2**48, 2**48 + 1, 2**53 + 1,
         2**63 - 1, 2**64 - 1, -(2**63), -(2**31), 10**6, 90_000_001, -180_000_001]


def msgpack_values(rng: random.Random) -> Any:
    """One value msgpack can carry, biased to edges (sizes 31/32/33/64/80, u64 bounds)."""
    pick = rng.randrange(12)
    if pick < 3:
        return rng.choice(_INTS)
    if pick < 6:
        n = rng.choice([0, 1, 8, 16, 31, 32, 33, 48, 63, 64, 65, 80, 128, 257, 384])
        return rng.randbytes(n)
    if pick == 6:
        return rng.choice(["", "x", "a" * 33, "tx", "block", "transfer", "spatial", "report",
                           "commit", "reveal", "status", "²", "é", "flood", "default", "\x00",
                           "-", "A" * 65])
    if pick == 7:
        return rng.choice([None, True, False, 0.5, float("nan"), -0.0, 1e308])
    if pick == 8:
        return []
    if pick == 9:
        return {rng.choice(["a", "b"]): rng.choice(_INTS)}
    if pick == 10:
        return [rng.choice(_INTS) for _ in range(rng.randrange(1, 4))]
    return msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.randrange(4)))


def json_values(rng: random.Random) -> Any:
    """One JSON value, biased to what breaks JSON-RPC and genesis parsers."""
    pick = rng.randrange(10)
    if pick < 3:
        return rng.choice([*_INTS, 10**400, -(10**400), 10**4300, 2**64, 2**256, 2**256 - 1])
    if pick < 5:
        return rng.choice(["", "x", "ab" * 32, "AB" * 32, " ab", "0x", "0x" + "f" * 64,
                           "0x" + "f" * 65, "zz", "\x00", "\u2028", "é", "²", "ff" * 33, "-1",
                           "on-demand", "continuous", "off", "heads", "txs", "logs", "confirm",
                           "/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/1/p2p/abc", "abc",
                           "1" * 5000, "~", "flood"])
    if pick == 5:
        return rng.choice([None, True, False, 0.5, -0.0, 1e308, 1e-320, float("inf"),
                           float("nan")])
    if pick == 6:
        return []
    if pick == 7:
        return {}
    if pick == 8:
        return [rng.choice(_INTS)]
    return {"k": 1}


def _paths(tree: Any, path: tuple[Any, ...] = (), out: list[tuple[Any, ...]] | None = None,
           depth: int = 0) -> list[tuple[Any, ...]]:
    """Every node's path (list indices, dict keys) in ``tree``."""
    out = [] if out is None else out
    out.append(path)
    if depth > 12 or len(out) > 4096:
        return out
    if isinstance(tree, list):
        for i, v in enumerate(tree):
            _paths(v, (*path, i), out, depth + 1)
    elif isinstance(tree, dict):
        for k, v in tree.items():
            _paths(v, (*path, k), out, depth + 1)
    return out


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def _set(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(tree, path[:-1])[path[-1]] = value
    return tree


class Mutator:
    """Mutations drawn from ``rng``; ``corpus`` supplies splice partners."""

    def __init__(self, rng: random.Random, corpus: Sequence[bytes]) -> None:
        self.rng = rng
        self.corpus = corpus

    # -- bytes -------------------------------------------------------------------------------

    def bytes_(self, data: bytes, rounds: int | None = None) -> bytes:
        """1..4 byte-level edits."""
        rng = self.rng
        buf = bytearray(data)
        for _ in range(rounds or rng.randrange(1, 5)):
            op = rng.randrange(9)
            pos = rng.randrange(len(buf) + 1)
            if op == 0 and buf:  # flip a bit
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
            elif op == 1 and buf:
                buf[rng.randrange(len(buf))] = rng.choice(_INTERESTING_BYTES)
            elif op == 2:
                buf[pos:pos] = rng.randbytes(rng.randrange(1, 9))
            elif op == 3 and buf:  # delete a range
                end = min(len(buf), pos + rng.randrange(1, 17))
                del buf[pos:end]
            elif op == 4:  # truncate
                del buf[pos:]
            elif op == 5 and buf:  # duplicate a range
                start = rng.randrange(len(buf))
                buf[pos:pos] = buf[start:start + rng.randrange(1, 33)]
            elif op == 6:
                buf[pos:pos] = rng.choice(_MSGPACK_TOKENS)
            elif op == 7 and self.corpus:  # splice another corpus item
                other = rng.choice(self.corpus)
                cut = rng.randrange(len(other) + 1)
                buf = buf[:pos] + bytearray(other[cut:])
            else:  # overwrite with a token
                tok = rng.choice(_MSGPACK_TOKENS)
                buf[pos:pos + len(tok)] = tok
        return bytes(buf)

    # -- msgpack trees -----------------------------------------------------------------------

    def msgpack_tree(self, tree: Any, depth: int = 0) -> Any:
        """Mutate one node of a decoded msgpack tree (recursing into bytes leaves that are
        themselves msgpack, e.g. a block inside a message, a report inside a tally)."""
        rng = self.rng
        paths = _paths(tree)
        path = rng.choice(paths)
        node = _get(tree, path)
        op = rng.randrange(10)
        if isinstance(node, bytes) and depth < 3 and op < 4:
            inner = _try_unpack(node)
            if inner is not _FAIL:
                return _set(tree, path, _pack(self.msgpack_tree(inner, depth + 1), rng))
        if op < 5:
            return _set(tree, path, self._tweak(node))
        if op == 5 and isinstance(node, list):
            if node and rng.random() < 0.5:
                del node[rng.randrange(len(node))]
            else:
                node.insert(rng.randrange(len(node) + 1), msgpack_values(rng))
            return tree
        if op == 6 and isinstance(node, list) and node:
            node.insert(rng.randrange(len(node) + 1), node[rng.randrange(len(node))])
            return tree
        if op == 7:
            return _set(tree, path, [node])  # wrap
        return _set(tree, path, msgpack_values(rng))

    def _tweak(self, node: Any) -> Any:
        rng = self.rng
        if isinstance(node, bool) or node is None:
            return msgpack_values(rng)
        if isinstance(node, int):
            return rng.choice([node + 1, node - 1, node ^ (1 << rng.randrange(64)), -node,
                               node * 2, rng.choice(_INTS), node + rng.randrange(-3600, 3600)])
        if isinstance(node, bytes):
            if node and rng.random() < 0.5:
                b = bytearray(node)
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
                return bytes(b)
            return rng.choice([node[:-1], node + b"\x00", b"", node * 2, node.decode("latin-1")])
        if isinstance(node, str):
            return rng.choice([node + "x", node[:-1], node.upper(), node.encode(), "",
                               node + "é", node * 3])
        return msgpack_values(rng)

    def msgpack(self, data: bytes) -> bytes:
        """Decode, mutate the tree, re-encode; falls back to byte edits when undecodable."""
        tree = _try_unpack(data)
        if tree is _FAIL:
            return self.bytes_(data)
        return _pack(self.msgpack_tree(tree), self.rng)

    # -- JSON --------------------------------------------------------------------------------

    def json_tree(self, tree: Any) -> Any:
        rng = self.rng
        path = rng.choice(_paths(tree))
        node = _get(tree, path)
        op = rng.randrange(8)
        if op < 3:
            return _set(tree, path, json_values(rng))
        if op == 3 and isinstance(node, dict):
            if node and rng.random() < 0.5:
                node.pop(rng.choice(list(node)))
            else:
                node[rng.choice(["id", "jsonrpc", "method", "params", "extra", "alloc",
                                 "target", "spatial", "x"])] = json_values(rng)
            return tree
        if op == 4 and isinstance(node, list):
            if node and rng.random() < 0.5:
                del node[rng.randrange(len(node))]
            else:
                node.insert(rng.randrange(len(node) + 1), json_values(rng))
            return tree
        if op == 5 and isinstance(node, int) and not isinstance(node, bool):
            bigger = node * 10 ** rng.randrange(1, 30)
            as_float = float(node) if abs(node) < 1e300 else node
            return _set(tree, path, rng.choice([node + 1, node - 1, -node, bigger, as_float,
                                               str(node)]))
        if op == 6 and isinstance(node, str):
            return _set(tree, path, rng.choice([node.upper(), node + " ", " " + node, node[:-1],
                                               node * 2, node + "\x00", ""]))
        if op == 7:
            return _set(tree, path, [node] if rng.random() < 0.5 else {"x": node})
        return _set(tree, path, json_values(rng))

    def json(self, text: bytes, dump: Callable[[Any], str] | None = None) -> bytes:
        """Decode JSON, mutate the tree, re-encode (NaN/Infinity allowed: Python reads them)."""
        try:
            tree = json.loads(text)
        except (ValueError, RecursionError):
            return self.bytes_(text)
        tree = self.json_tree(tree)
        try:
            out = (dump or (lambda t: json.dumps(t, separators=(",", ":"))))(tree)
        except (ValueError, RecursionError):
            return self.bytes_(text)
        return out.encode("utf-8", "surrogatepass")

    # -- TOML (line-oriented) ----------------------------------------------------------------

    def toml(self, text: bytes, keys: Sequence[str], values: Sequence[str]) -> bytes:
        """Edit a TOML document by lines: replace a value, add a key or table, drop a line."""
        rng = self.rng
        lines = text.decode("utf-8", "replace").split("\n")
        op = rng.randrange(6)
        i = rng.randrange(len(lines) + 1)
        if op < 2:
            idx = [j for j, line in enumerate(lines) if "=" in line]
            if idx:
                j = rng.choice(idx)
                lines[j] = lines[j].split("=", 1)[0] + "= " + rng.choice(values)
        elif op == 2:
            lines.insert(i, f"{rng.choice(keys)} = {rng.choice(values)}")
        elif op == 3:
            lines.insert(i, rng.choice(["[p2p]", "[mining]", "[control]", "[spatial]",
                                        "[account]", "[x]", "[[p2p]]", "[p2p.x]"]))
        elif op == 4 and lines:
            del lines[rng.randrange(len(lines))]
        else:
            return self.bytes_(text)
        return "\n".join(lines).encode()


_FAIL = object()


def _try_unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except Exception:  # why broad: the mutator only asks "is this msgpack?"; any failure is no
        return _FAIL


def _pack(tree: Any, rng: random.Random) -> bytes:
    try:
        out: bytes = msgpack.packb(tree, use_bin_type=rng.random() < 0.95)
    except (TypeError, ValueError, OverflowError):
        return b"\xc1"  # never-used marker: a guaranteed decode failure
    return out
