"""A result's neighbourhood as an interactive graph: one self-contained HTML page (SVG + inline script).

No CDN and no extra package: the layout is computed here with networkx, and a small script makes the
drawing interactive (drag nodes, pan, wheel zoom, hover for details, click a node to focus on it, show the
explanation path alone). Every string from the collection reaches the page as JSON data and is set with
`textContent`, never as markup, so a caption cannot inject HTML or script.
"""

from __future__ import annotations

import json
import math
from typing import Any

import networkx as nx

from mmkg.ui.logic import GraphView

WIDTH = 1000
HEIGHT = 520
MARGIN_X = (190, 170)
"""Left and right margins: labels are drawn right of their node (the query's, on its left)."""
MARGIN_Y = 40

COLOURS = {
    "Query": "#e4572e",
    "Image": "#2f6db5",
    "Text": "#2a9d5c",
    "Entity": "#8e6cc7",
    "Record": "#7a7f87",
}
PATH_COLOUR = "#e4572e"


def layout(view: GraphView, width: int = WIDTH, height: int = HEIGHT, seed: int = 7) -> dict[str, tuple[float, float]]:
    """Positions in pixels: the result in the middle, the query (when on a path) to the left, springs elsewhere."""
    g = nx.Graph()
    g.add_nodes_from(view.nodes)
    for e in view.edges:
        g.add_edge(e["src"], e["dst"], weight=3.0 if e.get("path") else 1.0)
    if g.number_of_nodes() == 0:
        return {}
    init: dict[str, tuple[float, float]] = {}
    fixed = []
    if view.center in g:
        init[view.center] = (0.0, 0.0)
        fixed.append(view.center)
    if "query" in g:
        init["query"] = (-1.4, 0.0)
        fixed.append("query")
    n = g.number_of_nodes()
    if n == 1:
        pos = {next(iter(g.nodes)): (0.0, 0.0)}
    else:
        rng_pos = nx.random_layout(g, seed=seed)
        start = {k: (float(v[0]) * 2 - 1, float(v[1]) * 2 - 1) for k, v in rng_pos.items()}
        start.update(init)
        raw = nx.spring_layout(
            g, pos=start, fixed=fixed or None, seed=seed, k=1.6 / math.sqrt(n), iterations=200, weight="weight"
        )
        pos = {k: (float(v[0]), float(v[1])) for k, v in raw.items()}
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    span_x = max(max(xs) - min(xs), 1e-9)
    span_y = max(max(ys) - min(ys), 1e-9)
    # Fill the drawing: x and y scaled apart, but never more than twice one another (keeps the shape readable).
    inner_w = width - MARGIN_X[0] - MARGIN_X[1]
    sx = inner_w / span_x
    sy = (height - 2 * MARGIN_Y) / span_y
    sx, sy = min(sx, 2 * sy), min(sy, 2 * sx)
    cx = (max(xs) + min(xs)) / 2
    cy = (max(ys) + min(ys)) / 2
    mid_x = MARGIN_X[0] + inner_w / 2
    return {k: (round(mid_x + (x - cx) * sx, 1), round(height / 2 + (y - cy) * sy, 1)) for k, (x, y) in pos.items()}


def graph_payload(view: GraphView, width: int = WIDTH, height: int = HEIGHT) -> dict[str, Any]:
    pos = layout(view, width, height)
    nodes = []
    for nid, n in view.nodes.items():
        x, y = pos.get(nid, (width / 2, height / 2))
        nodes.append({**n, "x": x, "y": y})
    return {"width": width, "height": height, "center": view.center, "nodes": nodes, "edges": view.edges}


