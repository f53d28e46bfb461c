"""``ferry init``: a new model repository, or the working example ecosystem."""

from __future__ import annotations

import json
import random
import re
import shutil
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from dataferry.errors import UsageError

_GITIGNORE = """# dataferry's home: the store, signing keys and metadata DB (never commit keys)
.ferry/
data/out/
"""

_WORKFLOW = """# Checks every pull request against the main branch: consistency, governance,
# backwards compatibility and ownership (MODEL.md).
name: ferry check
on: [pull_request]
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with: {fetch-depth: 0}
      - uses: actions/setup-python@v5
        with: {python-version: "3.12"}
      - run: pip install dataferry
      - run: >-
          ferry check --base origin/${{ github.base_ref }}
          --author "$(git log -1 --format=%ae ${{ github.event.pull_request.head.sha }})"
"""

_TEAMS_README = """# Teams

Each team has a folder `teams/<team>/` with one or more YAML files (`team: <team>` at the
top), SQL files referenced by `sql_file:`, and optional Python DSL files. Run
`ferry codeowners > CODEOWNERS` so each folder is reviewed by its team's owners.
"""


def _check_target(directory: Path, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        if (directory / "ferry.yaml").exists():
            raise UsageError(f"{directory} already holds a model (ferry.yaml); use --force "
                             "to overwrite it")
        raise UsageError(f"{directory} is not empty; choose an empty directory or use --force")


def _ecosystem_name(directory: Path) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", directory.resolve().name.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = "ecosystem" + (f"_{name}" if name else "")
    return name[:63]


def create_model(directory: Path, *, force: bool = False) -> list[str]:
    """A minimal valid model: ferry.yaml, a teams/ folder, .gitignore and a CI workflow."""
    _check_target(directory, force)
    files = {
        "ferry.yaml": (
            f"ecosystem: {_ecosystem_name(directory)}\n"
            "description: Our data ecosystem\n"
            "zones:\n"
            "  main:\n"
            "    description: Everything, until you need more zones\n"
            "defaults:\n"
            "  platform: local\n"
            "  freshness: 1d\n"
            "admins: []   # e-mail addresses of who may change ferry.yaml\n"
        ),
        "teams/README.md": _TEAMS_README,
        ".gitignore": _GITIGNORE,
        ".github/workflows/ferry-check.yml": _WORKFLOW,
    }
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(files)


def create_example(directory: Path, *, force: bool = False, scale: int = 1) -> list[str]:
    """Copy the acme example ecosystem and generate its bundled data (``scale`` x rows)."""
    _check_target(directory, force)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    source = resources.files("dataferry") / "examples" / "acme"
    with resources.as_file(source) as root:
        for path in sorted(root.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            rel = path.relative_to(root)
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            written.append(rel.as_posix())
    for name, text in {".gitignore": _GITIGNORE,
                       ".github/workflows/ferry-check.yml": _WORKFLOW}.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text, encoding="utf-8")
        written.append(name)
    written += generate_example_data(directory, scale=scale)
    return written


def generate_example_data(directory: Path, *, scale: int = 1, seed: int = 7) -> list[str]:
    """The example's bundled sources: data/shop.db (SQLite), data/inventory.duckdb and
    data/clicks/*.jsonl."""
    rng = random.Random(seed)
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    db_path = data / "shop.db"
    db_path.unlink(missing_ok=True)
    # Recent data, so the example's freshness checks pass: the last order is an hour old.
    now = datetime.now(UTC).replace(microsecond=0)
    countries = ["NZ", "AU", "DE", "FR", "US", "NO"]
    customers, orders, products = 200 * scale, 1000 * scale, 50
    start = now - timedelta(minutes=7 * orders + 60)
    with sqlite3.connect(db_path) as db:
        db.executescript(
            """
            create table customers (id integer primary key, name text, email text,
              country text, balance text, tags text, profile text, created_at text,
              updated_at text not null);
            create table orders (id integer primary key, customer_id integer not null,
              product_id integer, amount text not null, currency text, ordered_at text not null,
              updated_at text not null);
            create table products (sku integer primary key, title text, price text,
              weight_kg real, attributes text, dimensions text);
            create table campaigns (id integer primary key, name text, budget text,
              starts_on text);
            """
        )
        db.executemany(
            "insert into customers values (?,?,?,?,?,?,?,?,?)",
            (
                (
                    i, f"Customer {i}", f"customer{i}@example.com", rng.choice(countries),
                    f"{rng.uniform(0, 5000):.2f}", json.dumps(rng.sample(["vip", "new", "b2b"], 2)),
                    json.dumps({"newsletter": rng.random() < 0.5}),
                    (start + timedelta(hours=i)).isoformat(),
                    (start + timedelta(hours=i, minutes=5)).isoformat(),
                )
                for i in range(1, customers + 1)
            ),
        )
        db.executemany(
            "insert into orders values (?,?,?,?,?,?,?)",
            (
                (
                    i, rng.randint(1, customers), rng.randint(1, products),
                    f"{rng.uniform(1, 500):.2f}", rng.choice(["EUR", "USD", "NZD"]),
                    (start + timedelta(minutes=7 * i)).isoformat(),
                    (start + timedelta(minutes=7 * i + 1)).isoformat(),
                )
                for i in range(1, orders + 1)
            ),
        )
        db.executemany(
            "insert into products values (?,?,?,?,?,?)",
            (
                (
                    sku, f"Product {sku}", f"{rng.uniform(2, 200):.2f}", rng.uniform(0.1, 20),
                    json.dumps({"colour": rng.choice(["red", "blue", "green"])}),
                    json.dumps({"width": 1.0, "height": 2.0, "depth": 0.5}),
                )
                for sku in range(1, products + 1)
            ),
        )
        db.executemany(
            "insert into campaigns values (?,?,?,?)",
            [(i, f"Campaign {i}", f"{1000 * i}.00", f"2026-0{i}-01") for i in range(1, 6)],
        )
    inventory = data / "inventory.duckdb"
    inventory.unlink(missing_ok=True)
    import duckdb

    with duckdb.connect(str(inventory)) as db:
        db.execute("create table stock (sku bigint, location varchar, quantity integer, "
                   "counted_at timestamp)")
        db.executemany("insert into stock values (?, ?, ?, ?)", [
            (sku, place, rng.randint(0, 500), (now - timedelta(hours=rng.randint(1, 48)))
             .replace(tzinfo=None))
            for sku in range(1, products + 1) for place in ("AKL", "BER", "NYC")
        ])
    clicks = data / "clicks"
    clicks.mkdir(exist_ok=True)
    for day in range(3):
        when = start + timedelta(days=day)
        lines = [
            json.dumps({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "customer_id": rng.randint(1, customers),
                "url": f"/products/{rng.randint(1, products)}",
                "day": when.date().isoformat(),
                "at": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00",
                "embedding": [round(rng.uniform(-1, 1), 3) for _ in range(4)],
            })
            for _ in range(100 * scale)
        ]
        (clicks / f"{when.date()}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["data/shop.db", "data/inventory.duckdb",
            *(f"data/clicks/{p.name}" for p in sorted(clicks.iterdir()))]
