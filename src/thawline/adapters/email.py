"""Email over SMTP (smtplib): STARTTLS and authentication when configured.

The message id is the outbox id, so a receiver or a support desk can recognise a resend of the
same notification; it is also sent as ``X-Thawline-Idempotency-Key``.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

from thawline.adapters.delivery import DeliveryError


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to send."""

    host: str
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    sender: str = "Thawline <no-reply@thawline.local>"
    timeout: float = 10.0
    domain: str = "thawline.local"
    ca_file: str | None = None  # a private relay's CA; the system trust store otherwise


class SmtpSender:
    """Sends one plain-text message per call over a fresh SMTP session."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def send(self, *, to: str, subject: str, body: str, message_id: str, lang: str) -> tuple[int, str]:
        """Send; returns (reply code, receipt). Raises DeliveryError (permanent for 5xx replies)."""
        c = self.config
        msg = EmailMessage()
        msg["From"] = c.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = f"<{message_id}@{c.domain}>"
        msg["X-Thawline-Idempotency-Key"] = message_id
        msg["Content-Language"] = lang
        msg.set_content(body)
        try:
            with smtplib.SMTP(c.host, c.port, timeout=c.timeout) as smtp:
                if c.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=c.ca_file))
                if c.username:
                    smtp.login(c.username, c.password or "")
                refused = smtp.send_message(msg)
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
                status=exc.smtp_code,
                permanent=exc.smtp_code >= 500,
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0]
            raise DeliveryError(f"recipient refused ({code})", status=code, permanent=code >= 500) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP: {exc.__class__.__name__}: {exc}") from exc
        if refused:
            raise DeliveryError("recipient refused")
        return 250, msg["Message-ID"]
