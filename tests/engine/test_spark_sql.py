"""Carrying DuckDB SQL to Spark's dialect: an answer for any text, never a crash."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry.engine.spark_sql import NotCarried, to_spark

SQLISH = st.lists(st.sampled_from([
    "select", "from", "t", "a", ",", "(", ")", "'", '"', "$$", "--", "/*", "*/", ";", "*",
    "exclude", "asof join", "list_aggregate(", "sum(", "cast(", "as decimal(18,2)", "1",
    "null", "order by", "group by", "where", "=", " ", "\n", "é"]), max_size=25).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(SQLISH, st.text(max_size=60)))
def test_any_text_gets_spark_sql_or_a_reason(sql: str) -> None:
    carried = to_spark(sql)
    assert isinstance(carried, str | NotCarried)
    if isinstance(carried, NotCarried):
        assert carried.reason


def test_what_is_carried_and_what_is_not() -> None:
    assert to_spark("select a from t order by a") == "SELECT a FROM t ORDER BY a NULLS LAST"
    assert to_spark("select a::varchar from t") == "SELECT CAST(a AS STRING) FROM t"
    for sql, words in [("select 'open", "parse"), ("select 1; select 2", "2 statements"),
                       ("select list_aggregate(x, 'sum') from t", "list_aggregate"),
                       ("select * exclude (a) from t", "EXCLUDE"),
                       ("select * from t asof join u on t.a >= u.a", "ASOF")]:
        carried = to_spark(sql)
        assert isinstance(carried, NotCarried) and words in carried.reason, (sql, carried)
