"""The cache of the checked model (``dataferry.model.cache``): `ferry check` keeps what it
checked, `ferry plan` & co. start from it while nothing it depends on changed, never from
a stale or unsafe entry, and say exactly what they say without it."""

from __future__ import annotations

import io
import json
import os
import pickle
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.model import cache
from dataferry.model.check import lint_model
from dataferry.model.load import LoadedModel, load_model

SHOP = """\
team: shop
zone: eu
owners: [sam@acme.example]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      orders:
        table: orders
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          amount: {type: decimal(12,2)}
transformers:
  revenue:
    inputs: [shop.orders]
    sql_file: revenue.sql
    columns:
      total: {type: decimal(18,2)}
"""
REVENUE = "select cast(sum(amount) as decimal(18,2)) as total from orders\n"


@pytest.fixture
def shop(model: Callable[..., Path]) -> Path:
    return model({"teams/shop/shop.yaml": SHOP, "teams/shop/revenue.sql": REVENUE,
                  "teams/shop/empty.yaml": "# nothing yet\n"})  # a warning


def checked(root: Path) -> LoadedModel:
    loaded = load_model(root)
    lint_model(loaded)
    return loaded


def cached(root: Path) -> LoadedModel | None:
    """The wholly checked model the cache holds for ``root``, or None."""
    found = cache.read_cached(cache.model_key(root), sql=True)
    return found[0] if found is not None else None


def entries() -> list[Path]:
    return sorted(cache.cache_directory().glob("*.checked"))


def test_check_keeps_the_checked_model_and_plan_reads_the_same(shop: Path,
                                                                ferry: Any) -> None:
    assert cached(shop) is None
    result = ferry("check", "--model", shop, "--json")
    assert result.code == 0, result
    assert len(entries()) == 1 and not str(entries()[0]).startswith(str(shop))
    fresh, kept = checked(shop), cached(shop)
    assert kept is not None
    assert kept.ecosystem == fresh.ecosystem
    assert kept.report.findings == fresh.report.findings  # the empty file's warning
    assert [f.code for f in kept.report.findings] == ["invalid-field"]
    assert (kept.files, kept.team_files, kept.invalid) == (
        fresh.files, fresh.team_files, fresh.invalid)
    with_cache = ferry("plan", "--model", shop, "--json")
    os.environ["FERRY_MODEL_CACHE"] = "0"
    try:
        without = ferry("plan", "--model", shop, "--json")
    finally:
        del os.environ["FERRY_MODEL_CACHE"]
    assert with_cache.code == without.code == 0
    assert json.loads(with_cache.out) == json.loads(without.out)


