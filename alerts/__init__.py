"""Alert rules, deduplication, silences, escalation and notifiers (issue: alerts)."""
