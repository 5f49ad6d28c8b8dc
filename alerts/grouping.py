"""Grouping: alerts of one group (one provider, or one unit) within ``group_wait_s`` → one notification."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class PendingGroup:
    """A notification being gathered: flushed at ``flush_at_ms`` with every alert added until then."""

    key: str
    flush_at_ms: int
    fingerprints: tuple[str, ...]


Groups = Mapping[str, PendingGroup]


def group_key(rule_group_by: tuple[str, ...], labels: Mapping[str, str]) -> str:
    """The group of an alert: its values of the rule's ``group_by`` labels, e.g. ``provider=p1``."""
    return ",".join(f"{k}={labels.get(k, '')}" for k in rule_group_by) or "all"


def add(groups: Groups, key: str, fp: str, now_ms: int, group_wait_ms: int) -> Groups:
    """Put ``fp`` in its pending group; the first alert of a group starts its ``group_wait``."""
    cur = groups.get(key)
    if cur is not None and fp in cur.fingerprints:
        return groups
    new = dict(groups)
    if cur is None:
        new[key] = PendingGroup(key, now_ms + group_wait_ms, (fp,))
    else:
        new[key] = replace(cur, fingerprints=cur.fingerprints + (fp,))
    return new


def due(groups: Groups, now_ms: int) -> list[PendingGroup]:
    """The pending groups whose wait is over, oldest first."""
    return sorted(
        (g for g in groups.values() if g.flush_at_ms <= now_ms),
        key=lambda g: (g.flush_at_ms, g.key),
    )