def test_an_error_is_reported_the_same_from_the_cache(shop: Path, ferry: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    team = shop / "teams" / "shop" / "shop.yaml"
    team.write_text(SHOP.replace("inputs: [shop.orders]", "inputs: [shop.ordres]"))
    assert ferry("check", "--model", shop).code == 1
    assert cached(shop) is not None  # a model with errors is kept too: refused quickly
    from_cache = ferry("plan", "--model", shop)
    monkeypatch.setenv("FERRY_MODEL_CACHE", "off")
    checked_again = ferry("plan", "--model", shop)
    assert from_cache.code == checked_again.code == 2
    assert "the model has 1 error(s) (first: teams/shop/shop.yaml:17:" in from_cache.err
    assert "error[unknown-reference]" in from_cache.err
    assert from_cache.err == checked_again.err


def test_a_run_is_not_stopped_by_sql_errors_of_jobs_it_does_not_run(shop: Path,
                                                                      ferry: Any) -> None:
    """`ferry run` checks the SQL of its own jobs only; a cached model whose error is in
    another transformer's SQL must not stop it."""
    with sqlite3.connect(shop / "shop.db") as db:
        db.execute("create table orders (id integer primary key, amount text)")
        db.execute("insert into orders values (1, '2.50')")
    db.close()
    (shop / "teams/shop/revenue.sql").write_text(REVENUE.replace("sum(amount)", "sum(amont)"))
    assert ferry("check", "--model", shop).code == 1
    kept = cached(shop)
    assert kept is not None and not kept.report.ok
    ran = ferry("run", "shop.orders", "--model", shop)
    assert ran.code == 0, ran
    refused = ferry("run", "shop.revenue", "--model", shop)
    assert refused.code != 0 and "did you mean 'amount'?" in refused.err


@pytest.mark.parametrize("change", ["team file", "sql_file", "new file", "python module",
                                    "dsl timeout"])
def test_any_change_the_check_depends_on_is_a_miss(shop: Path, change: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    key = cache.model_key(shop)
    cache.write_checked(key, checked(shop))
    assert cached(shop) is not None
    if change == "team file":
        (shop / "teams/shop/shop.yaml").write_text(SHOP.replace("amount:", "amount2:"))
    elif change == "sql_file":
        (shop / "teams/shop/revenue.sql").write_text(REVENUE.replace("total", "totl"))
    elif change == "new file":
        (shop / "teams/shop/more.yaml").write_text("team: shop\n")
    elif change == "python module":
        (shop / "teams/shop/helpers.py").write_text("RATE = 2\n")
    else:
        monkeypatch.setenv("FERRY_DSL_TIMEOUT", "5")
    assert cache.model_key(shop) != key
    assert cached(shop) is None


def test_the_first_command_after_a_change_checks_again_and_keeps_it(shop: Path,
                                                                     ferry: Any) -> None:
    assert ferry("check", "--model", shop).code == 0
    (shop / "teams/shop/revenue.sql").write_text(REVENUE.replace("sum(amount)", "sum(amont)"))
    planned = ferry("plan", "--model", shop)
    assert planned.code == 2 and "did you mean 'amount'?" in planned.err  # not the old check
    kept = cached(shop)
    assert kept is not None and [f.code for f in kept.report.findings if
                                 f.severity == "error"] == ["unknown-reference"]


def test_a_sql_file_the_key_does_not_cover_is_checked_on_reading(
        model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": SHOP.replace("revenue.sql", "queries/revenue.txt"),
                  "teams/shop/queries/revenue.txt": REVENUE})
    cache.write_checked(cache.model_key(root), checked(root))
    assert cached(root) is not None
    (root / "teams/shop/queries/revenue.txt").write_text(REVENUE.replace("total", "t"))
    assert cached(root) is None


def test_a_file_changed_while_the_model_loads_is_not_kept(shop: Path) -> None:
    key = cache.model_key(shop)
    loaded = checked(shop)
    (shop / "teams/shop/shop.yaml").write_text(SHOP + "# edited meanwhile\n")
    cache.write_checked(key, loaded)
    assert entries() == []


def test_off_switch_and_a_cache_inside_the_model_are_never_used(
        shop: Path, ferry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_MODEL_CACHE", "0")
    assert ferry("check", "--model", shop).code == 0
    assert entries() == []
    monkeypatch.delenv("FERRY_MODEL_CACHE")
    monkeypatch.setenv("FERRY_CACHE_DIR", str(shop / "teams" / "cache"))  # a PR could write it
    assert ferry("check", "--model", shop).code == 0
    assert not (shop / "teams" / "cache").exists()
    assert cached(shop) is None


def test_a_cache_that_cannot_be_written_is_no_error(shop: Path, ferry: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.write_text("a file where the home directory should be")
    monkeypatch.delenv("FERRY_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    assert ferry("check", "--model", shop).code == 0
    planned = ferry("plan", "--model", shop, "--json")
    assert planned.code == 0 and json.loads(planned.out)["jobs"]


def test_an_entry_others_could_write_is_not_read(shop: Path) -> None:
    cache.write_checked(cache.model_key(shop), checked(shop))
    [entry] = entries()
    directory = entry.parent
    assert directory.stat().st_mode & 0o777 == 0o700 and entry.stat().st_mode & 0o777 == 0o600
    entry.chmod(0o666)
    assert cached(shop) is None
    entry.chmod(0o600)
    directory.chmod(0o777)
    assert cached(shop) is None
    directory.chmod(0o700)
    assert cached(shop) is not None
    moved = directory / "elsewhere"
    entry.rename(moved)
    entry.symlink_to(moved)  # a link is not followed
    assert cached(shop) is None


class _Planted:
    """What a forged entry would run on loading, were any callable accepted."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_a_forged_entry_runs_nothing(shop: Path, tmp_path: Path) -> None:
    key = cache.model_key(shop)
    cache.write_checked(key, checked(shop))
    [entry] = entries()
    marker = tmp_path / "ran"
    entry.write_bytes(cache.FORMAT + key.digest + pickle.dumps(_Planted(marker)))
    assert cached(shop) is None and not marker.exists()
    entry.write_bytes(cache.FORMAT + key.digest + b"\x80\x05garbage")
    assert cached(shop) is None


def test_this_machines_settings_are_applied_and_never_written(
        shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_METADATA", "postgresql://ferry:s3cret-pw@db.example/ferry")
    cache.write_checked(cache.model_key(shop), checked(shop))
    [entry] = entries()
    assert b"s3cret-pw" not in entry.read_bytes()
    monkeypatch.setenv("FERRY_METADATA", "postgresql://ferry@other.example/ferry")
    kept = cached(shop)
    assert kept is not None and kept.ecosystem is not None
    assert kept.ecosystem.metadata == "postgresql://ferry@other.example/ferry"
    monkeypatch.delenv("FERRY_METADATA")  # which variables are set is part of the key
    assert cached(shop) is None


def test_only_the_most_recently_used_entries_are_kept(model: Callable[..., Path],
                                                     tmp_path: Path) -> None:
    roots = []
    for n in range(cache.KEEP + 2):
        root = tmp_path / f"m{n}"
        (root / "teams/shop").mkdir(parents=True)
        (root / "ferry.yaml").write_text("ecosystem: acme\nzones: {eu: {}}\n")
        roots.append(root)
        cache.write_checked(cache.model_key(root), checked(root))
        [written] = [e for e in entries() if e.stat().st_mtime > 2_000_000]
        os.utime(written, (1_000_000 + n, 1_000_000 + n))  # written in this order
    assert len(entries()) == cache.KEEP
    assert cached(roots[0]) is None and cached(roots[-1]) is not None


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
TYPES = st.sampled_from(["int64", "string", "decimal(12,2)", "timestamp_tz", "date",
                         "float64", "bool", "json", "string(2)"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(columns=st.dictionaries(NAMES, st.tuples(TYPES, TEXT, st.booleans()), min_size=1,
                               max_size=6))
def test_an_entry_reads_back_as_the_model_it_kept(model: Callable[..., Path],
                                                  columns: dict[str, tuple[str, str, bool]]
                                                  ) -> None:
    lines = "".join(f"          {name}: {{type: {kind!r}, description: {json.dumps(text)}, "
                    f"nullable: {str(nullable).lower()}}}\n"
                    for name, (kind, text, nullable) in columns.items())
    root = model({"teams/shop/shop.yaml": SHOP.split("        columns:\n")[0]
                  + "        columns:\n" + lines})
    loaded = checked(root)
    entry = cache._Entry.of(loaded)
    data = io.BytesIO()
    cache._Pickler(data, pickle.HIGHEST_PROTOCOL).dump(entry)
    data.seek(0)
    back = cache._Unpickler(data).load().loaded(loaded.root)
    assert back.ecosystem == loaded.ecosystem
    assert back.report.findings == loaded.report.findings
    assert back.ecosystem is not None and loaded.ecosystem is not None
    assert back.ecosystem.model_dump() == loaded.ecosystem.model_dump()
    if "shop" not in back.ecosystem.teams:
        return  # a text YAML does not take (a parse-error finding, kept and compared above)
    read = back.ecosystem.teams["shop"].sources["db"].datasets["orders"].columns
    before = {name: set(column.model_fields_set) for name, column in read.items()}
    for column in read.values():  # columns given the same fields share one set
        copied = column.model_copy(update={"description": "changed"})
        assert "description" in copied.model_fields_set
    assert {name: set(column.model_fields_set) for name, column in read.items()} == before


def test_a_run_keeps_the_model_without_sql_for_the_next_runs(
        shop: Path, ferry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ferry run` keeps what it checked (all but SQL): the next run of the unchanged
    model loads nothing and still checks the SQL of its own jobs, saying what a run
    without the cache says; commands that need the SQL checked never read that entry,
    and `ferry check` replaces it."""
    import dataferry.model.load as load

    with sqlite3.connect(shop / "shop.db") as db:
        db.execute("create table orders (id integer primary key, amount text)")
        db.execute("insert into orders values (1, '2.50')")
    db.close()
    (shop / "teams/shop/revenue.sql").write_text(REVENUE.replace("sum(amount)", "sum(amont)"))
    loads: list[Path] = []

    def counted(root: Path, **kwargs: Any) -> LoadedModel:
        loads.append(root)
        return load_model(root, **kwargs)

    monkeypatch.setattr(load, "load_model", counted)
    assert ferry("run", "shop.orders", "--model", shop).code == 0
    assert ferry("run", "shop.orders", "--model", shop).code == 0
    assert len(loads) == 1
    assert cached(shop) is None  # not for `ferry plan` & co.: its SQL was not checked
    found = cache.read_cached(cache.model_key(shop), sql=False)
    assert found is not None and found[1] is False
    assert found[0].ecosystem == checked(shop).ecosystem
    refused = ferry("run", "shop.revenue", "--model", shop)
    monkeypatch.setenv("FERRY_MODEL_CACHE", "0")
    refused_without = ferry("run", "shop.revenue", "--model", shop)
    monkeypatch.delenv("FERRY_MODEL_CACHE")
    assert refused.code == refused_without.code != 0
    assert "did you mean 'amount'?" in refused.err and refused.err == refused_without.err
    assert ferry("check", "--model", shop).code == 1
    kept = cached(shop)
    assert kept is not None and not kept.report.ok
    assert ferry("run", "shop.orders", "--model", shop).code == 0
    assert cached(shop) is not None  # a run does not replace a wholly checked entry


_SETTING = st.one_of(st.sampled_from(["data", "./lake", "teams/x", ".ferry", "s3://b/p",
                                      "/abs/where", "", "a\0b"]),
                     st.integers(), st.none(), st.lists(st.just("x"), max_size=1))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(home=_SETTING, store=_SETTING, extra=st.sampled_from(["", "zones: 7\n", "bogus: 1\n"]),
       variable=st.sampled_from([None, "elsewhere"]))
def test_the_key_skips_the_directories_the_loader_skips(
        model: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, home: Any, store: Any,
        extra: str, variable: str | None) -> None:
    """The key reads ``home:``/``store:`` from ferry.yaml's plain values (no validation):
    it must skip exactly the directories ``load_model`` skips once it validated them,
    else a file the loader reads could change without changing the key."""
    from dataferry.model import load
    from dataferry.model.findings import Report

    lines = ["ecosystem: shop\n", extra]
    lines += [f"home: {json.dumps(home)}\n"] if home is not None else []
    lines += [f"store: {json.dumps(store)}\n"] if store is not None else []
    root = model(ecosystem="".join(lines)).resolve()
    if variable is None:
        monkeypatch.delenv("FERRY_HOME", raising=False)
    else:
        monkeypatch.setenv("FERRY_HOME", variable)
    validated = load.deployment_settings(load._load_ecosystem(root, Report()))
    expected = (load._skipped_dirs(root, validated.home, validated.store)
                if validated is not None else load._skipped_dirs(root, ".ferry", None))
    assert load.model_skip_dirs(root) == expected
