"""The on-call dashboard in a real browser (headless Chromium, /usr/bin/chromium) against the
whole system: the charts are painted with data (pixels read back from screenshots), the page
shows the same figures as ``relief-ops status --json``, refreshes itself, and the data stays
behind the operator token."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.support import System, envelope, eventually

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHARTS = {  # chart -> the colours its bars are drawn in (legends are far smaller than bars)
    "chart-needs": ["#b71c1c", "#ef6c00", "#1565c0", "#78909c"],
    "chart-supply": ["#2e7d32"],
    "chart-assignments": ["#6a1b9a"],
    "chart-queues": ["#00838f", "#f9a825", "#c62828"],
}
ACCOUNTING_IN = "evt-donations-donation_received--accounting.on_donation_received"
ACCOUNTING_OUT = "evt-matching-assignment_made--accounting.on_assignment_made"
ACCOUNTING_STOCK = "evt-donations-stock_changed--accounting.on_stock_changed"
ACCOUNTING_FULFILLED = "evt-matching-need_fulfilled--accounting.on_need_fulfilled"
# the gateway samples its figures every 5 s here (a minute in production): the history has
# samples by the time a test looks
SYSTEM_ENV = {"RELIEF_HISTORY_SAMPLE": "5"}
SCREENSHOTS = ROOT / ".local" / "screenshots"


@pytest.fixture(autouse=True, scope="module")
def chromium_installed():
    # `make test` installs it (deploy/bootstrap.sh); a missing browser is a failure, not a skip
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed (apt-get install chromium)"


# -- a browser driven over the DevTools protocol on a pipe (no extra library needed) ------------
class Browser:
    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="relief-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:  # the protocol pipe is the child's fds 3 (in) and 4 (out)
            high_r, high_w = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             "--force-color-profile=srgb", f"--user-data-dir={self.profile}",
             "--remote-debugging-pipe", "--window-size=1280,1600", "about:blank"],
            pass_fds=(3, 4), preexec_fn=wire, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next = 0
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        self.page("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 1600, "deviceScaleFactor": 1, "mobile": False})

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            left = deadline - time.monotonic()
            assert left > 0, f"the browser did not answer {method}"
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                assert chunk, "the browser closed its protocol pipe"
                self._buffer += chunk

    def page(self, method: str, params: dict | None = None) -> dict[str, Any]:
        return self.send(method, params, session=self.session)

    def goto(self, url: str) -> None:
        self.page("Page.navigate", {"url": url})
        self.wait("document.readyState === 'complete' && document.body !== null")

    def js(self, expression: str) -> Any:
        answer = self.page("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in answer:
            raise AssertionError(f"page script failed: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def wait(self, condition: str, timeout: float = 30) -> Any:
        return eventually(lambda: self.js(f"(function(){{try{{return {condition};}}"
                                          f"catch(e){{return false;}}}})()"),
                          timeout=timeout, what=condition)

    def screenshot(self, box: dict[str, float]) -> tuple[int, int, list[bytes]]:
        clip = {**box, "scale": 1}
        data = self.page("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                    "captureBeyondViewport": True})["data"]
        return decode_png(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - it may be gone already
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self.profile, ignore_errors=True)


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """A PNG (8-bit RGB or RGBA, not interlaced, as the browser writes them) -> width,
    height, rows of RGB(A) bytes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            for i in range(stride):
                line[i] = (line[i] + previous[i]) & 0xFF
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = previous[i]
                c = previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, bpp, rows


def pixels(shot: tuple[int, int, list[bytes]]) -> list[tuple[int, int, int]]:
    width, bpp, rows = shot
    return [tuple(row[i:i + 3]) for row in rows for i in range(0, width * bpp, bpp)]


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 3) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def paint(browser: Browser) -> dict[str, dict[str, int]]:
    """For each chart: how many pixels of its plot area are not background, and how many are
    painted in its bars' colours."""
    boxes = browser.js("""Object.fromEntries([...document.querySelectorAll('figure.chart')]
        .map(f => { const r = f.querySelector('.plot').getBoundingClientRect();
                    return [f.id, {x: r.x + scrollX, y: r.y + scrollY,
                                   width: r.width, height: r.height}]; }))""")
    assert set(boxes) == set(CHARTS)
    out = {}
    for chart, colours in CHARTS.items():
        assert boxes[chart]["width"] > 100 and boxes[chart]["height"] > 50, boxes[chart]
        shot = pixels(browser.screenshot(boxes[chart]))
        background = shot[0]  # the plot's corner: no chart draws there
        wanted = [rgb(c) for c in colours]
        out[chart] = {
            "pixels": len(shot),
            "non_background": sum(1 for p in shot if not near(p, background, 8)),
            "bars": sum(1 for p in shot if any(near(p, c) for c in wanted)),
        }
    return out


