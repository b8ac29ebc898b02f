import uuid

import pytest

from deploy.local import free_port
from deploy.mail_sink import MailSink
from tests.support import System


@pytest.fixture(scope="module")
def sink(infra):
    """A mail sink (SMTP and the webhook receiver) for a module's system to send to."""
    base = infra.base / "mail" / uuid.uuid4().hex[:6]
    s = MailSink(base / "box", port=free_port(), http_port=free_port()).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def system(infra, request):
    """The whole system, each service its own process, in a fresh vhost and database.
    A test module may set ``SYSTEM_ENV`` (a dict) to change settings, e.g. short timeouts."""
    space = infra.new_space(request.module.__name__.rsplit(".", 1)[-1].replace("_", "-"))
    sys_ = System(space, infra.base / "logs" / space.vhost)
    sys_.env.update(getattr(request.module, "SYSTEM_ENV", {}))
    sys_.start()
    yield sys_
    sys_.stop()
