"""Escalation chains per severity (on-call → duty lead → bureau leader) with delays; pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """Notify ``receivers`` once the alert has fired ``after_s`` without an acknowledgement."""

    after_s: float
    receivers: tuple[str, ...]


#: severity → steps; step 0 (after_s 0) is the first notification, later steps escalate
Chains = Mapping[str, tuple[Step, ...]]


def step_due_ms(step: Step, started_ms: int, immediate: bool) -> int:
    """When a step is due: ``after_s`` past the alert's start, or at once in an assurance period."""
    return started_ms if immediate else started_ms + int(step.after_s * 1000)


def due_steps(chain: tuple[Step, ...], next_step: int, started_ms: int, now_ms: int, immediate: bool
              ) -> tuple[list[int], int | None]:  # fmt: skip
    """Indices of steps due by ``now_ms`` starting at ``next_step``, and when the next one is due."""
    due = []
    i = next_step
    while i < len(chain):
        at = step_due_ms(chain[i], started_ms, immediate)
        if at > now_ms:
            return due, at
        due.append(i)
        i += 1
    return due, None
