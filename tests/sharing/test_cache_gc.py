"""``ferry gc`` and the sharing cache: entries of dropped versions and of needs no longer
in the model go, the others stay; a ``kind: share`` consumer holds no version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dataferry.cli.run_commands import _context
from dataferry.engine.context import RunContext
from dataferry.sharing.changes import changes
from dataferry.sharing.files import table_files
from tests.conftest import Result
from tests.sharing.partner_model import make_partner_model

SHARED = """\
  notebooks:
    sink: {kind: share}
    datasets: [{ref: shop.orders, freshness: 1h}]
"""


def _derive(root: Path) -> Path:
    """Derive the partner's files of versions 1 and 2 and its change set of version 2."""
    context = _context(root)
    assert isinstance(context, RunContext)
    try:
        _, _, partner = context.index.consumers["shop.partner"]
        need = partner.datasets[0]
        dataset = context.store.dataset("shop.orders")
        for number in (1, 2):
            table_files(context, "shop.partner", need, dataset.version(number))
        changes(context, "shop.partner", need, 1, 2)
        return context.store.root / "_sharing_cache"
    finally:
        context.close()


def _entries(cache: Path) -> set[str]:
    return {str(p.relative_to(cache).parent.name + "/" + p.name)
            for p in cache.glob("*/*/*")} if cache.is_dir() else set()


def test_gc_removes_the_cache_of_dropped_versions_and_old_needs(
        tmp_path: Path, ferry: Callable[..., Result]) -> None:
    root = make_partner_model(tmp_path / "model")
    team = root / "teams/shop/shop.yaml"
    team.write_text(team.read_text() + SHARED)
    assert ferry("run", "--model", root).code == 0  # the share consumer delivers nothing
    cache = _derive(root)
    assert _entries(cache) == {"shop.orders/000000000001", "shop.orders/000000000002",
                               "shop.orders/000000000002.cdf"}

    # a share consumer holds no version: gc drops version 1 (the sinks hold version 2)
    result = ferry("gc", "shop.orders", "--keep", "1", "--model", root)
    assert result.code == 0, result
    assert "dropped versions 1..1" in result.out and "kept version" not in result.out
    assert "sharing cache: removed 2 entries" in result.out
    assert _entries(cache) == {"shop.orders/000000000002"}

    # nothing more to remove: the other entries stay
    again = ferry("gc", "--model", root)
    assert "sharing cache" not in again.out and _entries(cache) == {"shop.orders/000000000002"}

    # the partner's need changes: its old derived files can never be served again
    team.write_text(team.read_text().replace("where: \"country = 'de'\"",
                                             "where: \"country = 'fr'\""))
    changed = ferry("gc", "--model", root)
    assert "sharing cache: removed 1 entry" in changed.out, changed
    assert not cache.exists() or not any(cache.iterdir())


def test_an_entry_widened_for_the_delta_format_is_kept_like_its_version() -> None:
    from dataferry.sharing.cache_gc import _servable

    held = {2, 3}
    assert _servable("000000000003-signed", held) and _servable("000000000003.cdf-signed", held)
    assert not _servable("000000000001-signed", held)
    assert not _servable("000000000002.cdf-signed", held)  # its version 1 is gone
    assert not _servable("junk-signed", held)
