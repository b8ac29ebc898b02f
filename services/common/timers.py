"""A timer entrypoint whose interval comes from config (nameko's is fixed in code)."""

from __future__ import annotations

from nameko.timer import Timer

from services.common.config import settings


class ConfiguredTimer(Timer):
    """``@every("timer_seconds")``: runs the method every ``RELIEF.<key>`` seconds."""

    def __init__(self, key: str, **kwargs: object):
        self.key = key
        super().__init__(interval=1.0, **kwargs)

    def setup(self) -> None:
        self.interval = float(getattr(settings(self.container.config), self.key))
        super().setup()


every = ConfiguredTimer.decorator
