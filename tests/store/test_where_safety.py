"""A consumer's `where` filters its own rows and can do nothing else."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dataferry.errors import ModelError
from dataferry.model.lint import safe_where, where_columns
from dataferry.store.changes import version_rows
from tests.store.conftest import StoreFixture, orders

ATTACKS = [
    "false) union all (select id, customer, customer, at from b where (true",
    "amount > 0; copy b to '/tmp/out.csv'",
    "customer = (select max(customer) from b)",
    "exists (select 1 from read_csv('/etc/passwd'))",
    "(select count(*) from read_text('/etc/hostname')) > 0",
]


@pytest.mark.parametrize("where", ATTACKS)
def test_a_where_that_is_more_than_a_condition_is_refused(
        shop: StoreFixture, where: str) -> None:
    assert isinstance(where_columns(where), str)  # ferry check reports it
    shop.publish("shop.orders", orders(range(1, 4)))
    dataset = shop.dataset("shop.orders")
    schema = pa.schema([("id", pa.int64()), ("customer", pa.string())])
    with pytest.raises(ModelError, match="not a condition on the row's columns"):
        version_rows(dataset, dataset.resolve(None), ["id", "customer"], where,
                     schema).read_all()


def test_a_plain_condition_is_rendered_from_its_parse_tree() -> None:
    assert safe_where("amount > 0 and customer in ('c1', 'c2')") == (
        "amount > 0 AND customer IN ('c1', 'c2')")
