"""The lineage picture: valid SVG, laid out left to right, and text stays text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from dataferry.model.scaffold import create_example
from dataferry.server.catalog import lineage
from dataferry.server.lineage_svg import render_svg

SVG = "{http://www.w3.org/2000/svg}"


def node(node_id: str, kind: str = "source-dataset", *, focus: bool = False,
         label: str | None = None, team: str = "shop") -> dict[str, object]:
    return {"id": node_id, "kind": kind, "label": label or node_id, "team": team,
            "focus": focus}


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def boxes(root: ET.Element) -> dict[str, tuple[float, float]]:
    """Label -> (x, y) of each node's box."""
    out = {}
    for group in root.iter(f"{SVG}g"):
        if "node" not in (group.get("class") or "").split():
            continue
        rect = group.find(f"{SVG}rect")
        label = group.find(f"{SVG}text")
        assert rect is not None and label is not None and label.text is not None
        out[label.text] = (float(rect.get("x", "0")), float(rect.get("y", "0")))
    return out


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> ModelIndex:
    root = tmp_path_factory.mktemp("acme")
    create_example(root, force=True)
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    return ModelIndex(loaded.ecosystem)


def test_the_example_lineage_is_drawn_left_to_right(acme: ModelIndex) -> None:
    graph = lineage(acme, "finance.revenue_eur")
    assert graph is not None
    root = parse(render_svg(graph, "Lineage of finance.revenue_eur"))
    at = boxes(root)
    assert set(at) == {"shop.orders", "finance.fx_rates", "finance.revenue_eur",
                       "finance.warehouse"}
    assert at["shop.orders"][0] == at["finance.fx_rates"][0] < at["finance.revenue_eur"][0] \
        < at["finance.warehouse"][0]
    edges = [p for p in root.iter(f"{SVG}path") if p.get("class") == "edge"]
    assert len(edges) == len(graph["edges"]) == 3
    focused = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node focus"]
    assert len(focused) == 1
    assert focused[0].findtext(f"{SVG}text") == "finance.revenue_eur"
    assert root.findtext(f"{SVG}title") == "Lineage of finance.revenue_eur"


def test_every_dataset_of_the_example_renders(acme: ModelIndex) -> None:
    for ref in acme.datasets:
        graph = lineage(acme, ref)
        assert graph is not None
        assert len(boxes(parse(render_svg(graph)))) == len(graph["nodes"])


def test_an_edge_that_skips_a_column_runs_through_a_free_slot() -> None:
    graph = {"nodes": [node("a", focus=True), node("t", "transformer"), node("c", "consumer")],
             "edges": [{"from": "a", "to": "t"}, {"from": "t", "to": "c"},
                       {"from": "a", "to": "c"}]}
    root = parse(render_svg(graph))
    at = boxes(root)
    assert at["a"][0] < at["t"][0] < at["c"][0]
    long_edge = [p.get("d", "") for p in root.iter(f"{SVG}path")
                 if p.get("class") == "edge"][2]
    # It passes the middle column at a height no box there occupies.
    heights = [float(y) for y in re.findall(r"L[\d.]+,([\d.]+)", long_edge)]
    assert heights and all(abs(h - 20 - at["t"][1]) > 20 for h in heights)


def test_labels_cannot_inject_markup() -> None:
    evil = '<script>alert("x")</script>'
    graph = {"nodes": [node("a", label=evil, team='"><svg onload=alert(1)>', focus=True),
                       node("b", "&amp; <b>", label="x & y")],
             "edges": [{"from": "a", "to": "b"}]}
    svg = render_svg(graph, title='</title><script>alert(2)</script>')
    assert "<script" not in svg and "<svg onload" not in svg
    root = parse(svg)
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    assert not [name for e in root.iter() for name in e.attrib if name.startswith("on")]
    assert evil in boxes(root) and "x & y" in boxes(root)
    assert len([e for e in root.iter() if e.tag == f"{SVG}svg"]) == 1


def test_empty_and_cyclic_graphs_still_render() -> None:
    empty = parse(render_svg({"nodes": [], "edges": []}))
    assert "no lineage" in "".join(empty.itertext())
    cycle = {"nodes": [node("a"), node("b")],
             "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"},
                       {"from": "a", "to": "gone"}]}
    assert set(boxes(parse(render_svg(cycle)))) == {"a", "b"}
