"""``make demo-spatial``, its verdicts: after the reports, every expectation is checked on
the nodes themselves (decisions, committees, tally bundles, rewards, balances) and printed.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from rich.table import Table

from crowdmesh.chain.codec import unpack
from crowdmesh.chain.contracts.spatial import rewards
from crowdmesh.chain.contracts.spatial.protocol import Commit, committee_hash
from crowdmesh.daemon.client.demo_spatial_setup import (
    FAR,
    N_NODES,
    NEAR,
    PARAMS,
    DemoFailed,
    DemoResult,
    console,
    log_lines,
    settle,
)
from crowdmesh.daemon.client.demo_spatial_setup import nodes as _nodes
from crowdmesh.daemon.client.harness import NodeHandle, Testnet
from crowdmesh.daemon.client.rpc import RpcCallError

__all__ = ["balances_tables", "check_reports", "reports_table", "rewards_table", "snapshot"]

def _names(accounts: Sequence[str], keys: Iterable[str]) -> str:
    index = {a: i for i, a in enumerate(accounts)}
    return _nodes(index[k] for k in keys if k in index)


def _committee_of(h_s: str, accounts: Sequence[str], members: Iterable[int]) -> list[int]:
    """Which K of ``members`` have committee hash ``h_s`` (a reject names only H(S))."""
    for combo in itertools.combinations(sorted(members), PARAMS.committee_k):
        if committee_hash([bytes.fromhex(accounts[i]) for i in combo]).hex() == h_s:
            return list(combo)
    return []


async def _tally_commits(node: NodeHandle, rid: str, height: int) -> list[str]:
    """The workers whose commits the confirmed report's tally carries (S first, in ticket
    order, then every other valid commit the requester heard)."""
    block = await node.rpc("block", [height])
    for txid in block["txids"]:
        tx = await node.rpc("tx", [txid])
        if tx["kind"] != "spatial-tally":
            continue
        _, raw_commits, _ = unpack(bytes.fromhex(tx["payload"]), 1 << 24)
        commits = [Commit.decode(c) for c in raw_commits]
        if commits and commits[0].report_id.hex() == rid:
            return [c.worker.hex() for c in commits]
    raise DemoFailed(f"no spatial-tally for {rid[:12]} in block {height}")


async def check_reports(net: Testnet, accounts: Sequence[str], result: DemoResult) -> None:
    fire, flood, dup = (result.reports[k] for k in ("fire", "flood", "duplicate"))
    for name, report in (("fire", fire), ("flood", flood)):
        views = [await n.rpc("report_show", [report["id"]]) for n in net.nodes]
        first = views[0]
        report.update(height=first["height"], h_s=first["committee"],
                      confirmers=first.get("confirmers", []))
        result.expect(all(v == first for v in views),
                      f"{name}: all {N_NODES} nodes record the same decision "
                      f"({first['status']} at height {first['height']})")
    bundle = await _tally_commits(net.nodes[0], flood["id"], flood["height"])
    index = {a: i for i, a in enumerate(accounts)}
    flood["committee"] = [index[w] for w in bundle[:PARAMS.committee_k]]
    flood["committed"] = {index[w] for w in bundle}
    fire["committee"] = _committee_of(fire["h_s"], accounts, fire["held"])
    result.expect(fire["outcome"] == "rejected",
                  "FALSE report (fire, not in the ground truth) rejected by committee "
                  f"{_nodes(fire['committee'])}")
    result.expect(flood["outcome"] == "confirmed" and len(flood["confirmers"]) >= PARAMS.majority,
                  f"TRUE report (flood) confirmed by {_names(accounts, flood['confirmers'])} "
                  f"(committee {_nodes(flood['committee'])})")
    result.expect("spatial-duplicate" in " ".join(log_lines(net.nodes[0], dup["id"])),
                  "DUPLICATE refused: the requester's log shows spatial-duplicate")
    try:
        await net.nodes[4].rpc("report_show", [dup["id"]])
        on_chain = True
    except RpcCallError:
        on_chain = False
    result.expect(not on_chain, "the duplicate never reached the chain (report-not-found)")
    for name, report in result.reports.items():
        held = report["held"]
        result.expect(len(held & NEAR) >= PARAMS.committee_k,
                      f"{name}: held by {len(held & NEAR)} of the 6 workers within R "
                      f"({_nodes(held)})")
    far_held = set().union(*(result.held.get(rid, set()) for rid in result.attempts)) & FAR
    result.expect(not far_held, f"node7 and node8 held none of the {len(result.attempts)} "
                                "reports made (their role state, polled all along)"
                                + (f": {_nodes(far_held)} did" if far_held else ""))
    far_keys = {accounts[i] for i in FAR}
    result.expect(not far_keys & set(bundle),
                  f"the flood's tally carries commits of {_nodes(flood['committed'])} only: "
                  "none from node7 (3 km) or node8 (12 km)")
    result.expect(not far_keys & set(flood["confirmers"]),
                  "node7 and node8 are not among the confirmers")
    quiet = not any(rid in line for i in FAR for line in net.nodes[i].stderr_text().splitlines()
                    for rid in result.attempts)
    result.expect(quiet, "no line of node7's or node8's log names any report")


def reports_table(result: DemoResult, accounts: Sequence[str]) -> None:
    def ids(nodes: Iterable[int]) -> str:
        return ",".join(str(i) for i in sorted(nodes)) or "-"

    index = {a: i for i, a in enumerate(accounts)}
    table = Table("report", "outcome", "held by (node)", "committee", "confirmers",
                  title="reports (the workers by node number)")
    for name, r in result.reports.items():
        outcome = r["outcome"].replace(" (", "\n").rstrip(")")
        if "height" in r:
            outcome += f"\nat height {r['height']}"
        table.add_row(f"{name}\n{r['place']}\n{r['id'][:10]}", outcome, ids(r["held"]),
                      ids(r.get("committee", [])),
                      ids(index[c] for c in r.get("confirmers", []) if c in index))
    console.print(table)


async def rewards_table(net: Testnet, accounts: Sequence[str], result: DemoResult) -> None:
    """``rewards ACCOUNT`` of every node's account, read from one node at one head."""
    confirmers = set(result.reports["flood"]["confirmers"])
    want_req = rewards.requester_reward(PARAMS, 0, 1)
    want_worker = rewards.worker_reward(PARAMS, 0, 1, len(confirmers))
    node = net.nodes[5]
    for _ in range(10):
        before = await node.rpc("head")
        rows = [await node.rpc("rewards", [a]) for a in accounts]
        if await node.rpc("head") == before:
            break
    else:
        raise DemoFailed("the head kept moving while rewards were read")
    table = Table("node", "requester", "worker", "confirmed", "blocks", "miner", "§3 formula",
                  title=f"rewards ACCOUNT, as requester, worker and miner (asked node5 at "
                        f"height {before['height']})")
    all_ok = True
    for i, (account, row) in enumerate(zip(accounts, rows, strict=True)):
        want = (want_req, 0) if i == 0 else (0, want_worker if account in confirmers else 0)
        ok = (row["requester"], row["worker"]) == want
        all_ok &= ok
        table.add_row(f"node{i}", str(row["requester"]), str(row["worker"]),
                      str(row["confirmations"]), str(row["blocks"]), str(row["miner"]),
                      f"{sum(want)} {'ok' if ok else 'DIFFERS'}")
    console.print(table)
    console.print(f"  requester ⌊B·α_r·Φ(0,1)⌋ = {want_req}; each of N_w = {len(confirmers)} "
                  f"confirmers ⌊B·α_w·Φ(0,1)·m/N_w⌋ = {want_worker} (m = {PARAMS.majority}); "
                  "a miner earns the block reward per block")
    result.expect(all_ok, "rewards match SPATIAL.md §3: the requester, each confirmer; the "
                          "rejecting, unselected and far workers nothing")
    blocks = sum(r["blocks"] for r in rows)
    result.expect(blocks == before["height"],
                  f"every block's miner is paid ({blocks} blocks of {before['height']})")


