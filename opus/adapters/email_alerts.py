"""Alert e-mails through Resend's HTTP API (`RESEND_API_KEY`, `ALERT_EMAIL_TO`, `ALERT_EMAIL_FROM`)."""

from __future__ import annotations

import httpx

from opus.errors import PermanentError, TransientError

RESEND_ENDPOINT = "https://api.resend.com/emails"


class ResendNotifier:
    """Sends one plain-text e-mail per alert. One HTTP client, reused."""

    def __init__(
        self, api_key: str, sender: str, recipients: list[str], *, endpoint: str = RESEND_ENDPOINT,
        timeout_s: float = 10.0,
    ) -> None:
        self._endpoint = endpoint
        self._sender = sender
        self._recipients = recipients
        self._http = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {api_key}"})

    def send(self, subject: str, text: str) -> None:
        body = {"from": self._sender, "to": self._recipients, "subject": subject, "text": text}
        try:
            response = self._http.post(self._endpoint, json=body)
        except httpx.HTTPError as exc:
            raise TransientError(f"alert e-mail not sent: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"alert e-mail not sent: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise PermanentError(f"alert e-mail refused: HTTP {response.status_code} {response.text[:200]}")

    def close(self) -> None:
        self._http.close()
