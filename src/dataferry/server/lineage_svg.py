"""The lineage graph as a picture: one self-contained SVG for the dataset page.

Server-side drawing keeps the web UI free of a JavaScript graph library and a build
step, and the same picture works in the docs and in a browser with scripts off. The
layout is the classic layered one: each node goes one column right of its furthest
upstream node (the longest path), so data flows left to right; within a column nodes
are ordered by the mean row of their upstream nodes, which removes most crossings of
small lineage graphs.

Every piece of text is escaped, and colours and shapes come from fixed tables, so a
label such as ``<script>`` stays text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

_CHAR_WIDTH = 7.2  # px per character at font-size 12 (sans-serif, a generous average)
_BOX_HEIGHT = 40
_PAD_X = 12
_GAP_X = 70  # between columns (room for the arrows)
_GAP_Y = 18
_MARGIN = 16
_LEGEND = 28

# kind -> (fill, stroke, what the legend calls it); unknown kinds draw as "other".
_STYLES = {
    "source-dataset": ("#e8f1fb", "#3b6ea8", "source dataset"),
    "transformer": ("#f1eafa", "#7048a8", "transformer output"),
    "consumer": ("#e9f6ec", "#2f7d46", "consumer"),
}
_OTHER = ("#f3f3f3", "#777777", "other")


def render_svg(graph: Mapping[str, Any], title: str = "Lineage") -> str:
    """An SVG document of a ``catalog.lineage`` graph; the node with ``focus`` is drawn
    highlighted. Nodes need ``id`` and ``label``; ``kind`` and ``team`` are optional."""
    nodes: list[Mapping[str, Any]] = list(graph.get("nodes", []))
    by_id = {str(n["id"]): n for n in nodes}
    edges = list(dict.fromkeys((str(e["from"]), str(e["to"])) for e in graph.get("edges", [])
                               if str(e["from"]) in by_id and str(e["to"]) in by_id))
    if not nodes:
        return _document(240, 60, title, ['<text x="16" y="34" class="empty">'
                                          "no lineage to show</text>"])
    columns, routes = _layout(list(by_id), edges)
    widths = [max(_box_width(by_id[i]) for i in column if i in by_id) for column in columns]
    tallest = max(len(c) for c in columns)
    slot = _BOX_HEIGHT + _GAP_Y
    place: dict[str, tuple[float, float, float]] = {}  # id -> x, y, width
    x = float(_MARGIN)
    for column, width in zip(columns, widths, strict=True):
        top = _MARGIN + _LEGEND + (tallest - len(column)) * slot / 2  # centred columns
        for row, node_id in enumerate(column):
            place[node_id] = (x, top + row * slot, width)
        x += width + _GAP_X
    parts = [_legend()]
    parts += [_arrow([place[i] for i in route]) for route in routes]
    parts += [_box(by_id[i], place[i]) for column in columns for i in column if i in by_id]
    width = max(x - _GAP_X + _MARGIN, 420)
    return _document(width, _MARGIN * 2 + _LEGEND + tallest * slot - _GAP_Y, title, parts)


def _layout(ids: list[str], edges: list[tuple[str, str]]
            ) -> tuple[list[list[str]], list[list[str]]]:
    """Columns of node ids, and each edge as the ids it passes through.

    A node's column is the longest path to it from a node without inputs. An edge that
    spans several columns gets a placeholder in each column it crosses (a free slot it
    runs through), so it never runs under a box.
    """
    layer = dict.fromkeys(ids, 0)
    for _ in range(len(ids)):  # relax; bounded, so a cycle cannot hang it
        changed = False
        for source, target in edges:
            if layer[target] < layer[source] + 1 <= len(ids):
                layer[target], changed = layer[source] + 1, True
        if not changed:
            break
    columns: list[list[str]] = [[] for _ in range(max(layer.values()) + 1)]
    for node_id in ids:
        columns[layer[node_id]].append(node_id)
    upstream: dict[str, list[str]] = {i: [] for i in ids}
    routes = []
    for number, (source, target) in enumerate(edges):
        route = [source]
        step = 1 if layer[target] > layer[source] else -1
        for crossed in range(layer[source] + step, layer[target], step):
            via = f"\0edge{number}:{crossed}"  # cannot clash with a node id from the model
            columns[crossed].append(via)
            upstream[via] = [route[-1]]
            route.append(via)
        upstream[target].append(route[-1])
        routes.append([*route, target])
    row: dict[str, float] = {}

    def mean_row(node_id: str) -> tuple[float, str]:
        above = [row[u] for u in upstream[node_id] if u in row]
        return (sum(above) / len(above) if above else -1.0, node_id)

    for column in columns:  # order each column by the mean row of what feeds it
        column.sort(key=mean_row)
        row.update((node_id, float(i)) for i, node_id in enumerate(column))
    return [c for c in columns if c], routes


def _box_width(node: Mapping[str, Any]) -> float:
    text = max(len(str(node.get("label", ""))), len(_subtitle(node)))
    return max(120.0, text * _CHAR_WIDTH + 2 * _PAD_X)


def _subtitle(node: Mapping[str, Any]) -> str:
    kind = _STYLES.get(str(node.get("kind")), _OTHER)[2]
    team = node.get("team")
    return f"{kind} · team {team}" if team else kind


def _box(node: Mapping[str, Any], at: tuple[float, float, float]) -> str:
    x, y, width = at
    fill, stroke, _ = _STYLES.get(str(node.get("kind")), _OTHER)
    focus = bool(node.get("focus"))
    label = str(node.get("label", node["id"]))
    return (
        f'<g class="node{" focus" if focus else ""}">'
        f"<title>{escape(label)} ({escape(_subtitle(node))})</title>"
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{_BOX_HEIGHT}" rx="6" '
        f'fill="{"#fff4cc" if focus else fill}" stroke="{"#b8860b" if focus else stroke}" '
        f'stroke-width="{3 if focus else 1.2}"/>'
        f'<text x="{x + _PAD_X:.1f}" y="{y + 17:.1f}" class="label">{escape(label)}</text>'
        f'<text x="{x + _PAD_X:.1f}" y="{y + 32:.1f}" class="sub">'
        f"{escape(_subtitle(node))}</text></g>"
    )


def _arrow(route: list[tuple[float, float, float]]) -> str:
    """A smooth path from the right side of the first box to the left of the last,
    passing straight through the slots of the columns in between."""
    (x, y, width), *rest = route
    x, y = x + width, y + _BOX_HEIGHT / 2
    path = [f"M{x:.1f},{y:.1f}"]
    for number, (tx, ty, tw) in enumerate(rest):
        last = number == len(rest) - 1
        x2, y2 = (tx - 2 if last else tx), ty + _BOX_HEIGHT / 2
        bend = max(30.0, abs(x2 - x) / 2)
        path.append(f"C{x + bend:.1f},{y:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}")
        if not last:  # through the placeholder's slot
            x, y = tx + tw, y2
            path.append(f"L{x:.1f},{y:.1f}")
    return f'<path d="{" ".join(path)}" class="edge" marker-end="url(#ferry-arrow)"/>'


def _legend() -> str:
    parts, x = [], float(_MARGIN)
    for fill, stroke, name in (*_STYLES.values(), ("#fff4cc", "#b8860b", "this dataset")):
        parts.append(f'<rect x="{x:.1f}" y="{_MARGIN - 2}" width="12" height="12" rx="2" '
                     f'fill="{fill}" stroke="{stroke}"/>'
                     f'<text x="{x + 17:.1f}" y="{_MARGIN + 8}" class="sub">{name}</text>')
        x += 17 + len(name) * 6.2 + 18
    return '<g class="legend">' + "".join(parts) + "</g>"


def _document(width: float, height: float, title: str, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label={quoteattr(title)}>'
        f"<title>{escape(title)}</title>"
        "<defs><marker id=\"ferry-arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" "
        "markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\">"
        "<path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker>"
        "<style>text{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;fill:#222}"
        ".label{font-size:12px;font-weight:600}.sub{font-size:10px;fill:#555}"
        ".empty{font-size:13px;fill:#777}"
        ".edge{fill:none;stroke:#777;stroke-width:1.4}</style></defs>"
        + "".join(parts) + "</svg>"
    )
