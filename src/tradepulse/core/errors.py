"""The exception hierarchy of tradepulse.

Every error raised on purpose by tradepulse derives from one root, so callers can catch
``TradepulseError`` and know they have seen everything of ours. Third-party exceptions are
translated where they enter (``raise ... from e``)::

    TradepulseError
    ├── ConfigError            a setting is missing or has a bad value (names the variable)
    ├── InvalidTradeError      a trade broke a rule of the wire format (names field and rule)
    ├── WindowSpecError        a window list or duration cannot be parsed
    ├── RuleError              a rule is invalid: every error with its JSON path (core/rules.py)
    ├── InputError             an input file or stream cannot be read
    ├── BrokerError            the message broker cannot be reached or refused an operation
    ├── AuthError              a bearer token is missing, malformed, expired or forged (reason)
    └── StoreUnavailableError  the live-state store (Redis) cannot be reached or failed
        └── HistoryUnavailableError  the history database (PostgreSQL) cannot be reached
                                     or a statement failed

Catching ``StoreUnavailableError`` covers both stores (the persister retries either).
"""


class TradepulseError(Exception):
    """Root of every error raised on purpose by tradepulse."""


class ConfigError(TradepulseError):
    """A configuration value is missing or invalid; the message names the variable."""


class InvalidTradeError(TradepulseError):
    """A trade violates a rule of the wire format.

    ``field`` is the offending field (``"$"`` for the whole message) and ``rule`` a short,
    bounded code (``missing``, ``type``, ``range``, ``non_finite`` ...) used as a metric label.
    """

    def __init__(self, field: str, rule: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.rule = rule
        self.detail = detail

    @property
    def reason(self) -> str:
        """``field:rule``, the bounded label of the rejection."""
        return f"{self.field}:{self.rule}"


class WindowSpecError(TradepulseError):
    """A window list or a duration string is invalid."""


class InputError(TradepulseError):
    """An input file or stream cannot be opened or read."""


class BrokerError(TradepulseError):
    """The message broker (Kafka) cannot be reached or refused an operation."""


class AuthError(TradepulseError):
    """A bearer token was refused. ``reason`` is a short, bounded code (``missing``,
    ``malformed``, ``expired``, ``not_yet_valid``, ``bad_signature``, ``wrong_algorithm``,
    ``invalid_claims``, ``not_configured``); the message is safe to show the client."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class StoreUnavailableError(TradepulseError):
    """The live-state store (Redis) cannot be reached or a command failed; the base of
    ``HistoryUnavailableError``, so catching it covers every store."""


class HistoryUnavailableError(StoreUnavailableError):
    """The history database (PostgreSQL) cannot be reached or a statement failed."""
