"""A mail sink for a developer's machine: an SMTP server on loopback that keeps every
message it is given as an `.eml` file and logs one line naming it. `jobsvc run` starts one
in JOBS_DEV_MODE (unless JOBS_SMTP_HOST or JOBS_SMTP_PORT is set) and points `send_email`
at it; it never runs otherwise."""

import itertools
import logging
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from service import localservers

log = logging.getLogger("jobsvc.mail")


class Keep:
    """aiosmtpd's handler: each message's bytes into `directory`, one file a message."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._serial = itertools.count(1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        made = datetime.now(UTC)
        path = self.directory / f"{made:%Y%m%dT%H%M%S.%f}-{next(self._serial)}.eml"
        path.write_bytes(raw)
        subject = message_from_bytes(raw, policy=policy.default).get("Subject", "")
        log.info("mail to %s (%r) kept in %s", ", ".join(envelope.rcpt_tos), str(subject), path)
        return "250 OK: kept"


class MailSink:
    """The sink on 127.0.0.1:`port` (a free port for 0), keeping messages in `directory`."""

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.directory = directory
        self.port = port or localservers.free_port()
        self._controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        localservers.check_free("mail sink", "127.0.0.1", self.port)
        self.directory.mkdir(parents=True, exist_ok=True)
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # a line per SMTP command
        self._controller = Controller(Keep(self.directory), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
