"""Inhibition: a firing source alert (a provider-wide outage) mutes matching target alerts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alerts.model import Matcher, matches_all


@dataclass(frozen=True)
class InhibitRule:
    """While an alert matching ``source`` fires, alerts matching ``target`` with equal ``equal`` labels are muted."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


SourceIndex = list[tuple[InhibitRule, dict[tuple[str, ...], list[str]]]]


def index_sources(firing: Iterable[tuple[str, Mapping[str, str]]], rules: Iterable[InhibitRule]) -> SourceIndex:
    """Firing source alerts of each rule, keyed by their ``equal`` labels (built once per evaluation).

    Checking every alert against every other is quadratic: with thousands of firing alerts it
    held the event loop for seconds; with the index each alert costs one lookup per rule.
    """
    firing = list(firing)
    out: SourceIndex = []
    for rule in rules:
        by_key: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for fp, labels in firing:
            if matches_all(rule.source, labels):
                by_key[tuple(labels.get(k, "") for k in rule.equal)].append(fp)
        out.append((rule, by_key))
    return out


def inhibited_by_index(fp: str, labels: Mapping[str, str], index: SourceIndex) -> tuple[str, ...]:
    """Fingerprints of firing source alerts that inhibit the alert ``fp`` (never itself)."""
    out: set[str] = set()
    for rule, by_key in index:
        if not by_key or not matches_all(rule.target, labels):
            continue
        for src_fp in by_key.get(tuple(labels.get(k, "") for k in rule.equal), ()):
            if src_fp != fp:
                out.add(src_fp)
    return tuple(sorted(out)) if out else ()


def inhibited_by(
    fp: str,
    labels: Mapping[str, str],
    firing: Iterable[tuple[str, Mapping[str, str]]],
    rules: Iterable[InhibitRule],
) -> tuple[str, ...]:
    """Fingerprints of firing source alerts that inhibit the alert ``fp`` (never itself)."""
    return inhibited_by_index(fp, labels, index_sources(firing, rules))
