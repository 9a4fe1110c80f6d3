"""OpenTelemetry tracing, optional: on only when ``TRADEPULSE_OTEL_ENDPOINT`` is set.

The service layer calls ``span(name, attributes)`` around the work it traces and reads
``trace_id(span)`` to stamp alerts. While tracing is off (the default) ``span`` returns one
shared do-nothing object: no OpenTelemetry module is imported, no context is attached, and
the cost on the hot path is a global read and a call. ``configure`` (called by the CLI)
installs a tracer provider with a batching OTLP/HTTP exporter; tests call ``install`` with
an in-memory exporter and ``uninstall`` afterwards.

The provider is kept here, not registered as OpenTelemetry's global one: the global can be
set only once per process, and tradepulse's spans need nothing from it. Spans nest through
OpenTelemetry's context (a ``contextvars`` variable), so each thread has its own parent.

Span names and attributes (``tradepulse.*``): ``batch`` (trades, tokens, partitions,
rejected) with children ``batch.decode``, ``batch.apply``, ``redis.write``, ``kafka.commit``;
``scan`` (tokens, rules, alerts, scan_ms) with ``scan.evaluate`` and ``redis.write``;
``bars.persist`` / ``alerts.persist`` with ``postgres.write`` and ``redis.ack``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Tracer

    from tradepulse.config import Settings

log = logging.getLogger(__name__)

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[int] | Sequence[float]


class SpanLike(Protocol):
    """What the service layer uses of a span (OpenTelemetry's ``Span`` has it all)."""

    def is_recording(self) -> bool: ...

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...


class _NullSpan:
    """The span while tracing is off: records nothing, is its own context manager."""

    __slots__ = ()

    def is_recording(self) -> bool:
        return False

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        return None

    def __enter__(self) -> _NullSpan:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


NULL_SPAN = _NullSpan()
_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def enabled() -> bool:
    return _tracer is not None


def span(
    name: str, attributes: Mapping[str, AttributeValue] | None = None
) -> AbstractContextManager[SpanLike]:
    """A span named ``name``, child of the current one, current while the ``with`` runs
    (an exception is recorded on it and re-raised). ``NULL_SPAN`` while tracing is off."""
    tracer = _tracer
    if tracer is None:
        return NULL_SPAN
    return tracer.start_as_current_span(name, attributes=attributes)


def trace_id(span: SpanLike) -> str | None:
    """The span's trace id as 32 lowercase hex digits (W3C form), ``None`` while tracing is
    off (the null span has none)."""
    if span is NULL_SPAN:
        return None
    from opentelemetry.trace import Span

    assert isinstance(span, Span)
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def install(processor: SpanProcessor, service_name: str) -> TracerProvider:
    """Turn tracing on with ``processor`` (an exporter behind it); replaces a previous
    installation (shut down first)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    global _tracer, _provider  # the process's one tracer, like its logging
    uninstall()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}),
                              shutdown_on_exit=False)  # fmt: skip
    provider.add_span_processor(processor)
    _provider, _tracer = provider, provider.get_tracer("tradepulse")
    return provider


def uninstall() -> None:
    """Turn tracing off, exporting what is buffered first."""
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def otlp_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base address (``/v1/traces`` appended
    unless it is there already)."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


def configure(settings: Settings, role: str) -> bool:
    """Tracing for a process of ``role`` (``worker``, ``persist``, ``rebuild``): spans
    batched and sent to ``TRADEPULSE_OTEL_ENDPOINT`` over OTLP/HTTP (protobuf), with the
    service name ``TRADEPULSE_OTEL_SERVICE_NAME`` or ``tradepulse-<role>``. Does nothing
    (and imports nothing) when the endpoint is unset. Returns whether tracing is on."""
    if not settings.otel_endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    url = otlp_traces_url(settings.otel_endpoint)
    install(BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=10)),
            settings.otel_service_name or f"tradepulse-{role}")  # fmt: skip
    log.info("tracing on endpoint=%s", url)
    return True
