"""Secret redaction: every message that may reach a client, a log line or a trace passes here.

Workflows register the secrets they resolved (provider API keys, header values); ``redact``
replaces any occurrence with ``***``. Cheap when there is nothing to replace (one ``in`` check
per secret), so it can sit on error paths without thought.
"""

from __future__ import annotations

# Values shorter than this are too likely to occur by chance in ordinary text (characters).
MIN_SECRET_LEN = 6


class Redactor:
    __slots__ = ("_secrets",)

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, values: list[str]) -> None:
        self._secrets.update(v for v in values if len(v) >= MIN_SECRET_LEN)

    def redact(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, "***")
        return text


REDACTOR = Redactor()
