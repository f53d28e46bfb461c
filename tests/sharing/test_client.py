"""Proof with the official ``delta-sharing`` client (in a venv of its own) against a real
``ferry serve``: what a partner loads equals what the consumer's sink got."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from dataferry.cli.main import invoke
from dataferry.cli.run_commands import _context
from dataferry.engine.context import RunContext
from dataferry.metadata import AuditLog
from tests.outside_tools import run_tool, tool_venv
from tests.server.live import ferry_serve
from tests.sharing.partner_model import make_partner_model, sink_rows

SCRIPT = Path(__file__).with_name("client_script.py")

def _profile(root: Path, consumer: str, url: str) -> Path:
    out = root.parent / f"{consumer}.share"
    assert invoke(["share", "create", f"shop.{consumer}", "--endpoint", url, "--out", str(out),
                   "--model", str(root)]) == 0
    return out

def test_the_delta_sharing_client_reads_what_the_sinks_got(tmp_path: Path) -> None:
    python = tool_venv("delta-sharing", ["delta-sharing"]) / "python"
    root = make_partner_model(tmp_path / "model")
    context = _context(root)
    assert isinstance(context, RunContext)
    first = context.store.dataset("shop.orders").version(1).manifest.created_at
    context.close()
    with ferry_serve(root) as served:
        profiles = {c: _profile(root, c, served.url) for c in ("mirror", "partner")}
        for consumer, profile in profiles.items():
            got = json.loads(run_tool(python, str(SCRIPT), str(profile), f"shop__{consumer}",
                                      first))
            assert got["tables"] == [f"shop__{consumer}.shop.{name}" for name in (
                ["by_country", "orders"] if consumer == "mirror" else ["orders"])]
            assert got["all"] == sink_rows(root, consumer), consumer
            # responseformat=delta, read by the client's Delta kernel: the same rows
            assert got["delta"] == got["all"], consumer
            assert got["delta_v1"] == got["v1"]
            assert got["delta_limit"] == 10
            assert got["delta_changes"] == got["changes"]
            assert got["limit"] == 10
            assert got["version"] == 2
            assert len(got["v1"]) == (40 if consumer == "mirror" else 20)
            assert got["at_v1"] == got["v1"]
            inserted = [{k: r[k] for k in r if not k.startswith("_")}
                        for r in got["changes"] if r["_commit_version"] == 1]
            assert inserted == got["v1"]
            assert {r["_change_type"] for r in got["changes"] if r["_commit_version"] == 1
                    } == {"insert"}
            assert [(r["id"], r["_change_type"], r["amount"]) for r in got["changes"]
                    if r["_commit_version"] == 2] == [
                (3, "update_postimage", 99.0), (3, "update_preimage", 4.5), (5, "delete", 7.5),
                (41, "insert", 1.0)]
            after = {r["id"]: r for r in got["all"]}
            post = next(r for r in got["changes"] if r["_change_type"] == "update_postimage")
            assert {k: post[k] for k in post if not k.startswith("_")} == after[3]
            names = [f["name"] for f in got["schema"]["fields"]]
            assert names == (["id", "amount", "email", "country"] if consumer == "mirror"
                             else ["id", "amount", "email"])
        partner = json.loads(profiles["partner"].read_text())
        assert all(len(r["email"]) == 64 for r in got["all"])  # masked, as in the sink
        # the partner's token opens no other share; revoked, it opens nothing
        other = subprocess.run([str(python), str(SCRIPT), str(profiles["partner"]),
                                "shop__mirror"], capture_output=True, text=True, timeout=120)
        assert other.returncode != 0 and "403" in other.stderr
        assert invoke(["share", "revoke", "shop.partner", "--model", str(root)]) == 0
        gone = subprocess.run([str(python), str(SCRIPT), str(profiles["partner"]),
                               "shop__partner"], capture_output=True, text=True, timeout=120)
        assert gone.returncode != 0 and "401" in gone.stderr
        assert partner["bearerToken"] not in (root.parent / f"serve-{served.port}.log"
                                              ).read_text()
    # the client declares deletionvectors: its Delta kernel read version 2 of the mirror's
    # orders from the stored files and their vector (fetched by signed URL), and got the
    # sink's rows (got["delta"] above); the partner's need is derived, without vectors
    context = _context(root)
    assert isinstance(context, RunContext)
    try:
        queries = [e for e in AuditLog(context.metadata).entries() if e.action == "share.query"]
    finally:
        context.close()
    passed = {e.actor for e in queries if e.detail and e.detail.get("deletion_vectors")}
    assert passed == {"share:shop.mirror"}
