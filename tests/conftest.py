"""Test fixtures: a real broker and a real database on free ports, started once per run.

Every system under test gets its own broker vhost and database-name prefix, so tests never
see each other's messages or documents.
"""

import warnings

warnings.filterwarnings("ignore", message=".*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()  # noqa: E402 - must precede every other import (nameko, pymongo)

import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from deploy.local import Broker, Database, free_port  # noqa: E402
from tests.support import Infra  # noqa: E402


@pytest.fixture(scope="session")
def infra():
    """Broker and database for the whole run; stopped at the end."""
    base = Path(tempfile.mkdtemp(prefix="relief-test-"))
    os.chmod(base, 0o755)
    tag = uuid.uuid4().hex[:6]
    broker = Broker(base / "rabbitmq", nodename=f"relief-test-{tag}@localhost", port=free_port(),
                    dist_port=free_port(), management_port=free_port(),
                    prometheus_port=free_port())
    database = Database(base / "db", port=free_port())
    keep = bool(os.environ.get("RELIEF_KEEP_TEST_DATA"))
    broker.start()
    try:
        database.start()
        yield Infra(broker, database, base)
    finally:
        database.stop()
        broker.stop(graceful=keep)  # its data is thrown away: no need to wait for a shutdown
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
