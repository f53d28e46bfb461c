"""How fast `ferry check` is on a large model (issue: 10,000 datasets in under 3 s).

Generates an ecosystem of 10,000 source datasets (10 columns each), 500 transformers and
2,000 consumers over 100 teams, then times, in this process:
  - load + check (`ferry check`), target < 3 s;
  - load + check + `--base` compatibility against the previous commit, target < 5 s;
  - of the check, binding every transformer's SQL on DuckDB (its share of the check);
and, as a baseline for the YAML part, `yaml.load(CSafeLoader)` of the same files.

    python bench/model_check.py [--teams 100] [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from dataferry.model.check import check_model
from dataferry.model.lint import Linter
from dataferry.model.load import load_model
from dataferry.model.sqlcheck import check_transformer_sql

TYPES = ["int64", "string", "decimal(12,2)", "timestamp_tz", "bool", "float64", "date",
         "list<string>", "string(20)", "json"]


def team_yaml(t: int, teams: int, datasets: int, transformers: int, consumers: int) -> str:
    lines = [f"team: t{t}", "zone: eu", f"owners: [owner{t}@acme.example]", "sources:",
             "  db:", "    kind: postgres", f"    dsn: postgresql://reader@db{t}.internal/app",
             "    password: ${env:DB_PASSWORD}", "    datasets:"]
    for d in range(datasets):
        lines += [f"      d{d}:", f"        table: public.d{d}", "        primary_key: [id]",
                  "        capture: incremental", "        cursor: c8",
                  "        columns:", "          id: {type: int64, nullable: false}"]
        lines += [f"          c{c}: {{type: '{TYPES[c % len(TYPES)]}'}}" for c in range(1, 10)]
        lines += ["        checks:", "          - not_null: [id]"]
    lines.append("transformers:")
    for x in range(transformers):
        other = (t + 1) % teams
        lines += [f"  x{x}:", f"    inputs: [t{t}.d{x}, t{other}.d{x + 1}]",
                  f"    sql: select a.id, b.c1 from d{x} a join d{x + 1} b using (id)",
                  "    primary_key: [id]",
                  "    columns: {id: {type: int64, nullable: false}, c1: {type: string}}"]
    lines.append("consumers:")
    for c in range(consumers):
        other = (t + c) % teams
        lines += [f"  k{c}:", "    sink: {kind: postgres, dsn: postgresql://loader@wh/wh, "
                  "password: '${env:WH_PASSWORD}', schema: s" + str(c) + "}", "    datasets:",
                  f"      - {{ref: t{other}.d{c}, mode: merge, columns: [id, c1, c2]}}",
                  f"      - {{ref: t{other}.d{c + 20}, mode: replace, where: \"c1 > 0\"}}",
                  f"      - {{ref: t{t}.x{c % transformers}, mode: append}}"]
    return "\n".join(lines) + "\n"


def generate(root: Path, teams: int, datasets: int = 10_000, transformers: int = 500,
             consumers: int = 2_000) -> None:
    """The ecosystem: ``datasets`` source datasets, ``transformers`` and ``consumers``
    (each with 3 needs) spread evenly over ``teams`` teams."""
    per_team = datasets // teams
    assert consumers // teams + 20 < per_team, "a consumer needs d<c> and d<c + 20>"
    (root / "ferry.yaml").write_text("ecosystem: big\nzones: {eu: {}}\nadmins: [a@acme.example]\n")
    for t in range(teams):
        folder = root / "teams" / f"t{t}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "team.yaml").write_text(
            team_yaml(t, teams, per_team, transformers // teams, consumers // teams))


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "PATH": "/usr/bin:/bin",
                        "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"})


def timed(label: str, action: object, target: float | None = None) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    seconds = time.perf_counter() - started
    verdict = "" if target is None else (" ok" if seconds < target else f" OVER {target} s")
    print(f"{label:<52} {seconds:7.2f} s{verdict}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        generate(root, args.teams)
        files = sorted(root.rglob("*.yaml"))
        size = sum(f.stat().st_size for f in files)
        print(f"model: 10,000 datasets, 500 transformers, 2,000 consumers, {len(files)} files, "
              f"{size / 2**20:.1f} MiB")

        def baseline() -> None:
            for f in files:
                yaml.load(f.read_bytes(), Loader=yaml.CSafeLoader)

        base = timed("baseline: yaml.load(CSafeLoader) of every file", baseline)
        result = None

        def check() -> None:
            nonlocal result
            result = check_model(root)

        took = timed("ferry check (load + every check)", check, 3.0)
        assert result is not None and result.ok, result.findings[:5]  # type: ignore[attr-defined]
        print(f"{'  ratio to the YAML baseline':<52} {took / base:7.2f} x")
        loaded = load_model(root)
        linter = Linter(loaded)
        linter.run()
        binding = timed("  of it: binding the 500 transformers' SQL",
                        lambda: check_transformer_sql(loaded, linter.index))
        print(f"{'  share of ferry check':<52} {binding / took:7.2f}")
        git(root, "init", "-q", "-b", "main")
        git(root, "add", "-A")
        git(root, "commit", "-qm", "base")
        for t in range(0, args.teams, 10):  # widen a type in every tenth team
            path = root / "teams" / f"t{t}" / "team.yaml"
            path.write_text(path.read_text().replace("c1: {type: 'string'}", "c1: {type: 'string'}", 1)
                            .replace("c3: {type: 'timestamp_tz'}", "c3: {type: 'timestamp_tz'}\n"
                                     "          extra: {type: int32}", 1))
        took = timed("ferry check --base main (both models + compat)",
                     lambda: check_model(root, base="main"), 5.0)
        changed = check_model(root, base="main")
        print(f"{'  teams changed':<52} {len(changed.changed_teams or []):7d}")
        assert changed.ok, changed.findings[:5]


if __name__ == "__main__":
    main()
