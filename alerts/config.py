"""The rule file (``alerts/rules.yaml``): rules, receivers, escalation, inhibition; validated at start.

:func:`parse_config` is pure (text in, :class:`Config` or :class:`ConfigError` out); every problem
names the file, the rule, the field and the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerts.assurance import AssurancePeriod
from alerts.assurance import check as check_period
from alerts.escalation import Chains, Step
from alerts.inhibit import InhibitRule
from alerts.model import LABEL_NAMES, SEVERITIES, Matcher, template_fields
from alerts.rules import DEFAULT_IDENTITY, OPS, WHERE_OPS, Condition, Rule, Selector, Threshold
from alerts.yamlfile import Checker, ConfigError, LineDict, Problem, load_yaml

DEFAULT_PATH = Path(__file__).with_name("rules.yaml")
CALENDAR_PATH = Path(__file__).with_name("calendar.yaml")
RULE_TYPES = ("threshold", "nodata", "event")
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass(frozen=True)
class WebhookTarget:
    """A webhook endpoint: JSON POST signed with HMAC-SHA256 of ``secret``."""

    url: str
    secret: str = field(repr=False)  # never in logs
    timeout_s: float = 5.0


@dataclass(frozen=True)
class Receiver:
    """A named destination (on-call, duty lead, leader …): webhooks and e-mail addresses."""

    name: str
    webhooks: tuple[WebhookTarget, ...] = ()
    emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotifyPolicy:
    """Retries of the notify stage: ``max_tries`` attempts, backoff base × 2ⁿ capped at max."""

    max_tries: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0


@dataclass(frozen=True)
class Smtp:
    """The SMTP relay for e-mail notifications."""

    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "opscenter@localhost"
    username: str = ""
    password: str = field(default="", repr=False)  # never in logs
    starttls: bool = False
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Config:
    """The validated rule file."""

    path: str = "<memory>"
    rules: tuple[Rule, ...] = ()
    inhibit: tuple[InhibitRule, ...] = ()
    escalation: Chains = field(default_factory=dict)
    receivers: dict[str, Receiver] = field(default_factory=dict)
    default_receivers: tuple[str, ...] = ()
    group_wait_s: float = 0.5
    resolved_retention_s: float = 3600.0
    immediate_severities: tuple[str, ...] = ("P1", "P2")
    notify: NotifyPolicy = NotifyPolicy()
    smtp: Smtp = Smtp()


TOP_KEYS = {"defaults", "rules", "receivers", "escalation", "inhibit", "notify", "smtp"}
RULE_KEYS = {"name", "type", "kind", "where", "severity", "labels", "group_by", "repeat_interval_s", "summary",
             "field", "op", "value", "for_s", "recover", "assurance", "after_s", "resolve_on", "resolve_after_s"}  # fmt: skip


def load_config(path: str | Path = DEFAULT_PATH) -> Config:
    """Read and validate a rule file; raises :class:`ConfigError` naming file, rule, field and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [Problem("", "(file)", 0, f"cannot read: {exc}")]) from exc
    return parse_config(text, str(p))


