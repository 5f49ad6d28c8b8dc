"""E-mail notifier over SMTP (aiosmtplib): a bilingual plain-text message per notice."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import aiosmtplib

from alerts.config import Smtp
from alerts.notifiers import PermanentError, RetryableError

STATUS_ZH = {"firing": "告警", "resolved": "已恢复", "acknowledged": "已确认"}


def compose(doc: dict[str, Any], sender: str, to: tuple[str, ...]) -> EmailMessage:
    """The e-mail for a notification or escalation: Chinese first, then English."""
    alerts = doc.get("alerts", [])
    status = doc.get("status", "")
    esc = f"（升级第{doc['step']}级）" if doc.get("type") == "escalation" else ""
    first = alerts[0] if alerts else {}
    subject = f"[{STATUS_ZH.get(status, status)}{esc}] {first.get('severity', '')} {first.get('summary_zh', '')}"
    if len(alerts) > 1:
        subject += f" 等{len(alerts)}条"
    lines = []
    for a in alerts:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(a.get("labels", {}).items()))
        lines.append(f"- [{a.get('severity')}] [{STATUS_ZH.get(a.get('state', ''), a.get('state'))}] "
                     f"{a.get('summary_zh')} / {a.get('summary_en')}  ({labels}; id {a.get('alert_id')})")  # fmt: skip
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["X-Opscenter-Notification-Id"] = str(doc.get("id", ""))
    msg.set_content(
        "威海市政务云运行监控指挥中心 告警通知 / Weihai gov-cloud opscenter alert\n\n"
        + "\n".join(lines)
        + "\n"
    )
    return msg


class EmailNotifier:
    """Sends notices by SMTP to a receiver's addresses."""

    def __init__(self, smtp: Smtp) -> None:
        self.smtp = smtp

    async def send(self, to: tuple[str, ...], doc: dict[str, Any]) -> None:
        """Send one message to ``to``; raise RetryableError or PermanentError on failure."""
        s = self.smtp
        msg = compose(doc, s.sender, to)
        try:
            await aiosmtplib.send(
                msg, hostname=s.host, port=s.port, timeout=s.timeout_s, start_tls=s.starttls,
                username=s.username or None, password=s.password or None,
            )  # fmt: skip
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if all(500 <= c < 600 for c in codes):
                raise PermanentError(f"recipients refused: {exc}") from exc
            raise RetryableError(f"recipients refused: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentError(f"SMTP {exc.code}: {exc.message}") from exc
            raise RetryableError(f"SMTP {exc.code}: {exc.message}") from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
