"""The job graph: P + T + C jobs, dependencies first."""

from __future__ import annotations

import pytest

from dataferry.broker.graph import build_graph, select
from dataferry.errors import UsageError
from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from dataferry.model.scaffold import create_example


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> ModelIndex:
    root = tmp_path_factory.mktemp("acme")
    create_example(root, force=True)
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    return ModelIndex(loaded.ecosystem)


def test_one_ingest_per_dataset_however_many_consumers(index: ModelIndex) -> None:
    graph = build_graph(index)
    kinds = [job.kind for job in graph.jobs.values()]
    needs = sum(len(c.datasets) for _, _, c in index.consumers.values()
                if c.sink.kind != "share")
    transformers = sum(1 for e in index.datasets.values() if e.is_transformer)
    assert kinds.count("deliver") == needs
    assert kinds.count("transform") == transformers
    # shop.orders is read by 4 consumers and 3 transformers: still one ingest
    assert [j.id for j in graph.jobs.values() if j.dataset == "shop.orders" and j.kind == "ingest"] == ["ingest:shop.orders"]
    assert "ingest:shop.stock" not in graph.jobs  # nobody needs it and it has no schedule


def test_order_and_selection(index: ModelIndex) -> None:
    graph = build_graph(index)
    jobs = select(graph, index, ["shop.reporting"], downstream=False)
    ids = [j.id for j in jobs]
    assert ids.index("ingest:shop.orders") < ids.index("transform:shop.customer_revenue")
    assert ids.index("transform:shop.customer_revenue") < ids.index("deliver:shop.reporting:customer_revenue")
    assert all(j.kind != "deliver" or j.consumer == "shop.reporting" for j in jobs)
    stock = select(graph, index, ["shop.stock"], downstream=False)
    assert [j.id for j in stock] == ["ingest:shop.stock"]
    downstream = {j.id for j in select(graph, index, ["shop.orders"], downstream=True)}
    assert "deliver:research.lake:daily_sales" in downstream
    with pytest.raises(UsageError, match=r"did you mean 'shop\.orders'"):
        select(graph, index, ["shop.ordrs"], downstream=False)


def test_jobs_in_a_private_network_go_to_its_platform(index: ModelIndex) -> None:
    graph = build_graph(index)
    assert graph.jobs["ingest:finance.invoices"].platform == "hq-lan"
    assert "network hq-lan" in graph.jobs["ingest:finance.invoices"].why
    assert graph.jobs["ingest:shop.orders"].platform == "local"


def test_a_share_consumer_gets_no_delivery_but_its_data_is_produced(index: ModelIndex) -> None:
    graph = build_graph(index)
    assert index.consumers["research.notebooks"][2].sink.kind == "share"
    assert not [j for j in graph.jobs.values() if j.consumer == "research.notebooks"]
    assert "transform:shop.daily_sales" in graph.jobs
    # running the consumer brings what it reads up to date, and delivers nothing
    ids = [j.id for j in select(graph, index, ["research.notebooks"], downstream=False)]
    assert ids[-1] == "transform:shop.daily_sales"
    assert all(not i.startswith("deliver:") for i in ids)
