"""The gateway's storage: API keys (beyond the operator token from the environment)."""

from services.common.store import BaseStore


class GatewayStore(BaseStore):
    collections = {"api_keys": []}

    def ping(self) -> bool:
        self.db.command("ping")
        return True
