"""The on-call dashboard, served by the gateway: ``GET /dashboard`` (a page with no data, no
auth) and ``GET /api/dashboard`` (the data, bearer auth).

The data is the report ``relief-ops status --json`` prints (``services.ops.report``), so the
page and the command line show the same figures and the same problems. Thresholds can be
given as query parameters with the command line's syntax (``?max_age=4h&max_depth=500``);
the page passes its own query on.

Auth in a browser: the page asks for the operator token once and keeps it in
``sessionStorage`` (this tab only, gone when it closes). A link may carry it in the fragment
(``/dashboard#token=...``): browsers never send the fragment to a server, so it stays out of
access logs, proxies and ``Referer`` headers; the page removes it from the address bar at
once. The token only ever travels in the ``Authorization`` header of the data request.
Charts are inline SVG drawn by the page's own script: no CDN, no external request.
"""

from __future__ import annotations

import secrets
from typing import Any

from nameko.web.handlers import http
from werkzeug.wrappers import Response

from services.common.config import settings
from services.common.deps import call
from services.common.topology import Management
from services.gateway.http import authorised, error, respond
from services.gateway.status import queue_rows
from services.ops.report import Thresholds, build_report


def dashboard_report(config: dict[str, Any], matching: Any,
                     thresholds: Thresholds) -> dict[str, Any]:
    """Read the broker and matching; a source that fails becomes a named problem."""
    cfg = settings(config)
    errors: dict[str, str] = {}
    queues = needs = None
    try:
        queues = queue_rows(Management(cfg.management_uri, config["AMQP_URI"]).queues())
    except Exception as exc:  # noqa: BLE001 - shown on the page as a problem
        errors["broker"] = f"management API unreachable ({type(exc).__name__})"
    try:
        needs = call(matching, "needs_overview")
    except Exception as exc:  # noqa: BLE001 - shown on the page as a problem
        errors["matching"] = f"needs overview unavailable ({type(exc).__name__}: {exc})"
    return build_report(queues, needs, thresholds=thresholds, errors=errors)


class DashboardRoutes:
    """Mixed into the gateway service: ``GET /dashboard`` and ``GET /api/dashboard``."""

    @http("GET", "/dashboard")
    def dashboard_page(self, request: Any) -> Response:
        nonce = secrets.token_urlsafe(16)
        return Response(page(nonce), status=200, mimetype="text/html", headers={
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                "form-action 'none'; frame-ancestors 'none'"),
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        })

    @http("GET", "/api/dashboard")
    @authorised
    def dashboard_data(self, request: Any) -> Response:
        try:
            thresholds = Thresholds.from_options(
                request.args.get("max_depth"), request.args.get("max_dead_letters"),
                request.args.getlist("max_age") or None)
        except ValueError as exc:
            return error(400, str(exc))
        report = dashboard_report(self.config_, self.matching, thresholds)
        return respond(200, report, {"Cache-Control": "no-store"})


def page(nonce: str) -> str:
    return PAGE.replace("{{nonce}}", nonce)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Relief Exchange - on-call</title>