def parse_config(text: str, path: str = "<memory>") -> Config:
    """Validate rule-file text; every problem is collected before raising."""
    doc = load_yaml(text, path)
    ck = Checker()
    if not isinstance(doc, dict):
        raise ConfigError(
            path, [Problem("", "(top)", 1, "the file must be a mapping with a 'rules' list")]
        )
    ck.unknown_keys("", doc, TOP_KEYS)
    defaults = doc.get("defaults") or LineDict()
    ck.unknown_keys("", defaults, {"repeat_interval_s", "group_wait_s", "group_by", "resolved_retention_s",
                                   "immediate_severities", "receivers"}, "defaults.")  # fmt: skip
    repeat_s = (
        ck.number("", defaults, "repeat_interval_s", 3600.0, minimum=1, prefix="defaults.")
        or 3600.0
    )
    group_wait_s = ck.number("", defaults, "group_wait_s", 0.5, prefix="defaults.") or 0.0
    group_by = ck.strings(
        "", defaults, "group_by", ("provider",), choices=LABEL_NAMES, prefix="defaults."
    )
    receivers = _receivers(ck, doc.get("receivers"))
    default_receivers = ck.strings(
        "", defaults, "receivers", tuple(receivers)[:1], prefix="defaults."
    )
    escalation = _escalation(ck, doc.get("escalation"), receivers)
    for name in default_receivers:
        if name not in receivers:
            ck.add("", "defaults.receivers", defaults, f"unknown receiver {name!r}", "receivers")
    rules: list[Rule] = []
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list):
        ck.add("", "rules", doc, "must be a list of rules", "rules")
        raw_rules = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        rule = _rule(ck, raw, i, repeat_s, group_by)
        if rule is not None:
            if rule.name in seen:
                ck.add(rule.name, "name", raw, "duplicate rule name", "name")
            seen.add(rule.name)
            rules.append(rule)
    inhibit = _inhibit(ck, doc.get("inhibit"))
    notify = doc.get("notify") or {}
    ck.unknown_keys("", notify, {"max_tries", "base_delay_s", "max_delay_s"}, "notify.")
    policy = NotifyPolicy(int(ck.number("", notify, "max_tries", 5, minimum=1, prefix="notify.") or 5),
                          ck.number("", notify, "base_delay_s", 0.5, prefix="notify.") or 0.0,
                          ck.number("", notify, "max_delay_s", 30.0, prefix="notify.") or 0.0)  # fmt: skip
    smtp_doc = doc.get("smtp") or {}
    ck.unknown_keys(
        "",
        smtp_doc,
        {"host", "port", "sender", "username", "password", "password_env", "starttls", "timeout_s"},
        "smtp.",
    )
    smtp = Smtp(ck.string("", smtp_doc, "host", "127.0.0.1", prefix="smtp.") or "127.0.0.1",
                int(ck.number("", smtp_doc, "port", 25, minimum=1, prefix="smtp.") or 25),
                ck.string("", smtp_doc, "sender", "opscenter@localhost", prefix="smtp.") or "",
                str(smtp_doc.get("username", "")), ck.secret("", smtp_doc, "password", prefix="smtp.") or "",
                bool(smtp_doc.get("starttls", False)),
                ck.number("", smtp_doc, "timeout_s", 10.0, minimum=0.1, prefix="smtp.") or 10.0)  # fmt: skip
    immediate = ck.strings(
        "", defaults, "immediate_severities", ("P1", "P2"), choices=SEVERITIES, prefix="defaults."
    )
    retention = ck.number("", defaults, "resolved_retention_s", 3600.0, prefix="defaults.") or 0.0
    if ck.problems:
        raise ConfigError(path, ck.problems)
    return Config(path, tuple(rules), inhibit, escalation, receivers, default_receivers, group_wait_s, retention,
                  immediate, policy, smtp)  # fmt: skip


def _receivers(ck: Checker, doc: Any) -> dict[str, Receiver]:
    out: dict[str, Receiver] = {}
    if doc is None:
        return out
    if not isinstance(doc, dict):
        ck.add("", "receivers", doc, "must be a mapping of name → {webhooks, emails}")
        return out
    for name, spec in doc.items():
        spec = spec or LineDict()
        pre = f"receivers.{name}."
        ck.unknown_keys("", spec, {"webhooks", "emails"}, pre)
        hooks = []
        for k, h in enumerate(spec.get("webhooks") or []):
            url = ck.string("", h, "url", prefix=f"{pre}webhooks[{k}].")
            secret = ck.secret("", h, "secret", prefix=f"{pre}webhooks[{k}].")
            timeout = (
                ck.number("", h, "timeout_s", 5.0, minimum=0.1, prefix=f"{pre}webhooks[{k}].")
                or 5.0
            )
            if url and not url.startswith(("http://", "https://")):
                ck.add(
                    "", f"{pre}webhooks[{k}].url", h, "must start with http:// or https://", "url"
                )
            if url is None or secret is None:
                ck.add("", f"{pre}webhooks[{k}]", h, "needs url and secret or secret_env (HMAC-SHA256 key)")
                continue
            hooks.append(WebhookTarget(url, secret, timeout))
        emails = ck.strings("", spec, "emails", (), prefix=pre)
        for e in emails:
            if "@" not in e:
                ck.add("", f"{pre}emails", spec, f"not an e-mail address: {e!r}", "emails")
        out[str(name)] = Receiver(str(name), tuple(hooks), emails)
    return out


