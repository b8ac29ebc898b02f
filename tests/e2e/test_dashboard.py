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

from tests.support import System, eventually

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

    def figures_in() -> bool:  # the broker's statistics have caught up
        rows = {q["name"]: q for q in ops_json(system)["queues"] or []}
        return (rows[ACCOUNTING_IN]["messages"] == 2 and rows[ACCOUNTING_OUT]["messages"] == 2
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
            for field in ("messages", "ready", "unacked", "consumers"):
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
        browser.goto(f"{system.url}/dashboard?refresh=2#token={System.TOKEN}")
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
        # a refused token sends the user back to the token form
        browser.js("sessionStorage.setItem('relief-ops-token', 'wrong'); 1")
        browser.wait("document.body.dataset.state === 'login'", timeout=20)
    finally:
        browser.close()
