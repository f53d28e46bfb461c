"""The broker's own costs: planning a 10,000-dataset model, and the scheduler's overhead.

Generates the same model as ``bench/model_check.py`` (10,000 source datasets, 500 SQL
transformers, 2,000 consumers with 6,000 needs over 100 teams) and prints:

  planning (job graph + platforms + plan document), the model already loaded   target < 2 s
  loading the model (for comparison: what `ferry plan` pays before planning)

    python bench/broker.py [--teams N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from model_check import generate  # noqa: E402

from dataferry.broker.plan import build_plan  # noqa: E402
from dataferry.model.graph import ModelIndex  # noqa: E402
from dataferry.model.load import load_model  # noqa: E402
from dataferry.store.store import Store  # noqa: E402


def line(label: str, value: str) -> None:
    print(f"{label:<64} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferry-broker-bench-") as tmp:
        root = Path(tmp)
        generate(root, args.teams)
        started = time.perf_counter()
        loaded = load_model(root)
        loading = time.perf_counter() - started
        assert loaded.ecosystem is not None
        started = time.perf_counter()
        index = ModelIndex(loaded.ecosystem)
        store = Store.for_model(root, loaded.ecosystem)
        plan = build_plan(index, store, None)
        planning = time.perf_counter() - started
        kinds = {k: sum(1 for j in plan["jobs"] if j["kind"] == k)
                 for k in ("ingest", "transform", "deliver")}
        line("model", f"{len(index.datasets):,} datasets, {len(index.consumers):,} consumers")
        line("jobs planned", f"{len(plan['jobs']):,} ({kinds['ingest']:,} ingest + "
             f"{kinds['transform']:,} transform + {kinds['deliver']:,} deliver)")
        line("loading the model", f"{loading:7.2f} s")
        line("planning: graph, platforms, plan document", f"{planning:7.2f} s (target < 2 s)")


if __name__ == "__main__":
    main()
