"""Notifications: one message per (event, recipient). Here the poster of a need hears of
each assignment and of fulfilment; messages are stored as ``queued`` for the channels."""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

from services.common import contract
from services.common.contract import Event
from services.common.handler import on_event
from services.common.store import StoreProvider, Tx
from services.notifications.store import NotificationsStore
from services.notifications.templates import render


class NotificationsService:
    name = "notifications"

    store: NotificationsStore = StoreProvider(NotificationsStore)

    @on_event("intake", "need_posted")
    def on_need_posted(self, event: Event) -> None:
        self.store.atomically(lambda tx: remember_poster(self.store, tx, event.data),
                              event=event, consumer="on_need_posted")

    @on_event("matching", "assignment_made")
    def on_assignment_made(self, event: Event) -> None:
        self.store.atomically(
            lambda tx: tell_poster(self.store, tx, "assignment_made", event,
                                   f"{event.data['assignment_id']}:poster"),
            event=event, consumer="on_assignment_made")

    @on_event("matching", "need_fulfilled")
    def on_need_fulfilled(self, event: Event) -> None:
        self.store.atomically(
            lambda tx: tell_poster(self.store, tx, "need_fulfilled", event,
                                   f"{event.data['need_id']}:fulfilled:poster"),
            event=event, consumer="on_need_fulfilled")

    @rpc
    def messages_for_need(self, need_id: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in m.items() if k != "recipient"}
                for m in self.store.messages_for_need(need_id)]


def remember_poster(store: NotificationsStore, tx: Tx, data: dict[str, Any]) -> None:
    contact = data.get("contact") or {}
    store.save_recipient(tx, {"_id": f"need:{data['need_id']}", "contact": contact,
                              "language": contact.get("language", "zh-CN")})


def tell_poster(store: NotificationsStore, tx: Tx, template: str, event: Event,
                message_id: str) -> None:
    data = event.data
    language = "zh-CN"  # resolved against the recipient's preference at delivery time
    store.add_message(tx, {
        "_id": message_id,
        "template": template,
        "need_id": data["need_id"],
        "recipient": f"need:{data['need_id']}",  # the poster; contact looked up when sent
        "language": language,
        "text": render(template, language, data),
        "state": "queued",
        "cause_event_id": event.event_id,
        "created_at": contract.now(),
    })
