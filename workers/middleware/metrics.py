"""Prometheus metrics of a worker pool, served at ``/metrics`` on ``WORKER_METRICS_PORT``.

dramatiq forks several worker processes per pool, so the counters use prometheus-client's
multiprocess mode: every process writes its samples to files in one directory that the pool's
parent creates fresh at start (``prepare_pool_dir``) and hands down through
``PROMETHEUS_MULTIPROC_DIR``. One extra process, forked by dramatiq from this middleware's
``forks``, serves the sum of those files plus the queues' depth, read at scrape time with a
passive queue declare (no management plugin needed).

We do not use ``dramatiq.middleware.Prometheus``: it reads its port and one shared directory
from module-level environment variables at import time, so two pools (or two test runs) on
one machine would add up each other's files, and it reports no queue depth.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from dramatiq import Middleware
from dramatiq.common import dq_name, q_name, xq_name

from infra.amqp import amqp_urls
from infra.settings import Settings
from schemas.queues import WORK_QUEUES, capability_of

log = structlog.get_logger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BROKER_TIMEOUT_S = 2.0


def prepare_pool_dir(settings: Settings) -> str | None:
    """In the pool's parent, before dramatiq forks: a fresh metrics directory for this pool run."""
    if not settings.worker_metrics_port:
        return None
    path = tempfile.mkdtemp(prefix="gatekeeper-worker-metrics-", dir=settings.worker_metrics_dir or None)
    os.environ[MULTIPROC_ENV] = path
    return path


