"""Who may see which rows, and who may start which job (SERVER.md, authorization)."""

from __future__ import annotations

import pytest

from dataferry.broker.graph import build_graph
from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from dataferry.model.scaffold import create_example
from dataferry.server.auth.dependency import model_teams
from dataferry.server.authz import (
    RowAccess,
    can_see_metadata,
    can_trigger,
    job_team,
    row_access,
    row_accesses,
)
from dataferry.server.principal import Principal, Role
from tests.conftest import write_files

pytestmark = pytest.mark.security


def person(role: Role = "member", *teams: str) -> Principal:
    return Principal(user_id=1, username="someone", role=role, teams=frozenset(teams))


ADMIN = person("admin")


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> ModelIndex:
    root = tmp_path_factory.mktemp("acme")
    create_example(root, force=True)
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    return ModelIndex(loaded.ecosystem)


# A model with the awkward cases: one team with several needs of a dataset, a team that
# only reads through a transformer, and a dataset with an approval list.
SHOP = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      orders:
        primary_key: [id]
        columns: {id: int64, customer: string, email: string, amount: decimal(12,2)}
      secret:
        allowed_consumers: [ops]
        columns: {id: int64, note: string}
"""
BI = """\
team: bi
zone: eu
owners: [bob@acme.example]
consumers:
  wide:
    sink: {kind: sqlite, path: wide.db}
    datasets:
      - {ref: shop.orders, columns: [id, customer, amount], where: "amount > 10"}
  narrow:
    sink: {kind: sqlite, path: narrow.db}
    datasets:
      - {ref: shop.orders, columns: [id]}
  sneaky:
    sink: {kind: sqlite, path: sneaky.db}
    datasets:
      - shop.secret
"""
LAB = """\
team: lab
zone: eu
owners: [carl@acme.example]
transformers:
  order_ids:
    inputs: [shop.orders]
    sql: select id from orders
    columns: {id: int64}
"""
OPS = """\
team: ops
zone: eu
owners: [olga@acme.example]
consumers:
  audit:
    sink: {kind: sqlite, path: audit.db}
    datasets:
      - {ref: shop.secret, mask: [note]}
