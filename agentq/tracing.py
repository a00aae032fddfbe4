"""OpenTelemetry tracing of Celery tasks and httpx calls: optional, off by default.

Install the extra (`pip install agentq[otel]`) and set `AGENTQ_OTEL=1`; the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_SERVICE_NAME` variables configure the exporter.
Without both, `setup_tracing()` does nothing and imports nothing.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

_done = False


def enabled() -> bool:
    return os.environ.get("AGENTQ_OTEL", "").lower() in ("1", "true", "yes")


def setup_tracing(service_name: str = "agentq") -> bool:
    """Install a tracer provider and instrument Celery and httpx. Returns whether it did."""
    global _done
    if _done or not enabled():
        return _done
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning("AGENTQ_OTEL=1 but the otel extra is not installed (%s)", exc.name)
        return False
    name = os.environ.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()
    _done = True
    log.info("OpenTelemetry tracing on (service %s)", name)
    return True


def connect_worker_signals() -> None:
    """Trace in each worker process (after fork, as the instrumentation requires)."""
    if not enabled():
        return
    from celery.signals import worker_process_init

    @worker_process_init.connect(weak=False)
    def _init(**_: object) -> None:
        setup_tracing("agentq-worker")

    # threads/gevent pools never fork: set up in the main process too
    setup_tracing("agentq-worker")
