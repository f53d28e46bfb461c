"""The catalog search's index against scanning every dataset's text, in one process.

Generates bench/model_check.py's ecosystem (``--size`` source datasets, 100 a team, a
twentieth as many transformers, a fifth as many consumers), loads it, and measures:

  build     CPU seconds to build the listing's search index (``catalog_search``) from
            the texts, and the memory it holds (tracemalloc, in a second build)
  search    CPU per search for each of bench/scale.py's words: the index against the
            scan it replaced (every word a substring of every text: the baseline, run
            here on the same texts), with their ratio; both must find the same datasets

The server's whole request (authentication, the page, JSON) is bench/scale.py's.

    python bench/catalog_search.py [--size 10000] [--repeat 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_check import generate  # bench/ is not a package
from scale import WORDS

from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from dataferry.server.catalog_search import SearchIndex


def scan(texts: Sequence[str], search: str) -> list[int]:
    """The search before the index: each word filters the positions left."""
    hits: Sequence[int] = range(len(texts))
    for word in search.lower().split():
        hits = [i for i in hits if word in texts[i]]
    return list(hits)


def cpu_ms(action: Callable[[], object], repeat: int) -> float:
    started = time.process_time()
    for _ in range(repeat):
        action()
    return (time.process_time() - started) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="source datasets")
    parser.add_argument("--repeat", type=int, default=200, help="index searches per word")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferry-search-") as tmp:
        root = Path(tmp)
        generate(root, args.size // 100, datasets=args.size, transformers=args.size // 20,
                 consumers=args.size // 5)
        loaded = load_model(root)
        assert loaded.ecosystem is not None and loaded.report.ok
        index = ModelIndex(loaded.ecosystem)
    refs = sorted(index.datasets)
    texts = ["\n".join([ref, index.datasets[ref].spec.description or "",
                        *index.datasets[ref].spec.columns]).lower() for ref in refs]
    teams = [index.datasets[ref].team for ref in refs]
    started = time.process_time()
    search = SearchIndex(texts, teams)
    build = time.process_time() - started
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    measured = SearchIndex(texts, teams)
    held = tracemalloc.get_traced_memory()[0] - before
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    del measured
    print(f"{len(texts):,} datasets, {len(search.tokens):,} distinct tokens; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"index build {build:.2f} s CPU; holds {held / 2**20:.1f} MiB "
          f"({peak / 2**20:.1f} MiB at the peak of building)")
    print(f"{'search':<18} {'matches':>8} {'scan ms':>8} {'index ms':>9} {'ratio':>7}")
    for word in WORDS:
        assert search.find(word).tolist() == scan(texts, word), word
        scanned = cpu_ms(lambda: scan(texts, word), max(3, args.repeat // 40))  # noqa: B023
        indexed = cpu_ms(lambda: search.find(word), args.repeat)  # noqa: B023
        print(f"{word!r:<18} {len(search.find(word)):>8,} {scanned:>8.2f} {indexed:>9.3f} "
              f"{scanned / indexed:>6.0f}x")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