# -- the system and the tool ---------------------------------------------------------------------
def ops_json(system: System) -> dict[str, Any]:
    space = system.space
    env = {**os.environ, "RABBIT_MANAGEMENT_URI": space.management_uri,
           "AMQP_URI": space.amqp_uri, "RELIEF_GATEWAY_URL": system.url,
           "RELIEF_ADMIN_TOKEN": System.TOKEN, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-m", "services.ops.cli", "status", "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return json.loads(result.stdout)


def seed(system: System) -> dict[str, str]:
    """Supply in two units, needs met and open at several urgencies, a consumer stopped so
    its queues fill, and a dead letter."""
    space = system.space
    tag = uuid.uuid4().hex[:6]
    system.services.kill("accounting", signal.SIGTERM)
    for donation_id, location, category, quantity, unit in [
            (f"D-m-{tag}", "QY-S01-C01", "masks", 100, "piece"),
            (f"D-d-{tag}", "QY", "disinfectant", 50, "jin")]:
        space.intake("donation_received", {
            "donation_id": donation_id, "donor": {"name": "好医生集团", "kind": "company"},
            "location_id": location, "category": category, "quantity": quantity,
            "unit": unit, "value_yuan": 500})
    needs = {f"N-met1-{tag}": ("QY-S01-C01", "masks", 30, "piece", "critical"),
             f"N-met2-{tag}": ("QY-S02-C01", "disinfectant", 5, "jin", "high"),
             f"N-open1-{tag}": ("QY-S03-C01", "thermometers", 4, "piece", "normal"),
             f"N-open2-{tag}": ("QY-S03-C02", "protective_suits", 2, "piece", "critical"),
             f"N-open3-{tag}": ("QY-S04-C01", "thermometers", 1, "piece", "low")}
    for need_id, (community, category, quantity, unit, urgency) in needs.items():
        space.intake("need_posted", {
            "need_id": need_id, "community_id": community, "kind": "goods",
            "category": category, "quantity": quantity, "unit": unit, "urgency": urgency,
            "contact": {"name": "赵六", "phone": "13600001111"}})
        time.sleep(0.05)
    space.publish("relief.intake", "need_posted", b"not json at all")

    def settled() -> bool:
        states = {n: (system.need(n) or {}).get("status") for n in needs}
        return (states[f"N-met1-{tag}"] == "fulfilled" and states[f"N-met2-{tag}"] == "fulfilled"
                and all(states[n] == "open" for n in needs if "open" in n))

    eventually(settled, what="needs matched")
    eventually(lambda: space.queue_depth("relief.intake.dlq") == 1, what="the dead letter")

    def figures_in() -> bool:  # every event has arrived and the broker's statistics caught up
        rows = {q["name"]: q for q in ops_json(system)["queues"] or []}
        return (rows[ACCOUNTING_IN]["messages"] == 2 and rows[ACCOUNTING_OUT]["messages"] == 2
                and rows[ACCOUNTING_STOCK]["messages"] == 2  # one per assignment, sent after it
                and rows[ACCOUNTING_FULFILLED]["messages"] == 2  # one per need met
                and rows["relief.intake.dlq"]["messages"] == 1
                and all(q["unacked"] == 0 for q in rows.values()))

    eventually(figures_in, timeout=60, what="queue figures settled")
    return needs


def dom_figures(browser: Browser) -> dict[str, Any]:
    return browser.js("""(() => {
      const text = (el, f) => el.querySelector(`[data-field="${f}"]`).textContent;
      const queues = {};
      document.querySelectorAll('#queues tbody tr').forEach(tr => {
        queues[tr.dataset.queue] = {messages: +text(tr, 'messages'), ready: +text(tr, 'ready'),
          unacked: +text(tr, 'unacked'), consumers: +text(tr, 'consumers'),
          dead_letters: text(tr, 'dead_letters')};
      });
      const open = {}, oldest = {};
      document.querySelectorAll('#needs tbody tr').forEach(tr => {
        open[tr.dataset.tier] = {};
        tr.querySelectorAll('[data-urgency]').forEach(td => {
          open[tr.dataset.tier][td.dataset.urgency] = +td.textContent; });
        oldest[tr.dataset.tier] = text(tr, 'need_id');
      });
      const bars = sel => [...document.querySelectorAll(sel + ' rect[data-value]')]
        .map(r => Object.assign({}, r.dataset));
      return {queues, open, oldest,
        needBars: bars('#chart-needs'), supplyBars: bars('#chart-supply'),
        hourBars: bars('#chart-assignments'), queueBars: bars('#chart-queues'),
        problems: [...document.querySelectorAll('#problems li')]
          .map(li => [li.dataset.check, li.dataset.subject]),
        banner: document.getElementById('banner').hidden ? [] :
          [...document.querySelectorAll('#banner li')]
            .map(li => [li.dataset.check, li.dataset.subject, li.textContent]),
        state: document.body.dataset.state, renders: +document.body.dataset.renders,
        href: location.href, html: document.documentElement.outerHTML};
    })()""")


# -- the test ------------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_the_dashboard_draws_the_same_figures_as_relief_ops(system):
    needs = seed(system)
    browser = Browser()
    try:
        # without the token: the page loads, asks for it, and draws nothing
        browser.goto(f"{system.url}/dashboard")
        browser.wait("document.body.dataset.state === 'login'")
        assert not browser.js("document.getElementById('login').hidden")
        blank = paint(browser)
        for chart, seen in blank.items():
            assert seen["bars"] == 0 and seen["non_background"] == 0, (chart, seen)

        # with the token (in the fragment: never sent to the server)
        browser.goto(f"{system.url}/dashboard?refresh=2#token={System.TOKEN}")
        browser.wait("['ok', 'problems'].includes(document.body.dataset.state)")
        before = ops_json(system)
        page = dom_figures(browser)
        after = ops_json(system)
        painted = paint(browser)
    finally:
        browser.close()
        system.services.start("accounting")

    # every chart is painted, with its bars' colours, where the blank page had nothing
    for chart, seen in painted.items():
        assert seen["bars"] >= 300, (chart, seen)
        assert seen["non_background"] >= seen["bars"], (chart, seen)

    # the token left the address bar and is nowhere in the page
    assert "#token" not in page["href"] and System.TOKEN not in page["html"]
    assert "13600001111" not in page["html"] and "赵六" not in page["html"]

    # the same figures as relief-ops status --json (read just before and after)
    assert before["queues"] is not None and before["needs"] is not None
    for report in (before, after):
        for q in report["queues"]:
            shown = page["queues"][q["name"]]
            # an RPC queue holds the calls in flight at the moment it is read, and the readers
            # make such calls themselves (the page refreshes, the tool asks for the status):
            # only its consumers are a settled figure
            rpc = q["name"].startswith("rpc-")
            for field in ("consumers",) if rpc else ("messages", "ready", "unacked", "consumers"):
                assert shown[field] == q[field], (q["name"], field, shown, q)
            if not q["dead_letter_queue"]:
                assert shown["dead_letters"] == str(q["dead_letters"]), q["name"]
        assert set(page["queues"]) == {q["name"] for q in report["queues"]}
        assert page["open"] == report["needs"]["open_needs"]
        assert page["oldest"] == {t: (o or {}).get("need_id", "-")
                                  for t, o in report["needs"]["oldest_open"].items()}
        assert sorted(map(tuple, page["problems"])) == sorted(
            (p["check"], p["subject"]) for p in report["problems"])
    assert page["state"] == "problems"  # accounting is stopped and there is a dead letter
    assert ["consumers", ACCOUNTING_IN] in page["problems"]
    assert ["dead_letters", "relief.intake.dlq"] in page["problems"]
    assert page["banner"] == []  # those wait for the system, not for a person

    # the charts carry those figures
    need_bars = {(b["tier"], b["urgency"]): int(b["value"]) for b in page["needBars"]}
    expected = {(t, u): n for t, by in before["needs"]["open_needs"].items()
                for u, n in by.items() if n}
    assert need_bars == expected and sum(need_bars.values()) >= 3
    supply = {(b["category"], b["unit"]): float(b["value"]) for b in page["supplyBars"]}
    assert supply == {(s["category"], s["unit"]): s["available"]
                      for s in before["needs"]["supply"] if s["available"] > 0}
    assert supply[("masks", "piece")] == 70 and supply[("disinfectant", "jin")] == 45
    hours = {b["hour"]: int(b["value"]) for b in page["hourBars"]}
    assert {h: n for h, n in hours.items() if n} == {
        h["hour"]: h["count"] for h in before["needs"]["assignments_per_hour"]}
    assert sum(hours.values()) >= 2
    queue_bars = {(b["queue"], b["series"]): int(b["value"]) for b in page["queueBars"]}
    assert queue_bars[(ACCOUNTING_IN, "ready")] == 2
    assert queue_bars[("relief.intake.events", "dead_letters")] == 1
    assert needs  # seeded


@pytest.mark.timeout(180)
def test_the_page_refreshes_itself_and_data_needs_the_token(system):
    assert system.api("GET", "/api/dashboard", token=None).status_code == 401
    assert system.api("GET", "/api/dashboard", token="wrong").status_code == 401
    page = system.api("GET", "/dashboard", token=None)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert System.TOKEN not in page.text and "/api/dashboard" in page.text
    assert system.api("GET", "/api/dashboard?max_age=soon").status_code == 400
    strict = system.api("GET", "/api/dashboard?max_depth=0&max_age=0").json()
    assert "thresholds" in strict and strict["thresholds"]["max_depth"] == 0

    browser = Browser()
    try:
        # in English: the banner's words are checked below (the page is zh-CN by default)
        browser.goto(f"{system.url}/dashboard?refresh=2&lang=en#token={System.TOKEN}")
        browser.wait("['ok', 'problems'].includes(document.body.dataset.state)")
        first = dom_figures(browser)
        dead = first["queues"]["relief.intake.dlq"]["messages"]
        system.space.publish("relief.intake", "need_posted", b"still not json")
        # no reload: the page fetches again on its own and shows the new dead letter
        browser.wait(f"+document.querySelector('#queues tr[data-queue=\"relief.intake.dlq\"] "
                     f"[data-field=messages]').textContent === {dead + 1}", timeout=40)
        later = dom_figures(browser)
        assert later["renders"] > first["renders"]
        assert ["dead_letters", "relief.intake.dlq"] in later["problems"]

        # what needs a person shows as a banner: an escalation to a street nobody
        # coordinates, and an event no queue was bound for
        system.space.publish("matching.events", "need_escalated", envelope(
            "need_escalated", {"need_id": "N-dash-esc", "community_id": "QY-S12-C01",
                               "category": "masks", "urgency": "high",
                               "from_tier": "community", "to_tier": "street",
                               "area_id": "QY-S12", "remaining": 3, "unit": "piece"},
            source="matching"))
        system.space.publish("matching.events", "need_fulfiled", envelope(
            "need_fulfilled", {"need_id": "N-dash-x"}, source="matching"))
        browser.wait("!document.getElementById('banner').hidden && "
                     "document.querySelectorAll('#banner li').length === 2", timeout=40)
        banner = {(c, s): text for c, s, text in dom_figures(browser)["banner"]}
        assert set(banner) == {("escalation", "QY-S12"), ("unroutable", "relief.unroutable")}
        assert "N-dash-esc" in banner[("escalation", "QY-S12")]
        assert "no coordinator is registered for QY-S12" in banner[("escalation", "QY-S12")]
        shot = pixels(browser.screenshot(browser.js(
            "(() => { const r = document.getElementById('banner').getBoundingClientRect();"
            " return {x: r.x, y: r.y + scrollY, width: r.width, height: r.height}; })()")))
        assert sum(near(p, rgb("#b71c1c")) for p in shot) > len(shot) // 2  # a red banner
        # a refused token sends the user back to the token form
        browser.js("sessionStorage.setItem('relief-ops-token', 'wrong'); 1")
        browser.wait("document.body.dataset.state === 'login'", timeout=20)
    finally:
        browser.close()


# every element of every card inside that card; every bar with its value as a text in the
# chart; nothing wider than the window
LAYOUT = """(() => {
  const out = {outside: [], bars: 0, labelled: [], scrollWidth:
               document.documentElement.scrollWidth, width: innerWidth};
  const inside = (r, c) => r.left >= c.left - 1 && r.right <= c.right + 1 &&
                           r.top >= c.top - 1 && r.bottom <= c.bottom + 1;
  document.querySelectorAll('header, figure.chart, .card').forEach(card => {
    const c = card.getBoundingClientRect();
    card.querySelectorAll('*').forEach(e => {
      const r = e.getBoundingClientRect();
      if (!r.width || !r.height || !inside(r, c)) {
        if (r.width && r.height) out.outside.push([card.id || card.tagName, e.tagName,
          (e.textContent || '').slice(0, 40), [r.left, r.right, r.top, r.bottom],
          [c.left, c.right, c.top, c.bottom]]);
      }
    });
  });
  document.querySelectorAll('figure.chart rect[data-value]').forEach(rect => {
    out.bars += 1;
    const svg = rect.ownerSVGElement, s = svg.getBoundingClientRect();
    const text = svg.querySelector(`text[data-value-of="${rect.dataset.bar}"]`);
    if (text && inside(text.getBoundingClientRect(), s) &&
        (text.textContent.endsWith('…') ||
         Math.abs(parseFloat(text.textContent) - parseFloat(rect.dataset.value)) < 0.051)) {
      out.labelled.push(rect.dataset.value);
    }
  });
  return out;
})()"""


def full_screenshot(browser: Browser, path: Path) -> None:
    size = browser.js("({width: document.documentElement.scrollWidth, "
                      "height: document.documentElement.scrollHeight})")
    data = browser.page("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                 "scale": 1}})["data"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(data))


@pytest.mark.timeout(240)
def test_the_page_holds_at_phone_and_desk_width_in_both_languages_with_its_history(system):
    """At 412 px (a phone) in Chinese, the default, and at 1280 px in English: no element
    leaves its card, the page is no wider than the window, every bar carries its value, and
    the 24-hour history the gateway keeps is drawn; it is still there after a restart."""
    eventually(lambda: system.api("GET", "/api/history").json()["samples"],
               what="a sample of the history")
    browser = Browser()
    try:
        for width, lang in ((412, None), (1280, "en")):
            browser.page("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": 1200, "deviceScaleFactor": 1,
                "mobile": width < 600})
            query = f"?lang={lang}&refresh=60" if lang else "?refresh=60"
            browser.goto(f"{system.url}/dashboard{query}#token={System.TOKEN}")
            browser.wait("['ok', 'problems'].includes(document.body.dataset.state) && "
                         "+document.body.dataset.history >= 1")
            layout = browser.js(LAYOUT)
            full_screenshot(browser, SCREENSHOTS / f"dashboard-{width}.png")
            assert layout["width"] == width
            assert layout["scrollWidth"] <= width, layout
            assert layout["outside"] == [], layout["outside"][:5]
            assert layout["bars"] >= 5 and len(layout["labelled"]) == layout["bars"], layout
            page = browser.js("""({lang: document.documentElement.lang,
                heading: document.querySelector('h1').textContent,
                font: getComputedStyle(document.body).fontFamily,
                svgFont: getComputedStyle(document.querySelector('#chart-needs svg text'))
                  .fontFamily,
                lines: [...document.querySelectorAll('#history polyline')]
                  .map(p => [p.dataset.series, +p.dataset.points]),
                latest: [...document.querySelectorAll('#history [data-latest]')]
                  .map(t => t.textContent),
                tier: document.querySelector('#needs tr[data-tier=community] td').textContent,
                switch: document.getElementById('switch').getAttribute('href')})""")
            assert page["lang"] == (lang or "zh-CN")
            if lang is None:
                assert page["heading"] == "社区抗疫物资协调平台 · 值班"
                assert page["tier"] == "社区" and "lang=en" in page["switch"]
            else:
                assert page["heading"] == "Relief Exchange · on-call"
                assert page["tier"] == "community" and "lang=zh-CN" in page["switch"]
            assert "refresh=60" in page["switch"]  # the switch keeps the rest of the query
            for font in (page["font"], page["svgFont"]):
                assert font.startswith('"Noto Sans CJK SC", "Source Han Sans SC", '
                                       '"PingFang SC", "Microsoft YaHei"'), font
            series = {name for name, points in page["lines"] if points >= 1}
            assert {"community", "street", "district", "dead_letters", "assignments",
                    "queue_depth"} <= series, page["lines"]
            assert len(page["latest"]) == 6 and all(page["latest"]), page["latest"]
    finally:
        browser.close()

    # kept by the gateway in its own database: a restart loses none of it
    before = system.api("GET", "/api/history").json()
    assert before["hours"] == 24 and before["samples"]
    sample = before["samples"][-1]
    assert set(sample) == {"at", "open_needs", "dead_letters", "assignments", "queue_depth"}
    assert set(sample["open_needs"]) == {"community", "street", "district"}
    system.services.kill("gateway", signal.SIGTERM)
    system.services.start("gateway")
    system.wait_consumers(["gateway"])
    after = system.api("GET", "/api/history").json()["samples"]
    assert {s["at"] for s in before["samples"]} <= {s["at"] for s in after}
    assert system.api("GET", "/api/history?hours=25").status_code == 400


# -- the coordinators' console ------------------------------------------------------------
def test_a_community_coordinator_uses_the_console_on_a_phone_within_their_community(system):
    tag = uuid.uuid4().hex[:6]
    account, password = f"c01-{tag}", "console password 1"
    r = system.api("POST", "/api/accounts", json={
        "account_id": account, "role": "community_coordinator", "area_id": "QY-S01-C01",
        "password": password})
    assert r.status_code == 201, r.text
    assert system.api("POST", "/api/donations", json={
        "donation_id": f"D-{tag}", "donor": {"name": "成都启毅农业科技有限公司", "kind": "company"},
        "location_id": "QY-S01-C01", "category": "masks", "quantity": 100, "unit": "piece",
        "value_yuan": 50}).status_code == 202
    eventually(lambda: f"D-{tag}" in system.lots("masks"))
    other = f"N-{tag}-other"  # a need of another street's community
    assert system.api("POST", "/api/needs", json={
        **seed_need(), "need_id": other,
        "community_id": "QY-S02-C01"}).status_code == 202
    page = system.api("GET", "/console", token=None)
    assert page.status_code == 200 and "script-src 'nonce-" in page.headers[
        "Content-Security-Policy"]

    browser = Browser()
    try:
        browser.page("Emulation.setDeviceMetricsOverride",
                     {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
        browser.goto(f"{system.url}/console")
        assert browser.js("document.documentElement.lang") == "zh-CN"
        assert browser.js("document.querySelector('#signin-form button').textContent") == "登录"
        browser.js(f"document.getElementById('account').value = {json.dumps(account)};"
                   f"document.getElementById('password').value = {json.dumps(password)};"
                   "document.querySelector('#signin-form button').click(); 1")
        browser.wait("document.body.dataset.view === 'needs' && "
                     "!document.getElementById('nav').hidden")
        # phone-width: nothing wider than the screen
        assert browser.js("document.documentElement.scrollWidth") <= 390
        # only my community to post for
        assert browser.js("[...document.querySelectorAll('#post-community option')]"
                          ".map(o => o.value)") == ["QY-S01-C01"]

        def post(quantity: int) -> None:
            browser.js("location.hash = 'post'; 1")
            browser.wait("!document.getElementById('view-post').hidden")
            browser.js("document.getElementById('post-category').value = 'masks';"
                       "document.getElementById('post-category').dispatchEvent("
                       "new Event('change'));"
                       f"document.getElementById('post-quantity').value = '{quantity}';"
                       "document.querySelector('#post-form button').click(); 1")
            browser.wait("!document.getElementById('confirm').hidden")

        post(60)
        assert browser.js("document.getElementById('warning').hidden") is True
        browser.js("document.getElementById('confirm-yes').click(); 1")
        browser.wait("!document.getElementById('notice').hidden")
        need_id = browser.js("document.getElementById('notice').textContent").split(": ")[-1]
        eventually(lambda: (n := system.need(need_id)) and n["status"] == "fulfilled")
        browser.js("location.hash = 'needs'; 1")
        browser.wait(f"document.querySelector('[data-need=\"{need_id}\"] .status')"
                     ".dataset.status === 'fulfilled'")
        explanation = browser.js(f"document.querySelector('[data-need=\"{need_id}\"] "
                                 ".explanation').textContent")
        # the explanation the API gives, as matching wrote it (the module's other tests
        # may have stocked the same warehouse: any of its lots will do)
        lot = system.need(need_id)["assignments"][0]["lot_id"]
        assert f"lot {lot} at QY-S01-C01 (same community" in explanation
        assert browser.js(f"!!document.querySelector('[data-need=\"{other}\"]')") is False
        browser.js("location.hash = 'stock'; 1")
        browser.wait("!!document.querySelector('#stock-list .card') || "
                     "!document.getElementById('error').hidden")
        assert browser.js("document.getElementById('error').hidden"), browser.js(
            "document.getElementById('error').textContent")
        assert "QY-S01-C01" in browser.js("document.getElementById('stock-list').textContent")

        # a donation received at the station, and its receipt printed there
        browser.js("location.hash = 'donate'; 1")
        browser.wait("!document.getElementById('view-donate').hidden")
        assert browser.js("[...document.querySelectorAll('#donate-location option')]"
                          ".map(o => o.value)") == ["QY-S01-C01"]
        browser.js("document.getElementById('donate-category').value = 'masks';"
                   "document.getElementById('donate-category').dispatchEvent("
                   "new Event('change'));"
                   "document.getElementById('donate-quantity').value = '40';"
                   "document.getElementById('donate-donor').value = '青羊区爱心企业';"
                   "document.getElementById('donate-value').value = '20';"
                   "document.querySelector('#donate-form button').click(); 1")
        browser.wait("!document.getElementById('notice').hidden && "
                     "!document.getElementById('receipt-row').hidden")
        donation_id = browser.js("document.getElementById('notice').textContent").split(
            ": ")[-1]
        eventually(lambda: donation_id in system.lots("masks"), what="the donation recorded")
        browser.js("document.getElementById('receipt-show').click(); 1")
        browser.wait("!document.getElementById('receipt').hidden")
        receipt = browser.js("document.getElementById('receipt').textContent")
        # the numbered receipt (its number, not the donation id, is what the donor keeps)
        assert "收据编号: JZ-" in receipt and "青羊区爱心企业" in receipt
        assert "防护口罩40" in receipt
        # my area's needs as a workbook
        browser.js("location.hash = 'bulletin'; 1")
        browser.wait("!document.getElementById('view-bulletin').hidden")
        browser.js("document.getElementById('export-needs').click(); 1")
        browser.wait("Number(document.getElementById('export-link').dataset.size || 0) > 0")
        assert int(browser.js("document.getElementById('export-link').dataset.rows")) >= 1

        post(6000)  # a hundred times what this community asks for: a second look
        browser.wait("!document.getElementById('warning').hidden")
        assert "6000" in browser.js("document.getElementById('warning').textContent")
        browser.js("document.getElementById('confirm-no').click(); 1")

        # another community by editing the address: the API refuses, the page says so
        browser.js("location.hash = 'needs/QY-S02-C01'; 1")
        browser.wait("!document.getElementById('error').hidden")
        refusal = browser.js("document.getElementById('error').textContent")
        assert "QY-S02-C01" in refusal and "QY-S01-C01" in refusal
        assert browser.js("document.querySelectorAll('#needs-list [data-need]').length") == 0

        # English at a touch
        browser.js("document.getElementById('lang').click(); 1")
        assert browser.js("document.documentElement.lang") == "en"
        assert browser.js("document.querySelector('[data-go=post]').textContent") == \
            "Post a need"
        if os.environ.get("RELIEF_CONSOLE_SHOTS"):  # pictures for docs/ (in English: this
            # machine's browser may lack CJK fonts)
            for view, ready in (("needs", "#needs-list .card"), ("stock", "#stock-list .card")):
                browser.js(f"location.hash = '{view}'; 1")
                browser.wait(f"!!document.querySelector('{ready}')")
                browser.js("quiet(); 1")  # the refusal shown above belongs to another view
                shot(browser, view)
            post(6000)
            browser.wait("!document.getElementById('warning').hidden")
            shot(browser, "post")
    finally:
        browser.close()
    audit = system.api("GET", f"/api/audit?actor={account}").json()["entries"]
    assert ("needs.post", 202) in [(e["action"], e["status"]) for e in audit]


def shot(browser: Browser, name: str) -> None:
    """A picture of the page for docs/, when ``RELIEF_CONSOLE_SHOTS`` names a folder."""
    folder = os.environ.get("RELIEF_CONSOLE_SHOTS")
    if folder:
        data = browser.page("Page.captureScreenshot", {"format": "png"})["data"]
        Path(folder, f"console-{name}.png").write_bytes(base64.b64decode(data))


def seed_need() -> dict[str, Any]:
    return {"kind": "goods", "category": "masks", "quantity": 5, "unit": "piece",
            "urgency": "normal"}