def _escalation(ck: Checker, doc: Any, receivers: dict[str, Receiver]) -> Chains:
    out: dict[str, tuple[Step, ...]] = {}
    if doc is None:
        return out
    if not isinstance(doc, dict):
        ck.add("", "escalation", doc, "must map a severity (P1–P4) to a list of steps")
        return out
    for sev, steps in doc.items():
        if sev not in SEVERITIES:
            ck.add(
                "",
                f"escalation.{sev}",
                doc,
                f"unknown severity; expected one of {', '.join(SEVERITIES)}",
                sev,
            )
            continue
        chain: list[Step] = []
        for k, s in enumerate(steps or []):
            pre = f"escalation.{sev}[{k}]."
            after = ck.number("", s, "after_s", 0.0, prefix=pre) or 0.0
            names = ck.strings("", s, "receivers", (), prefix=pre)
            for n in names:
                if n not in receivers:
                    ck.add("", pre + "receivers", s, f"unknown receiver {n!r}", "receivers")
            if k == 0 and after != 0:
                ck.add(
                    "",
                    pre + "after_s",
                    s,
                    "the first step is the first notification: after_s must be 0",
                    "after_s",
                )
            if chain and after < chain[-1].after_s:
                ck.add("", pre + "after_s", s, "steps must be in increasing after_s", "after_s")
            chain.append(Step(after, names))
        out[sev] = tuple(chain)
    return out


def _inhibit(ck: Checker, doc: Any) -> tuple[InhibitRule, ...]:
    out = []
    for k, item in enumerate(doc or []):
        pre = f"inhibit[{k}]."
        ck.unknown_keys("", item, {"source", "target", "equal"}, pre)
        src = _matchers(ck, "", item, "source", pre)
        tgt = _matchers(ck, "", item, "target", pre)
        equal = ck.strings("", item, "equal", (), prefix=pre)
        if not src or not tgt:
            ck.add("", pre + "source", item, "source and target need at least one matcher each")
        out.append(InhibitRule(src, tgt, equal))
    return tuple(out)


def _matchers(ck: Checker, rule: str, doc: Any, key: str, pre: str) -> tuple[Matcher, ...]:
    out = []
    for text in ck.strings(rule, doc, key, (), prefix=pre):
        try:
            out.append(Matcher.parse(text))
        except ValueError as exc:
            ck.add(rule, pre + key, doc, str(exc), key)
    return tuple(out)


def _where(ck: Checker, name: str, doc: Any, key: str, pre: str = "") -> tuple[Condition, ...]:
    raw = doc.get(key) if isinstance(doc, dict) else None
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        ck.add(
            name,
            pre + key,
            doc,
            "must map a field (label, kind or data.<name>) to a value or {op: value}",
            key,
        )
        return ()
    out = []
    for path, cond in raw.items():
        path = str(path)
        if path not in LABEL_NAMES and path != "kind" and not path.startswith("data."):
            ck.add(
                name,
                f"{pre}{key}.{path}",
                raw,
                "field must be a label, 'kind' or 'data.<name>'",
                path,
            )
            continue
        if isinstance(cond, dict):
            for op, v in cond.items():
                if op not in WHERE_OPS:
                    ck.add(
                        name,
                        f"{pre}{key}.{path}",
                        raw,
                        f"unknown operator {op!r}; one of {WHERE_OPS}",
                        path,
                    )
                elif op in ("in", "not_in") and not isinstance(v, list):
                    ck.add(name, f"{pre}{key}.{path}", raw, f"{op} needs a list", path)
                elif op in ("gt", "gte", "lt", "lte") and (
                    isinstance(v, bool) or not isinstance(v, (int, float))
                ):
                    ck.add(name, f"{pre}{key}.{path}", raw, f"{op} needs a number", path)
                else:
                    out.append(Condition(path, op, tuple(v) if isinstance(v, list) else v))
        elif isinstance(cond, list):
            out.append(Condition(path, "in", tuple(cond)))
        else:
            out.append(Condition(path, "eq", cond))
    return tuple(out)


