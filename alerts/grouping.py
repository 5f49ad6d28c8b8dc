"""Grouping: alerts of one group (one provider, or one unit) within ``group_wait_s`` → one notification."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def add_all(groups: Groups, adds: Iterable[tuple[str, str]], now_ms: int, group_wait_ms: int) -> Groups:
    """Put each ``(key, fp)`` in its pending group, in order; the first alert of a group starts its
    ``group_wait``. One pass with a set per group: a flush adds thousands at once."""
    members: dict[str, set[str]] = {}
    joined: dict[str, list[str]] = {}
    for key, fp in adds:
        seen = members.get(key)
        if seen is None:
            cur = groups.get(key)
            seen = members[key] = set(cur.fingerprints) if cur is not None else set()
        if fp not in seen:
            seen.add(fp)
            joined.setdefault(key, []).append(fp)
    if not joined:
        return groups
    new = dict(groups)
    for key, fps in joined.items():
        cur = groups.get(key)
        if cur is None:
            new[key] = PendingGroup(key, now_ms + group_wait_ms, tuple(fps))
        else:
            new[key] = replace(cur, fingerprints=cur.fingerprints + tuple(fps))
    return new


def due(groups: Groups, now_ms: int) -> list[PendingGroup]:
    """The pending groups whose wait is over, oldest first."""
    return sorted(
        (g for g in groups.values() if g.flush_at_ms <= now_ms),
        key=lambda g: (g.flush_at_ms, g.key),
    )