def remove_pool_dir(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def install(broker: Any, settings: Settings) -> None:
    """Add the metrics middleware when this pool serves metrics (``python -m workers`` prepared it)."""
    if not settings.worker_metrics_port:
        return
    if not os.environ.get(MULTIPROC_ENV):
        log.warning("worker.metrics_disabled", reason=f"{MULTIPROC_ENV} unset: start pools with python -m workers")
        return
    broker.add_middleware(WorkerMetrics())


def _labels(message: Any) -> tuple[str, str]:
    """The capability (a retry travels through ``<queue>.DQ``, still counted as ``<queue>``; a chat
    partition's messages count as ``chat``'s) and the actor."""
    return capability_of(q_name(message.queue_name)), message.actor_name


class WorkerMetrics(Middleware):
    """Processed, failed, retried and dead-lettered messages, and their duration, by queue and actor."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    @property
    def forks(self) -> list:
        return [serve_metrics]

    def after_process_boot(self, broker: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

        values.ValueClass = values.get_value_class()  # file-backed, even if imported before the env was set
        registry = CollectorRegistry()  # the samples live in the files; this only avoids global clashes
        labels = ["queue", "actor"]
        self.processed = Counter(
            "gatekeeper_worker_messages_processed",
            "Messages processed (successfully or not).",
            labels,
            registry=registry,
        )
        self.failed = Counter(
            "gatekeeper_worker_messages_failed", "Messages whose actor raised.", labels, registry=registry
        )
        self.retried = Counter(
            "gatekeeper_worker_messages_retried", "Messages re-enqueued for a retry.", labels, registry=registry
        )
        self.dead_lettered = Counter(
            "gatekeeper_worker_messages_dead_lettered",
            "Messages sent to the dead-letter queue.",
            labels,
            registry=registry,
        )
        self.in_progress = Gauge(
            "gatekeeper_worker_messages_in_progress",
            "Messages being processed now.",
            labels,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.duration = Histogram(
            "gatekeeper_worker_message_duration_seconds",
            "Time an actor spent on one message.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

    def before_process_message(self, broker: Any, message: Any) -> None:
        self._started[message.message_id] = time.perf_counter()
        self.in_progress.labels(*_labels(message)).inc()

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None, exception: Any = None) -> None:
        labels = _labels(message)
        started = self._started.pop(message.message_id, None)
        if started is not None:
            self.in_progress.labels(*labels).dec()
            self.duration.labels(*labels).observe(time.perf_counter() - started)
        self.processed.labels(*labels).inc()
        if exception is not None:
            self.failed.labels(*labels).inc()

    def after_skip_message(self, broker: Any, message: Any) -> None:
        if self._started.pop(message.message_id, None) is not None:
            self.in_progress.labels(*_labels(message)).dec()

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        # Retries re-enqueues with a backoff delay (into ``<queue>.DQ``); the worker that later moves
        # it from there to ``<queue>`` enqueues it again, without a delay: that is not a new retry.
        if delay is not None and "retries" in message.options:
            self.retried.labels(*_labels(message)).inc()

    def after_nack(self, broker: Any, message: Any) -> None:
        self.dead_lettered.labels(*_labels(message)).inc()

    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), os.environ[MULTIPROC_ENV])


# --- the exposition process -----------------------------------------------------------------------


def queue_names() -> list[str]:
    """Every queue a pool may hold messages in: the work queues (chat's partitions included), their
    delay and dead-letter queues. One not declared yet is left out of a scrape."""
    return [name for queue in WORK_QUEUES for name in (queue, dq_name(queue), xq_name(queue))]


def reported_as(name: str) -> str:
    """The queue label a queue is reported under: its capability's (``chat.p2.XQ`` -> ``chat.XQ``)."""
    base = q_name(name)
    return capability_of(base) + name[len(base) :]


class QueueDepthCollector:
    """Ready messages and consumers per queue, from a passive declare at each scrape; a chat
    partition's figures are added to ``chat``'s (consumers: the most any one of them has)."""

    def __init__(self, amqp_url: str) -> None:
        self._amqp_url = amqp_url

    def collect(self) -> Iterator[Any]:
        import pika
        from pika.exceptions import AMQPError, ChannelClosedByBroker
        from prometheus_client.core import GaugeMetricFamily

        ready = GaugeMetricFamily("gatekeeper_queue_messages_ready", "Messages ready in a queue.", labels=["queue"])
        consumers = GaugeMetricFamily("gatekeeper_queue_consumers", "Consumers of a queue.", labels=["queue"])
        up = GaugeMetricFamily("gatekeeper_queue_depth_up", "1 if RabbitMQ answered the queue-depth scrape.")
        nodes = []
        for url in amqp_urls(self._amqp_url):  # pika tries a cluster's nodes in order
            params = pika.URLParameters(url)
            params.socket_timeout = params.blocked_connection_timeout = BROKER_TIMEOUT_S
            params.connection_attempts = 1
            nodes.append(params)
        try:
            connection = pika.BlockingConnection(nodes)
        except (AMQPError, OSError) as exc:
            log.warning("worker.metrics_queue_depth_failed", error=repr(exc))
            up.add_metric([], 0)
            yield up
            return
        try:
            channel = connection.channel()
            counts: dict[str, list[int]] = {}  # label -> [ready, consumers]
            for name in queue_names():
                try:
                    frame = channel.queue_declare(queue=name, passive=True)
                except ChannelClosedByBroker:  # not declared yet (no pool consumed it): nothing to report
                    channel = connection.channel()
                    continue
                seen = counts.setdefault(reported_as(name), [0, 0])
                seen[0] += frame.method.message_count
                seen[1] = max(seen[1], frame.method.consumer_count)
            for label, (ready_count, consumer_count) in counts.items():
                ready.add_metric([label], ready_count)
                consumers.add_metric([label], consumer_count)
            up.add_metric([], 1)
        except (AMQPError, OSError) as exc:
            log.warning("worker.metrics_queue_depth_failed", error=repr(exc))
            up.add_metric([], 0)
        finally:
            if connection.is_open:
                connection.close()
        yield from (ready, consumers, up)


class _MetricsHandler(BaseHTTPRequestHandler):
    registry: Any = None

    def do_GET(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404, "only /metrics is served here")
            return
        body = generate_latest(self.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # scrapes are not worth a log line each


def serve_metrics() -> int:
    """The fork process: serve the pool's metrics until dramatiq stops it."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    settings = Settings()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, os.environ[MULTIPROC_ENV])
    registry.register(QueueDepthCollector(settings.amqp_url))
    handler = type("MetricsHandler", (_MetricsHandler,), {"registry": registry})
    server = ThreadingHTTPServer((settings.worker_metrics_host, settings.worker_metrics_port), handler)
    log.info("worker.metrics_serving", host=settings.worker_metrics_host, port=settings.worker_metrics_port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
