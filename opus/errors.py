"""Error taxonomy: every concrete error is Transient (retry with backoff) or Permanent (record once)."""

from __future__ import annotations


class OpusError(Exception):
    """Base of every error Opus raises on purpose."""


class TransientError(OpusError):
    """Worth retrying: rate limits, 5xx, timeouts, lost connections."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(OpusError):
    """Retrying will not help: bad requests, validation errors, broken data. Record it once."""


class ConfigError(PermanentError):
    """A setting is missing or malformed; the message names the setting."""


class FeedTransientError(TransientError):
    """The feed (Nivoda) failed in a way that may pass: 429, 5xx, timeout, connection error."""


class FeedPermanentError(PermanentError):
    """The feed refused the request: GraphQL validation error, 4xx, or an answer of the wrong shape."""


class FeedAuthError(FeedPermanentError):
    """The feed refused our credentials or token."""


class HoldDeniedError(PermanentError):
    """The feed refused to place a hold; the message carries its reason."""


class NotFoundError(PermanentError):
    """The thing asked for does not exist."""


class ConflictError(PermanentError):
    """The request conflicts with the current state (already held, sold, running...)."""


class ValidationFailed(PermanentError):
    """Input that breaks a rule of ours (as opposed to a malformed request)."""
