"""`send_email`: one message through SMTP (standard library), configured by JOBS_SMTP_*.

A message that waited for other jobs (`depends_on`, or a batch's `on_complete`) ends with
their outcome: how many finished, failed or were canceled, and each one's id, task and
status (the first 100). That is the "tell me when all 500 thumbnails are done" email."""

import smtplib
import ssl
from collections import Counter
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from pydantic import ConfigDict, EmailStr, Field, model_validator

from service.task_api import PermanentError, TaskArgs, current, parents, task

LISTED_PARENTS = 100


class EmailArgs(TaskArgs):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"to": ["ada@example.com"], "subject": "Welcome", "text": "Hello Ada"}]
        }
    )

    to: list[EmailStr] = Field(min_length=1, max_length=50, description="recipients")
    subject: str = Field(min_length=1, max_length=998, pattern=r"^[^\r\n]*$")
    text: str | None = Field(default=None, max_length=1_000_000, description="plain-text body")
    html: str | None = Field(default=None, max_length=1_000_000, description="HTML body")
    reply_to: EmailStr | None = None

    @model_validator(mode="after")
    def _has_a_body(self) -> "EmailArgs":
        if self.text is None and self.html is None:
            raise ValueError("give text, html, or both")
        return self


@task(
    name="send_email",
    queue="email",
    timeout_s=60,
    max_attempts=5,
    backoff_s=30,
    rate_limit="smtp",  # its rate: JOBS_RATE_LIMITS="smtp=10/s", say
)
def send_email(args: EmailArgs) -> dict[str, Any]:
    """Send an email (text and/or HTML) through the configured SMTP server."""
    settings = current().settings
    outcome = _outcome(parents())
    if outcome:
        args = args.model_copy(update={"text": (args.text or "").rstrip() + "\n\n" + outcome})
    message = _message(args, settings.smtp_from)
    smtp_class = smtplib.SMTP_SSL if settings.smtp_ssl else smtplib.SMTP
    # Connection failures raise and are retried; refusals that would repeat are permanent.
    with smtp_class(
        settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s
    ) as smtp:
        if settings.smtp_starttls and not settings.smtp_ssl:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            try:
                smtp.login(settings.smtp_user, password)
            except smtplib.SMTPAuthenticationError as exc:
                raise PermanentError(f"SMTP login refused ({exc.smtp_code})") from None
        try:
            refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"every recipient was refused: {sorted(exc.recipients)}") from None
    return {
        "message_id": message["Message-ID"],
        "accepted": [to for to in args.to if to not in refused],
        "refused": sorted(refused),
    }


def _outcome(waited_for: list[dict[str, Any]]) -> str:
    """The jobs the message waited for, as a plain-text summary ("" for none)."""
    if not waited_for:
        return ""
    counts = Counter(str(job["status"]) for job in waited_for)
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    lines = [f"-- sent after {len(waited_for)} jobs: {tally}"]
    lines += [f"{job['id']}  {job['task']}  {job['status']}" for job in waited_for[:LISTED_PARENTS]]
    if len(waited_for) > LISTED_PARENTS:
        lines.append(f"... and {len(waited_for) - LISTED_PARENTS} more")
    return "\n".join(lines)


def _message(args: EmailArgs, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(args.to)
    message["Subject"] = args.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    if args.reply_to:
        message["Reply-To"] = args.reply_to
    if args.text is not None:
        message.set_content(args.text)
        if args.html is not None:
            message.add_alternative(args.html, subtype="html")
    else:
        message.set_content(args.html or "", subtype="html")
    return message
