"""Topic epochs: which incarnation of a topic's log stored positions refer to (sql 0010)."""

from __future__ import annotations

import secrets

from opscenter.store import AsyncStore


async def new_epoch(store: AsyncStore, topic: str) -> str:
    """Record that ``topic`` was (re)created: positions from now on belong to a new log."""
    epoch = secrets.token_hex(4)
    await store.insert_columns("topic_epochs", [[topic], [epoch]], ["topic", "epoch"])
    return epoch


async def current_epoch(store: AsyncStore, topic: str) -> str:
    """The epoch of the topic's current log (created on first use)."""
    rows = await store.query(
        "SELECT argMax(epoch, created) FROM topic_epochs WHERE topic = {t:String} HAVING count() > 0",
        {"t": topic},
    )
    return rows[0][0] if rows else await new_epoch(store, topic)


def stored_topic(topic: str, epoch: str) -> str:
    """The ``src_topic`` value stored with a row: the topic and its epoch."""
    return f"{topic}#{epoch}"