def _script_json(obj: Any) -> str:
    """JSON safe to place inside a <script> element (no `</script>`, no `<!--`)."""
    return (
        json.dumps(obj, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def render_html(view: GraphView, width: int = WIDTH, height: int = HEIGHT) -> str:
    """The whole page for `st.iframe`."""
    data = graph_payload(view, width, height)
    return (
        _PAGE.replace("__DATA__", _script_json(data))
        .replace("__COLOURS__", _script_json(COLOURS))
        .replace("__PATH__", PATH_COLOUR)
        .replace("__HEIGHT__", str(height))
    )


_PAGE = r"""<!doctype html>
<html><head><meta charset="utf-8">
<style>
  html, body { margin: 0; padding: 0; font-family: "Source Sans Pro", "DejaVu Sans", sans-serif; font-size: 13px; }
  #bar { display: flex; gap: 14px; align-items: center; flex-wrap: wrap; padding: 4px 2px 6px 2px; color: #31333f; }
  #bar .key { display: inline-flex; align-items: center; gap: 4px; }
  #bar .dot { width: 11px; height: 11px; border-radius: 50%; display: inline-block; }
  #bar .line { width: 18px; height: 0; border-top: 4px solid __PATH__; display: inline-block; }
  #bar button { font: inherit; padding: 2px 8px; border: 1px solid #c9ccd3; border-radius: 6px;
                background: #fff; cursor: pointer; }
  #bar label { cursor: pointer; }
  #wrap { position: relative; border: 1px solid #e2e4e9; border-radius: 8px; overflow: hidden; background: #fcfcfd; }
  svg { display: block; width: 100%; height: __HEIGHT__px; cursor: grab; touch-action: none; user-select: none; }
  svg.panning { cursor: grabbing; }
  .edge { stroke: #b8bcc6; stroke-width: 1.3; }
  .edge.path { stroke: __PATH__; stroke-width: 4; }
  .edge.hl { stroke: #31333f; stroke-width: 2.2; }
  .edge-label { font-size: 10px; fill: __PATH__; font-weight: 600; paint-order: stroke; stroke: #fff;
                stroke-width: 3px; }
  .node circle { stroke: #fff; stroke-width: 1.5; cursor: pointer; }
  .node.path circle { stroke: __PATH__; stroke-width: 4; }
  .node.center circle { stroke: #111; stroke-width: 3; }
  .node.path.center circle { stroke: __PATH__; stroke-width: 5; }
  .node text { font-size: 11px; fill: #262730; paint-order: stroke; stroke: #fcfcfd; stroke-width: 3px;
               pointer-events: none; }
  .node.path text { font-weight: 700; }
  .dim { opacity: 0.12; }
  #tip { position: absolute; pointer-events: none; background: rgba(38,39,48,.92); color: #fff; padding: 6px 8px;
         border-radius: 6px; max-width: 340px; font-size: 12px; display: none; white-space: pre-wrap;
         word-break: break-word; }
</style></head>
<body>
<div id="bar"></div>
<div id="wrap">
<svg id="svg" role="img" aria-label="graph neighbourhood of the result"><defs></defs><g id="vp"></g></svg>
<div id="tip"></div>
</div>
<script>
(function () {
  "use strict";
  var DATA = __DATA__;
  var COLOURS = __COLOURS__;
  var NS = "http://www.w3.org/2000/svg";
  var svg = document.getElementById("svg"), vp = document.getElementById("vp"), tip = document.getElementById("tip");
  var bar = document.getElementById("bar"), defs = svg.querySelector("defs");
  svg.setAttribute("viewBox", "0 0 " + DATA.width + " " + DATA.height);

  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  function marker(id, colour) {
    var m = el("marker", {id: id, viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7",
                          orient: "auto-start-reverse", markerUnits: "userSpaceOnUse"}, defs);
    el("path", {d: "M 0 0 L 10 5 L 0 10 z", fill: colour}, m);
  }
  marker("arrow", "#b8bcc6"); marker("arrow-path", "__PATH__"); marker("arrow-hl", "#31333f");

  // Legend and controls.
  var present = {};
  DATA.nodes.forEach(function (n) { present[n.label] = true; });
  Object.keys(COLOURS).forEach(function (label) {
    if (!present[label]) { return; }
    var k = document.createElement("span"); k.className = "key";
    var d = document.createElement("span"); d.className = "dot"; d.style.background = COLOURS[label];
    k.appendChild(d); k.appendChild(document.createTextNode(label)); bar.appendChild(k);
  });
  var hasPath = DATA.edges.some(function (e) { return e.path; });
  if (hasPath) {
    var kp = document.createElement("span"); kp.className = "key";
    var ln = document.createElement("span"); ln.className = "line";
    kp.appendChild(ln); kp.appendChild(document.createTextNode("explanation path")); bar.appendChild(kp);
    var lab = document.createElement("label");
    var cb = document.createElement("input"); cb.type = "checkbox"; cb.id = "path-only";
    lab.appendChild(cb); lab.appendChild(document.createTextNode(" path only")); bar.appendChild(lab);
    cb.addEventListener("change", function () { focusOn(null); });
  }
  var reset = document.createElement("button"); reset.type = "button"; reset.textContent = "Reset view";
  bar.appendChild(reset);
  var hint = document.createElement("span"); hint.style.color = "#808495";
  hint.textContent = "drag nodes · scroll to zoom · drag the background to pan · click a node to focus";
  bar.appendChild(hint);

  // Graph.
  var byId = {};
  DATA.nodes.forEach(function (n) { byId[n.id] = n; n.edges = []; });
  var edgeLayer = el("g", {}, vp), labelLayer = el("g", {}, vp), nodeLayer = el("g", {}, vp);
  DATA.edges.forEach(function (e) {
    var a = byId[e.src], b = byId[e.dst];
    if (!a || !b) { return; }
    e.a = a; e.b = b;
    e.line = el("line", {"class": "edge" + (e.path ? " path" : ""),
                         "marker-end": e.path ? "url(#arrow-path)" : "url(#arrow)",
                         "data-src": e.src, "data-dst": e.dst, "data-type": e.type}, edgeLayer);
    var t = el("title", {}, e.line);
    t.textContent = e.type + (e.weight !== null && e.weight !== undefined ? " (" + e.weight + ")" : "");
    if (e.path) {
      e.label = el("text", {"class": "edge-label", "text-anchor": "middle"}, labelLayer);
      e.label.textContent = e.type;
    }
    a.edges.push(e); b.edges.push(e);
  });
  function radius(n) { return n.label === "Query" ? 13 : n.center ? 14 : n.label === "Entity" ? 8 : 10; }
  function short(s, n) { s = String(s); return s.length > n ? s.slice(0, n - 1) + "\u2026" : s; }
  DATA.nodes.forEach(function (n) {
    var cls = "node" + (n.path ? " path" : "") + (n.center ? " center" : "");
    n.g = el("g", {"class": cls, "data-id": n.id, "data-label": n.label}, nodeLayer);
    var fill = COLOURS[n.label] || "#999";
    if (n.label === "Entity" && n.kind === "attribute") { fill = "#b8a3df"; }
    n.circle = el("circle", {r: radius(n), fill: fill}, n.g);
    var left = n.label === "Query";
    n.text = el("text", {x: left ? -(radius(n) + 4) : radius(n) + 4, y: 4, "text-anchor": left ? "end" : "start"}, n.g);
    n.text.textContent = short(n.name, n.label === "Query" ? 28 : n.center || n.path ? 34 : 22);
  });

  function place() {
    DATA.nodes.forEach(function (n) { n.g.setAttribute("transform", "translate(" + n.x + "," + n.y + ")"); });
    DATA.edges.forEach(function (e) {
      if (!e.line) { return; }
      var dx = e.b.x - e.a.x, dy = e.b.y - e.a.y, d = Math.sqrt(dx * dx + dy * dy) || 1;
      var ra = radius(e.a) + 1, rb = radius(e.b) + 3;
      e.line.setAttribute("x1", e.a.x + dx * ra / d); e.line.setAttribute("y1", e.a.y + dy * ra / d);
      e.line.setAttribute("x2", e.b.x - dx * rb / d); e.line.setAttribute("y2", e.b.y - dy * rb / d);
      if (e.label) {
        e.label.setAttribute("x", (e.a.x + e.b.x) / 2); e.label.setAttribute("y", (e.a.y + e.b.y) / 2 - 5);
      }
    });
  }
  place();

  // View transform: pan and zoom.
  var view = {x: 0, y: 0, k: 1};
  function applyView() {
    vp.setAttribute("transform", "translate(" + view.x + "," + view.y + ") scale(" + view.k + ")");
  }
  function toGraph(evt) {
    var r = svg.getBoundingClientRect();
    var sx = (evt.clientX - r.left) * DATA.width / r.width, sy = (evt.clientY - r.top) * DATA.height / r.height;
    return {x: (sx - view.x) / view.k, y: (sy - view.y) / view.k, sx: sx, sy: sy};
  }
  svg.addEventListener("wheel", function (evt) {
    evt.preventDefault();
    var p = toGraph(evt), f = evt.deltaY < 0 ? 1.15 : 1 / 1.15;
    var k = Math.min(6, Math.max(0.25, view.k * f));
    view.x = p.sx - p.x * k; view.y = p.sy - p.y * k; view.k = k; applyView();
  }, {passive: false});

  var drag = null;
  svg.addEventListener("pointerdown", function (evt) {
    var g = evt.target.closest ? evt.target.closest(".node") : null;
    var p = toGraph(evt);
    if (g) {
      var n = byId[g.getAttribute("data-id")];
      drag = {node: n, dx: n.x - p.x, dy: n.y - p.y, moved: false};
    } else {
      drag = {pan: true, x0: p.sx - view.x, y0: p.sy - view.y, moved: false};
      svg.classList.add("panning");
    }
    svg.setPointerCapture(evt.pointerId);
  });
  svg.addEventListener("pointermove", function (evt) {
    var p = toGraph(evt);
    if (drag) {
      drag.moved = true;
      if (drag.pan) { view.x = p.sx - drag.x0; view.y = p.sy - drag.y0; applyView(); }
      else { drag.node.x = p.x + drag.dx; drag.node.y = p.y + drag.dy; place(); }
      return;
    }
    var g = evt.target.closest ? evt.target.closest(".node") : null;
    if (g) { showTip(byId[g.getAttribute("data-id")], evt); } else { hideTip(); }
  });
  svg.addEventListener("pointerup", function (evt) {
    var d = drag; drag = null; svg.classList.remove("panning");
    if (!d || d.moved) { return; }
    if (d.node) { focusOn(focused === d.node ? null : d.node); } else { focusOn(null); }
  });
  svg.addEventListener("pointerleave", hideTip);

  function showTip(n, evt) {
    var lines = [n.label + (n.kind ? " (" + n.kind + ")" : ""), n.name, n.id];
    if (n.path) { lines.push("on the explanation path"); }
    tip.textContent = lines.join("\n");
    var r = svg.getBoundingClientRect();
    tip.style.left = Math.min(evt.clientX - r.left + 14, r.width - 250) + "px";
    tip.style.top = (evt.clientY - r.top + 14) + "px";
    tip.style.display = "block";
    n.edges.forEach(function (e) {
      if (e.line && !e.path) { e.line.classList.add("hl"); e.line.setAttribute("marker-end", "url(#arrow-hl)"); }
    });
    hovered = n;
  }
  var hovered = null;
  function hideTip() {
    tip.style.display = "none";
    if (hovered) {
      hovered.edges.forEach(function (e) {
        if (e.line && !e.path) { e.line.classList.remove("hl"); e.line.setAttribute("marker-end", "url(#arrow)"); }
      });
      hovered = null;
    }
  }

  var focused = null;
  function focusOn(n) {
    focused = n;
    var pathOnly = document.getElementById("path-only");
    pathOnly = pathOnly && pathOnly.checked;
    var keep = {};
    if (n) { keep[n.id] = true; n.edges.forEach(function (e) { keep[e.a.id] = true; keep[e.b.id] = true; }); }
    DATA.nodes.forEach(function (m) {
      var dim = (n && !keep[m.id]) || (pathOnly && !m.path);
      m.g.classList.toggle("dim", !!dim);
    });
    DATA.edges.forEach(function (e) {
      if (!e.line) { return; }
      var dim = (n && e.a !== n && e.b !== n) || (pathOnly && !e.path);
      e.line.classList.toggle("dim", !!dim);
      if (e.label) { e.label.classList.toggle("dim", !!dim); }
    });
  }
  reset.addEventListener("click", function () {
    view = {x: 0, y: 0, k: 1}; applyView();
    DATA.nodes.forEach(function (n) { n.x = n.x0; n.y = n.y0; }); place();
    var cbx = document.getElementById("path-only"); if (cbx) { cbx.checked = false; }
    focusOn(null);
  });
  DATA.nodes.forEach(function (n) { n.x0 = n.x; n.y0 = n.y; });
  document.body.setAttribute("data-ready", "1");
})();
</script>
</body></html>
"""
