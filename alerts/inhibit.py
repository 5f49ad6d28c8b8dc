"""Inhibition: a firing source alert (a provider-wide outage) mutes matching target alerts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alerts.model import Matcher, matches_all


@dataclass(frozen=True)
class InhibitRule:
    """While an alert matching ``source`` fires, alerts matching ``target`` with equal ``equal`` labels are muted."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


def inhibited_by(
    fp: str,
    labels: Mapping[str, str],
    firing: Iterable[tuple[str, Mapping[str, str]]],
    rules: Iterable[InhibitRule],
) -> tuple[str, ...]:
    """Fingerprints of firing source alerts that inhibit the alert ``fp`` (never itself)."""
    rules = list(rules)
    if not rules:
        return ()
    out = set()
    firing = list(firing)
    for rule in rules:
        if not matches_all(rule.target, labels):
            continue
        for src_fp, src_labels in firing:
            if src_fp == fp or not matches_all(rule.source, src_labels):
                continue
            if all(src_labels.get(k, "") == labels.get(k, "") for k in rule.equal):
                out.add(src_fp)
    return tuple(sorted(out))