"""


@pytest.fixture(scope="module")
def edge_cases(tmp_path_factory: pytest.TempPathFactory) -> ModelIndex:
    root = write_files(tmp_path_factory.mktemp("edges"), {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": SHOP, "teams/bi/bi.yaml": BI,
        "teams/lab/lab.yaml": LAB, "teams/ops/ops.yaml": OPS,
    })
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    return ModelIndex(loaded.ecosystem)


def test_the_catalog_is_for_everyone_logged_in() -> None:
    assert can_see_metadata(person("viewer"))
    assert can_see_metadata(person("member"))
    assert not can_see_metadata(None)


def test_an_admin_sees_every_row_of_every_dataset(acme: ModelIndex) -> None:
    access = row_access(acme, ADMIN, "shop.customers")
    every = tuple(acme.datasets["shop.customers"].spec.columns)
    assert access == RowAccess(every, None, (), "admin")
    assert access.unrestricted


def test_a_member_of_the_owning_team_sees_everything(acme: ModelIndex) -> None:
    access = row_access(acme, person("member", "shop"), "shop.customers")
    assert access is not None and access.unrestricted
    assert access.columns == tuple(acme.datasets["shop.customers"].spec.columns)
    assert access.reason == "member of team shop (owner)"


def test_a_receiving_team_sees_what_its_consumer_receives(acme: ModelIndex) -> None:
    research = row_access(acme, person("member", "research"), "shop.orders")
    assert research == RowAccess(("id", "product_id", "amount", "currency", "ordered_at"),
                                 "amount > 0", (), "consumer research.lake receives it",
                                 "research.lake")
    marketing = row_access(acme, person("member", "marketing"), "shop.customers")
    assert marketing is not None
    assert marketing.columns == ("id", "country", "email", "updated_at")
    assert marketing.mask == ("email",) and marketing.where is None
    # No column subset: every column, still masked as the need says.
    finance = row_access(acme, person("member", "finance"), "shop.customers")
    assert finance is not None and finance.consumer == "finance.ledger"
    assert finance.columns == tuple(acme.datasets["shop.customers"].spec.columns)
    assert finance.mask == ("email",)


def test_owning_wins_over_receiving(acme: ModelIndex) -> None:
    access = row_access(acme, person("member", "research", "shop"), "shop.orders")
    assert access is not None and access.unrestricted


def test_unrelated_members_viewers_and_unknown_refs_get_nothing(acme: ModelIndex) -> None:
    assert row_access(acme, person("member", "research"), "shop.customers") is None
    assert row_access(acme, person("member"), "shop.orders") is None
    # A viewer sees no rows even when it is listed in a team.
    assert row_access(acme, person("viewer", "shop"), "shop.orders") is None
    for who in (ADMIN, person("member", "shop")):
        assert row_access(acme, who, "shop.nope") is None
        assert row_accesses(acme, who, "not a ref") == []


def test_several_needs_are_never_combined(edge_cases: ModelIndex) -> None:
    grants = row_accesses(edge_cases, person("member", "bi"), "shop.orders")
    assert [g.consumer for g in grants] == ["bi.wide", "bi.narrow"]
    chosen = row_access(edge_cases, person("member", "bi"), "shop.orders")
    # The widest need, with its own filter: narrow's lack of a filter does not carry over.
    assert chosen == grants[0]
    assert chosen.columns == ("id", "customer", "amount") and chosen.where == "amount > 10"


def test_a_transformer_reading_a_dataset_grants_no_rows(edge_cases: ModelIndex) -> None:
    assert row_access(edge_cases, person("member", "lab"), "shop.orders") is None


def test_a_need_the_producer_did_not_approve_grants_nothing(edge_cases: ModelIndex) -> None:
    assert row_access(edge_cases, person("member", "bi"), "shop.secret") is None
    audit = row_access(edge_cases, person("member", "ops"), "shop.secret")
    assert audit is not None and audit.mask == ("note",)


def test_job_ownership(acme: ModelIndex) -> None:
    assert job_team(acme, "ingest:shop.orders") == "shop"
    assert job_team(acme, "transform:finance.revenue_eur") == "finance"
    assert job_team(acme, "deliver:research.lake:orders_positive") == "research"
    for unknown in ("ingest:shop.nope", "ingest:shop.customer_revenue",  # wrong kind
                    "transform:shop.orders", "deliver:research.lake:nope",
                    "deliver:research.nope:orders", "deliver:research.lake", "run:x", ""):
        assert job_team(acme, unknown) is None, unknown


def test_who_may_trigger_a_job(acme: ModelIndex) -> None:
    shop, research = person("member", "shop"), person("member", "research")
    assert can_trigger(acme, shop, "ingest:shop.orders")
    assert can_trigger(acme, shop, "transform:shop.customer_revenue")
    assert can_trigger(acme, shop, "deliver:shop.reporting:orders")
    # The producing team does not run another team's delivery; the consumer's team does.
    assert not can_trigger(acme, shop, "deliver:research.lake:orders_positive")
    assert can_trigger(acme, research, "deliver:research.lake:orders_positive")
    assert not can_trigger(acme, research, "ingest:shop.orders")
    assert not can_trigger(acme, person("viewer", "shop"), "ingest:shop.orders")
    assert not can_trigger(acme, ADMIN, "ingest:shop.nope")  # unknown: no one, not even admins


def test_every_job_of_the_graph_belongs_to_a_team(acme: ModelIndex) -> None:
    jobs = build_graph(acme, everything=True).jobs.values()
    assert jobs
    for job in jobs:
        team = job_team(acme, job)
        assert team is not None, job.id
        assert can_trigger(acme, ADMIN, job)
        assert can_trigger(acme, person("member", team), job)
        others = set(acme.ecosystem.teams) - {team}
        assert not can_trigger(acme, person("member", *others), job)


def test_a_teams_owners_are_its_members_whatever_the_case_of_their_address(
        acme: ModelIndex) -> None:
    assert model_teams(acme, "Alice@ACME.example") == {"shop"}
    assert model_teams(acme, "bob@acme.example") == {"shop"}
    assert model_teams(acme, "carol@acme.example") == {"finance"}
    assert model_teams(acme, "mallory@acme.example") == model_teams(acme, None) == set()
    model_teams(acme, "alice@acme.example").add("finance")  # the caller's own set
    assert model_teams(acme, "alice@acme.example") == {"shop"}