def _threshold(
    ck: Checker, name: str, doc: Any, base: Threshold | None, pre: str = ""
) -> Threshold | None:
    fld = ck.string(name, doc, "field", base.field if base else None, prefix=pre)
    op = ck.string(name, doc, "op", base.op if base else None, choices=tuple(OPS), prefix=pre)
    value = ck.number(
        name, doc, "value", base.value if base else None, minimum=float("-inf"), prefix=pre
    )
    for_s = ck.number(name, doc, "for_s", base.for_s if base else 0.0, prefix=pre) or 0.0
    if fld is None or op is None or value is None:
        if base is None:
            ck.add(name, pre + "field", doc, "a threshold rule needs field, op and value")
        return None
    if not (fld.startswith("data.") or fld in ("value",)):
        ck.add(name, pre + "field", doc, "must name a data field: data.<name>", "field")
    rec = doc.get("recover") if isinstance(doc, dict) else None
    flipped = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}[op]
    if isinstance(rec, dict):
        d_op = base.recover_op if base else flipped
        r_op = ck.string(name, rec, "op", d_op, choices=tuple(OPS), prefix=pre + "recover.") or d_op
        r_val = ck.number(name, rec, "value", value, minimum=float("-inf"), prefix=pre + "recover.")
        r_for = (
            ck.number(
                name, rec, "for_s", base.recover_for_s if base else 0.0, prefix=pre + "recover."
            )
            or 0.0
        )
    elif isinstance(rec, (int, float)) and not isinstance(rec, bool):
        r_op, r_val, r_for = flipped, float(rec), 0.0
    elif base is not None and rec is None:
        r_op, r_val, r_for = base.recover_op, base.recover_value, base.recover_for_s
    else:
        r_op, r_val, r_for = flipped, value, 0.0
    if r_val is None:
        r_val = value
    # the recovery must not overlap the firing condition, or an alert would fire and resolve at once
    if _overlap(op, value, r_op, r_val):
        ck.add(name, pre + "recover.value", rec if isinstance(rec, dict) else doc,
               f"recovery ({r_op} {r_val:g}) overlaps the firing condition ({op} {value:g})", "value")  # fmt: skip
    return Threshold(fld, op, float(value), for_s, r_op, float(r_val), r_for)


def _overlap(op: str, value: float, r_op: str, r_value: float) -> bool:
    """Whether some number satisfies both the firing and the recovery condition."""
    up, r_up = op.startswith(">"), r_op.startswith(">")
    if up == r_up:
        return True
    lo_op, lo, hi_op, hi = (op, value, r_op, r_value) if up else (r_op, r_value, op, value)
    return lo < hi or (lo == hi and lo_op == ">=" and hi_op == "<=")


