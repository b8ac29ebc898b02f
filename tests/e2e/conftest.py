import pytest

from tests.support import System


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
