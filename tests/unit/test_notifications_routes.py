"""The gateway's notification routes are documented, and answers carry no personal data."""

from nameko.web.handlers import HttpRequestHandler

from services.gateway.notifications_routes import NotificationRoutes, openapi_paths


def routes():
    found = set()
    for name in dir(NotificationRoutes):
        for ep in getattr(getattr(NotificationRoutes, name), "nameko_entrypoints", ()):
            if isinstance(ep, HttpRequestHandler):
                path = ep.url.replace("<string:", "{").replace(">", "}")
                found.add((ep.method.lower(), path))
    return found


def test_every_route_is_in_the_openapi_paths():
    documented = {(method, path) for path, ops in openapi_paths().items() for method in ops}
    assert routes() == documented
    assert len(routes()) == 7  # recipients (3), notifications (3), the digest page


def test_the_mixin_brings_its_own_rpc_proxy():
    assert NotificationRoutes.notifications.target_service == "notifications"