def _rule(ck: Checker, raw: Any, i: int, repeat_s: float, group_by: tuple[str, ...]) -> Rule | None:
    if not isinstance(raw, dict):
        ck.add(f"#{i + 1}", "(rule)", raw, "a rule must be a mapping")
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not name or not set(name) <= NAME_CHARS:
        ck.add(f"#{i + 1}", "name", raw, "a rule needs a name of a-z, 0-9, _ and -", "name")
        return None
    ck.unknown_keys(name, raw, RULE_KEYS)
    rtype = ck.string(name, raw, "type", None, choices=RULE_TYPES)
    if rtype is None:
        if "type" not in raw:
            ck.add(name, "type", raw, f"required: one of {', '.join(RULE_TYPES)}")
        return None
    kinds = ck.strings(name, raw, "kind", ())
    if rtype == "event" and not kinds:
        ck.add(name, "kind", raw, "an event rule needs the event kind(s) it fires on", "kind")
    sev_raw = raw.get("severity", "P3")
    from_event = isinstance(sev_raw, dict) and sev_raw.get("from_event")
    severity = sev_raw.get("default", "P3") if isinstance(sev_raw, dict) else sev_raw
    if sev_raw == "from_event":
        from_event, severity = True, "P3"
    if severity not in SEVERITIES:
        ck.add(
            name,
            "severity",
            raw,
            f"must be one of {', '.join(SEVERITIES)} or from_event",
            "severity",
        )
        severity = "P3"
    identity = ck.strings(name, raw, "labels", DEFAULT_IDENTITY)
    for lb in identity:
        if lb not in LABEL_NAMES and not (
            lb.startswith("data.") and len(lb) > 5 and "." not in lb[5:]
        ):
            ck.add(
                name,
                "labels",
                raw,
                f"{lb!r} is not a label ({', '.join(LABEL_NAMES)}) or data.<name>",
                "labels",
            )
    if "severity" in identity:
        ck.add(
            name,
            "labels",
            raw,
            "severity is an attribute of an alert, not part of its identity",
            "labels",
        )
    rule_group_by = ck.strings(name, raw, "group_by", group_by, choices=LABEL_NAMES)
    repeat = ck.number(name, raw, "repeat_interval_s", repeat_s, minimum=1) or repeat_s
    summary = raw.get("summary")
    zh = en = ""
    if (
        not isinstance(summary, dict)
        or not isinstance(summary.get("zh"), str)
        or not isinstance(summary.get("en"), str)
    ):
        ck.add(
            name,
            "summary",
            raw,
            "needs a Chinese and an English template: {zh: …, en: …}",
            "summary",
        )
    else:
        zh, en = summary["zh"], summary["en"]
        for lang, text in (("zh", zh), ("en", en)):
            for f in template_fields(text):
                ok = (
                    f in LABEL_NAMES
                    or f.startswith("data.")
                    or f in ("rule", "kind", "value", "threshold", "for_s", "after_s", "severity")
                    or f in {lb[5:] for lb in identity if lb.startswith("data.")}
                )
                if not ok:
                    ck.add(name, f"summary.{lang}", summary, f"unknown placeholder {{{f}}}", lang)
    select = Selector(kinds, _where(ck, name, raw, "where"))
    rule = Rule(
        name, rtype, select, severity, bool(from_event), identity, rule_group_by, repeat, zh, en
    )
    if rtype == "threshold":
        thr = _threshold(ck, name, raw, None)
        tight = None
        if thr is not None and isinstance(raw.get("assurance"), dict):
            a = raw["assurance"]
            ck.unknown_keys(name, a, {"value", "recover", "for_s"}, "assurance.")
            tight = _threshold(ck, name, a, thr, "assurance.")
        return Rule(**{**rule.__dict__, "threshold": thr, "assurance_threshold": tight})
    if rtype == "nodata":
        after = ck.number(name, raw, "after_s", None, minimum=1)
        if after is None:
            ck.add(
                name,
                "after_s",
                raw,
                "a nodata rule needs after_s (seconds without data)",
                "after_s",
            )
            after = 0.0
        tight_after = None
        if isinstance(raw.get("assurance"), dict):
            tight_after = ck.number(
                name, raw["assurance"], "after_s", None, minimum=1, prefix="assurance."
            )
        return Rule(**{**rule.__dict__, "after_s": after, "assurance_after_s": tight_after})
    resolve_on = None
    ro = raw.get("resolve_on")
    if ro is not None:
        if not isinstance(ro, dict) or "kind" not in ro:
            ck.add(name, "resolve_on", raw, "needs {kind: …, where: {…}}", "resolve_on")
        else:
            ck.unknown_keys(name, ro, {"kind", "where"}, "resolve_on.")
            resolve_on = Selector(ck.strings(name, ro, "kind", (), prefix="resolve_on."),
                                  _where(ck, name, ro, "where", "resolve_on."))  # fmt: skip
    resolve_after = ck.number(name, raw, "resolve_after_s", None, minimum=1)
    return Rule(**{**rule.__dict__, "resolve_on": resolve_on, "resolve_after_s": resolve_after})


def load_calendar(path: str | Path = CALENDAR_PATH) -> tuple[AssurancePeriod, ...]:
    """Read the assurance calendar data file (``periods:`` list); problems name file, entry, field, line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [Problem("", "(file)", 0, f"cannot read: {exc}")]) from exc
    return parse_calendar(text, str(p))


def parse_calendar(text: str, path: str = "<memory>") -> tuple[AssurancePeriod, ...]:
    """Validate calendar text into assurance periods."""
    doc = load_yaml(text, path) or LineDict()
    ck = Checker()
    ck.unknown_keys("", doc, {"periods"})
    out, seen = [], set()
    items = doc.get("periods") or [] if isinstance(doc, dict) else []
    for j, raw in enumerate(items):
        period, problems = check_period(dict(raw) if isinstance(raw, dict) else {})
        for f, _zh, en in problems:
            ck.add(
                str(raw.get("id", f"#{j + 1}")) if isinstance(raw, dict) else f"#{j + 1}",
                f,
                raw,
                en,
                f,
            )
        if period:
            if period.id in seen:
                ck.add(period.id, "id", raw, "duplicate period id", "id")
            seen.add(period.id)
            out.append(period)
    if ck.problems:
        raise ConfigError(path, ck.problems)
    return tuple(out)