async def snapshot(net: Testnet, accounts: Sequence[str]) -> tuple[
        list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Every node's head and every account's balance as every node sees it, read at one
    common head (read again if a block arrived meanwhile)."""
    for _ in range(10):
        before = await net.tips()
        rows = [[await n.rpc("balance", [a]) for a in accounts] for n in net.nodes]
        after = await net.tips()
        if before == after and len({t.get("hash") for t in after}) == 1:
            return after, rows
        await settle(net)
    raise DemoFailed("the head kept moving while balances were read")


def balances_tables(tips: list[dict[str, Any]], rows: list[list[dict[str, Any]]],
                     accounts: Sequence[str], result: DemoResult) -> None:
    table = Table("account", "balance", "nonce", "identical on",
                  title=f"balances at height {tips[0]['height']} (base units)")
    same = True
    for k in range(len(accounts)):
        seen = {(rows[n][k]["balance"], rows[n][k]["nonce"]) for n in range(N_NODES)}
        same &= len(seen) == 1
        agree = sum((rows[n][k]["balance"], rows[n][k]["nonce"]) ==
                    (rows[0][k]["balance"], rows[0][k]["nonce"]) for n in range(N_NODES))
        table.add_row(f"node{k} {accounts[k][:8]}", f"{rows[0][k]['balance']:,}",
                      str(rows[0][k]["nonce"]), f"{agree}/{N_NODES} nodes")
    console.print(table)
    view = Table("node", "height", "head", "balances digest", "sum of balances",
                 title="what each node sees")
    for n, tip in enumerate(tips):
        pairs = [(r["account"], r["balance"], r["nonce"]) for r in rows[n]]
        digest = hashlib.sha256(repr(pairs).encode()).hexdigest()[:16]
        view.add_row(f"node{n}", str(tip["height"]), str(tip["hash"])[:16], digest,
                     f"{sum(r['balance'] for r in rows[n]):,}")
    console.print(view)
    result.expect(len({(t["height"], t["hash"]) for t in tips}) == 1,
                  f"all {N_NODES} nodes have the same head at height {tips[0]['height']}")
    result.expect(same, f"every balance and nonce is identical on all {N_NODES} nodes")


