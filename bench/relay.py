"""The outbox relay's publishing: one confirm per event (nameko's publisher, as the relay did
before) against one confirm window per call (``store.ConfirmWindow``), on the same broker,
interleaved (a, b, a, b ...), medians of the repetitions. Prints events/s of each and the
ratio, with the load average.

    python bench/relay.py [--events 2000] [--window 50] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import eventlet  # noqa: E402

eventlet.monkey_patch()

from kombu import Connection, Exchange, Queue  # noqa: E402
from nameko.amqp.publish import Publisher  # noqa: E402

from deploy.local import Broker, free_port  # noqa: E402
from services.common.store import ConfirmWindow  # noqa: E402

EXCHANGE = "bench-relay.events"


def envelope(i: int) -> dict:
    return {"event_id": f"ev-{uuid.uuid4().hex}", "type": "need_posted", "version": 1,
            "source": "bench", "occurred_at": "2020-02-10T09:00:00+00:00",
            "data": {"need_id": f"N-{i}", "community_id": "QY-S01-C01", "kind": "goods",
                     "category": "masks", "quantity": 10, "unit": "piece",
                     "urgency": "normal"}}


def one_by_one(uri: str, events: list[dict], _window: int) -> None:
    publisher = Publisher(uri, use_confirms=True, mandatory=True)
    for e in events:
        publisher.publish(e, exchange=EXCHANGE, routing_key=e["type"],
                          message_id=e["event_id"], headers={"x-relief-source": "bench"})


def windowed(uri: str, events: list[dict], window: int) -> None:
    relay = ConfirmWindow(uri)
    try:
        for start in range(0, len(events), window):
            part = events[start:start + window]
            sent = relay.publish([(e, EXCHANGE, e["type"], e["event_id"],
                                   {"x-relief-source": "bench"}) for e in part])
            if len(sent) != len(part):
                raise RuntimeError(f"{len(part) - len(sent)} events not confirmed")
    finally:
        relay.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--window", type=int, default=50,
                        help="events per relay call (a batch's events; default 50)")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="relief-bench-relay-"))
    os.chmod(base, 0o755)  # the broker runs as its own user and must reach its folder
    broker = Broker(base / "rabbitmq", nodename=f"relief-relay-{uuid.uuid4().hex[:6]}@localhost",
                    port=free_port(), dist_port=free_port(), management_port=free_port(),
                    prometheus_port=free_port())
    broker.start()
    try:
        uri = broker.amqp_uri
        with Connection(uri) as conn:
            channel = conn.channel()
            exchange = Exchange(EXCHANGE, type="topic", durable=True)
            exchange(channel).declare()
            Queue("bench-relay", exchange=exchange, routing_key="#", durable=True,
                  queue_arguments={"x-max-length": 1})(channel).declare()
        rates: dict[str, list[float]] = {"one confirm per event": [], "a window per call": []}
        for _ in range(args.reps):
            for name, publish in (("one confirm per event", one_by_one),
                                  ("a window per call", windowed)):
                events = [envelope(i) for i in range(args.events)]
                started = time.perf_counter()
                publish(uri, events, args.window)
                rates[name].append(args.events / (time.perf_counter() - started))
        load = os.getloadavg()[0]
        print(f"relay publishing, {args.events} events, window {args.window}, "
              f"{args.reps} repetitions interleaved (load {load:.2f})")
        for name, values in rates.items():
            print(f"  {name:24s} {statistics.median(values):8.0f} events/s "
                  f"(runs: {', '.join(f'{v:.0f}' for v in values)})")
        a, b = (statistics.median(v) for v in rates.values())
        print(f"  ratio window / one by one: {b / a:.1f}")
    finally:
        broker.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