<style nonce="{{nonce}}">
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #f4f5f7; }
  header { display: flex; gap: 16px; align-items: baseline; padding: 12px 20px;
           background: #263238; color: #fff; }
  header h1 { font-size: 18px; margin: 0; }
  #verdict { font-weight: 600; padding: 2px 10px; border-radius: 10px; }
  body[data-state=ok] #verdict { background: #2e7d32; }
  body[data-state=problems] #verdict, body[data-state=error] #verdict { background: #c62828; }
  main { padding: 12px 20px; }
  #login { margin: 24px 0; }
  #message { color: #c62828; min-height: 1em; }
  #problems li { color: #b71c1c; font-weight: 600; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr));
          gap: 12px; }
  figure.chart { background: #fff; margin: 0; padding: 8px 12px; border-radius: 6px;
                 box-shadow: 0 1px 2px rgba(0,0,0,.15); }
  figure.chart figcaption { font-weight: 600; margin-bottom: 4px; }
  figure.chart .plot { background: #fff; min-height: 200px; }
  figure.chart svg { display: block; width: 100%; height: auto; }
  svg text { font: 11px system-ui, sans-serif; fill: #37474f; }
  table { border-collapse: collapse; background: #fff; margin: 12px 0; }
  th, td { padding: 3px 8px; border-bottom: 1px solid #e0e0e0; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  tr.dlq td { color: #8d6e63; }
  tr.bad td { background: #ffebee; }
</style>
</head>
<body data-state="loading">
<header>
  <h1>Relief Exchange &middot; on-call</h1>
  <span id="verdict">loading</span>
  <span id="checked"></span>
</header>
<main>
  <form id="login" hidden>
    <label>Operator token <input id="token" type="password" autocomplete="off" size="40">
    </label>
    <button type="submit">Show</button>
  </form>
  <p id="message"></p>
  <ul id="problems"></ul>
  <div class="grid">
    <figure class="chart" id="chart-needs"><figcaption>Open needs by tier and urgency
      </figcaption><div class="plot"></div></figure>
    <figure class="chart" id="chart-supply"><figcaption>Supply available by category
      </figcaption><div class="plot"></div></figure>
    <figure class="chart" id="chart-assignments"><figcaption>Assignments per hour (UTC), last
      24 h</figcaption><div class="plot"></div></figure>
    <figure class="chart" id="chart-queues"><figcaption>Queue depths (ready, unacked, dead
      letters)</figcaption><div class="plot"></div></figure>
  </div>
  <h2>Oldest open need per tier</h2>
  <table id="needs"><thead><tr><th>tier</th><th>critical</th><th>high</th><th>normal</th>
    <th>low</th><th>oldest open</th><th>age</th><th>urgency</th><th>category</th>
    <th>community</th></tr></thead><tbody></tbody></table>
  <h2>Queues</h2>
  <table id="queues"><thead><tr><th>queue</th><th>depth</th><th>ready</th><th>unacked</th>
    <th>consumers</th><th>publish/s</th><th>ack/s</th><th>dead letters</th></tr></thead>
    <tbody></tbody></table>
</main>
<script nonce="{{nonce}}">
(function () {
  'use strict';
  var KEY = 'relief-ops-token';
  var TIERS = ['community', 'street', 'district'];
  var URGENCY = [['critical', '#b71c1c'], ['high', '#ef6c00'], ['normal', '#1565c0'],
                 ['low', '#78909c']];
  var QUEUE_SERIES = [['ready', '#00838f'], ['unacked', '#f9a825'],
                      ['dead_letters', '#c62828']];
  var SUPPLY_COLOUR = '#2e7d32', ASSIGN_COLOUR = '#6a1b9a';
  var SVGNS = 'http://www.w3.org/2000/svg';
  var params = new URLSearchParams(location.search);
  var refresh = Math.max(2, Number(params.get('refresh')) || 10);
  var query = new URLSearchParams();
  ['max_depth', 'max_dead_letters', 'max_age'].forEach(function (k) {
    params.getAll(k).forEach(function (v) { query.append(k, v); });
  });
  // a token in the fragment is kept for this tab and removed from the address bar
  var fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get('token')) {
    sessionStorage.setItem(KEY, fragment.get('token'));
    history.replaceState(null, '', location.pathname + location.search);
  }
  var timer = null;
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, parent, text) {
    var node = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function html(tag, parent, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }
  function canvas(id, height) {
    var plot = $(id).querySelector('.plot');
    plot.textContent = '';
    return el('svg', {viewBox: '0 0 560 ' + height, width: 560, height: height,
                      'shape-rendering': 'crispEdges', role: 'img'}, plot);
  }
  function fmtAge(s) {
    if (s === null || s === undefined) return '-';
    s = Math.max(0, Math.floor(s));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
        m = Math.floor(s % 3600 / 60);
    if (d) return d + 'd ' + String(h).padStart(2, '0') + 'h';
    if (h) return h + 'h ' + String(m).padStart(2, '0') + 'm';
    if (m) return m + 'm ' + String(s % 60).padStart(2, '0') + 's';
    return s + 's';
  }
  function niceMax(v) {
    if (v <= 0) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }
  function bar(svg, x, y, w, h, fill, data, label) {
    if (w <= 0 || h <= 0) return;
    var r = el('rect', {x: x, y: y, width: w, height: h, fill: fill}, svg);
    Object.keys(data).forEach(function (k) { r.setAttribute('data-' + k, data[k]); });
    el('title', {}, r, label);
  }

  function drawNeeds(needs) {
    var svg = canvas('chart-needs', 240);
    var open = needs.open_needs || {};
    var totals = TIERS.map(function (t) {
      return URGENCY.reduce(function (n, u) { return n + ((open[t] || {})[u[0]] || 0); }, 0);
    });
    var max = niceMax(Math.max.apply(null, totals));
    var top = 24, base = 200, colW = 90;
    el('line', {x1: 50, y1: base, x2: 420, y2: base, stroke: '#90a4ae'}, svg);
    el('text', {x: 44, y: top + 4, 'text-anchor': 'end'}, svg, String(max));
    el('text', {x: 44, y: base, 'text-anchor': 'end'}, svg, '0');
    TIERS.forEach(function (tier, i) {
      var x = 70 + i * 120, y = base;
      URGENCY.forEach(function (u) {
        var n = (open[tier] || {})[u[0]] || 0;
        var h = Math.round(n / max * (base - top));
        y -= h;
        bar(svg, x, y, colW, h, u[1], {tier: tier, urgency: u[0], value: n},
            tier + ', ' + u[0] + ': ' + n);
      });
      el('text', {x: x + colW / 2, y: base + 16, 'text-anchor': 'middle'}, svg, tier);
      el('text', {x: x + colW / 2, y: y - 4, 'text-anchor': 'middle', 'data-total': tier},
         svg, String(totals[i]));
    });
    URGENCY.forEach(function (u, i) {
      el('rect', {x: 440, y: top + i * 18, width: 10, height: 10, fill: u[1]}, svg);
      el('text', {x: 456, y: top + i * 18 + 9}, svg, u[0]);
    });
  }

  function drawSupply(supply) {
    var rows = supply || [];
    var svg = canvas('chart-supply', Math.max(60, 12 + rows.length * 22));
    if (!rows.length) { el('text', {x: 10, y: 30}, svg, 'no supply recorded'); return; }
    // quantities in different units cannot share a scale: each unit gets its own
    var maxBy = {};
    rows.forEach(function (r) { maxBy[r.unit] = Math.max(maxBy[r.unit] || 0, r.available); });
    rows.forEach(function (r, i) {
      var y = 8 + i * 22, w = maxBy[r.unit] > 0 ? Math.round(r.available / maxBy[r.unit] * 300)
                                                : 0;
      el('text', {x: 150, y: y + 13, 'text-anchor': 'end'}, svg, r.category + ' (' + r.unit + ')');
      bar(svg, 158, y, w, 16, SUPPLY_COLOUR,
          {category: r.category, unit: r.unit, value: r.available},
          r.category + ': ' + r.available + ' ' + r.unit);
      el('text', {x: 164 + w, y: y + 13, 'data-supply': r.category + '/' + r.unit}, svg,
         String(r.available));
    });
  }

  function drawAssignments(hours, checkedAt) {
    var svg = canvas('chart-assignments', 220);
    var counts = {};
    (hours || []).forEach(function (h) { counts[h.hour] = h.count; });
    var end = new Date(checkedAt).getTime();
    Object.keys(counts).forEach(function (k) {
      end = Math.max(end, new Date(k + ':00Z').getTime());
    });
    var slots = [];
    for (var i = 23; i >= 0; i--) {
      slots.push(new Date(end - i * 3600e3).toISOString().slice(0, 13) + ':00');
    }
    var max = niceMax(Math.max.apply(null, slots.map(function (s) { return counts[s] || 0; })));
    var top = 16, base = 190, w = 19;
    el('line', {x1: 40, y1: base, x2: 550, y2: base, stroke: '#90a4ae'}, svg);
    el('text', {x: 34, y: top + 4, 'text-anchor': 'end'}, svg, String(max));
    el('text', {x: 34, y: base, 'text-anchor': 'end'}, svg, '0');
    slots.forEach(function (s, i) {
      var n = counts[s] || 0, x = 44 + i * 21, h = Math.round(n / max * (base - top));
      bar(svg, x, base - h, w, h, ASSIGN_COLOUR, {hour: s, value: n}, s + ': ' + n);
      if (i % 6 === 0 || i === 23) {
        el('text', {x: x + w / 2, y: base + 14, 'text-anchor': 'middle'}, svg, s.slice(11, 13));
      }
    });
  }

  function shortName(name) {  // evt-<source>-<type>--<service>.<method>: the consumer says it
    var m = /^evt-.+--(.+)$/.exec(name);
    return m ? m[1] : name;
  }

  function drawQueues(queues) {
    var rows = (queues || []).filter(function (q) { return !q.dead_letter_queue; });
    var svg = canvas('chart-queues', Math.max(60, 30 + rows.length * 18));
    el('title', {}, svg, 'one bar per queue: ready, unacked, and the dead letters it caused');
    var max = niceMax(Math.max.apply(null, [0].concat(rows.map(function (q) {
      return q.ready + q.unacked + (q.dead_letters || 0);
    }))));
    el('text', {x: 550, y: 12, 'text-anchor': 'end'}, svg, 'scale: 0 - ' + max);
    rows.forEach(function (q, i) {
      var y = 20 + i * 18, x = 300;
      var label = el('text', {x: 294, y: y + 11, 'text-anchor': 'end', 'data-label': q.name},
                     svg, shortName(q.name).slice(0, 46));
      el('title', {}, label, q.name);
      QUEUE_SERIES.forEach(function (s) {
        var n = q[s[0]] || 0, w = Math.round(n / max * 250);
        bar(svg, x, y, w, 14, s[1], {queue: q.name, series: s[0], value: n},
            q.name + ' ' + s[0] + ': ' + n);
        x += w;
      });
    });
  }

  function fillTables(report) {
    var body = $('queues').querySelector('tbody');
    body.textContent = '';
    var bad = {};
    report.problems.forEach(function (p) { bad[p.subject] = true; });
    // the queues that do the work first, then their dead-letter queues
    var queues = (report.queues || []).filter(function (q) { return !q.dead_letter_queue; })
      .concat((report.queues || []).filter(function (q) { return q.dead_letter_queue; }));
    queues.forEach(function (q) {
      var tr = html('tr', body, null, {'data-queue': q.name});
      if (q.dead_letter_queue) tr.className = 'dlq';
      if (bad[q.name]) tr.className += ' bad';
      html('td', tr, q.name);
      [['messages', q.messages], ['ready', q.ready], ['unacked', q.unacked],
       ['consumers', q.consumers], ['publish_rate', q.publish_rate.toFixed(1)],
       ['ack_rate', q.ack_rate.toFixed(1)],
       ['dead_letters', q.dead_letter_queue ? '' : q.dead_letters]].forEach(function (c) {
        html('td', tr, String(c[1]), {'data-field': c[0]});
      });
    });
    body = $('needs').querySelector('tbody');
    body.textContent = '';
    if (!report.needs) return;
    TIERS.forEach(function (tier) {
      var tr = html('tr', body, null, {'data-tier': tier});
      html('td', tr, tier);
      URGENCY.forEach(function (u) {
        html('td', tr, String(((report.needs.open_needs || {})[tier] || {})[u[0]] || 0),
             {'data-urgency': u[0]});
      });
      var o = (report.needs.oldest_open || {})[tier];
      [['need_id', o && o.need_id], ['age', o ? fmtAge(o.age_seconds) : '-'],
       ['urgency', o && o.urgency], ['category', o && o.category],
       ['community_id', o && o.community_id]].forEach(function (c) {
        html('td', tr, c[1] || '-', {'data-field': c[0]});
      });
    });
  }

  function render(report) {
    var problems = $('problems');
    problems.textContent = '';
    report.problems.forEach(function (p) {
      html('li', problems, p.message, {'data-check': p.check, 'data-subject': p.subject});
    });
    $('verdict').textContent = report.ok ? 'OK' :
      report.problems.length + ' problem' + (report.problems.length > 1 ? 's' : '');
    $('checked').textContent = 'checked ' + report.checked_at + ', refreshing every ' +
      refresh + ' s';
    $('message').textContent = '';
    if (report.needs) {
      drawNeeds(report.needs);
      drawSupply(report.needs.supply);
      drawAssignments(report.needs.assignments_per_hour, report.checked_at);
    }
    if (report.queues) drawQueues(report.queues);
    fillTables(report);
    document.body.setAttribute('data-checked-at', report.checked_at);
    document.body.setAttribute('data-renders',
      String(Number(document.body.getAttribute('data-renders') || 0) + 1));
    document.body.setAttribute('data-state', report.ok ? 'ok' : 'problems');
  }

  function askToken(why) {
    document.body.setAttribute('data-state', 'login');
    $('verdict').textContent = 'token needed';
    $('message').textContent = why || '';
    $('login').hidden = false;
    $('token').focus();
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(load, refresh * 1000);
  }

  function load() {
    var token = sessionStorage.getItem(KEY);
    if (!token) { askToken(); return; }
    var url = '/api/dashboard' + (query.toString() ? '?' + query.toString() : '');
    fetch(url, {headers: {Authorization: 'Bearer ' + token}, cache: 'no-store'})
      .then(function (resp) {
        if (resp.status === 401) {
          sessionStorage.removeItem(KEY);
          askToken('the token was refused');
          return null;
        }
        if (!resp.ok) throw new Error('the gateway answered ' + resp.status);
        return resp.json().then(render);
      })
      .catch(function (err) {
        document.body.setAttribute('data-state', 'error');
        $('verdict').textContent = 'no data';
        $('message').textContent = String(err.message || err);
      })
      .then(function () { if (sessionStorage.getItem(KEY)) schedule(); });
  }

  $('login').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var value = $('token').value.trim();
    if (!value) return;
    sessionStorage.setItem(KEY, value);
    $('token').value = '';
    $('login').hidden = true;
    load();
  });
  load();
})();
</script>
</body>
</html>
"""
