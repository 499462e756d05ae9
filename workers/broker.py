"""The dramatiq broker every worker process uses, with its middleware and every actor. Imported by
dramatiq's CLI as the broker module; nothing else imports it.

Creating the broker opens no connection; pika connects lazily, per thread, after the fork.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.middleware import AsyncIO, Retries, default_middleware
from sentry_sdk.integrations.dramatiq import DramatiqIntegration

from infra import event_loop
from infra.amqp import TopologyBroker
from infra.logging import configure_logging
from infra.sentry import init_sentry
from infra.settings import Settings
from schemas.queues import CHAT_PARTITION_QUEUES
from workers.actors import declare_actors
from workers.calls import CallSweeper
from workers.middleware.correlation import LogContext
from workers.middleware.event_log import EventLog
from workers.middleware.fail_closed import FailClosed
from workers.middleware.lifetime import CloseOnShutdown
from workers.middleware.metrics import install as install_metrics
from workers.middleware.safe_retries import SafeRetries
from workers.partition_consumer import PARTITION_PREFETCH, PartitionConsumer
from workers.plans import MeterTicker
from workers.pool_slot import current_slot
from workers.resources import ResourceHolder

settings = Settings()
configure_logging(settings.log_level, settings.log_format, service="workers")
# Before the broker exists: sentry-sdk's dramatiq integration hooks into brokers as they are made.
init_sentry(settings, "workers", [DramatiqIntegration()])
event_loop.install(settings.event_loop)  # before the AsyncIO middleware makes its loop thread's loop
resources = ResourceHolder(settings)

# dramatiq's default middleware, with Retries replaced by one that never loses a message whose
# re-enqueue fails (workers/middleware/safe_retries.py).
# Queues are declared as AMQP_QUEUE_TYPE says (classic or quorum), exactly as ingress declares them;
# pika tries the nodes of a multi-node AMQP_URL in order on every (re)connect.
broker = TopologyBroker(
    url=list(settings.amqp_urls),
    queue_type=settings.amqp_queue_type,
    leads=slot.leads if (slot := current_slot()) else None,  # spreads the chat partitions (workers/pool_slot.py)
    # A partition's waiting messages are applied as one batch, still in order (workers/partition_consumer.py).
    partition_consumer=PartitionConsumer,
    partition_prefetch=PARTITION_PREFETCH,
    confirm_delivery=True,
    middleware=[SafeRetries() if m is Retries else m() for m in default_middleware],
)
# Each process names its connections, so RabbitMQ's management UI shows which process consumes what
# (and which one is a chat partition's active consumer).
for parameters in broker.parameters:
    parameters.client_properties = {"connection_name": f"gatekeeper-workers pid={os.getpid()}"}
# First of all: every other middleware's hooks then run inside the message's log context.
broker.add_middleware(LogContext(), before=type(broker.middleware[0]))
broker.add_middleware(AsyncIO())
shutdown = CloseOnShutdown(resources.close)
broker.add_middleware(shutdown)
# Added before Retries so its after_* hook runs after Retries has decided to give up.
broker.add_middleware(FailClosed(resources), before=Retries)
broker.add_middleware(EventLog(resources), before=Retries)  # likewise: logs failed only once Retries gave up
install_metrics(broker, settings)  # /metrics on WORKER_METRICS_PORT, when set
broker.add_middleware(CallSweeper(resources))  # ends dropped and silent calls, in billing processes
broker.add_middleware(MeterTicker(resources))  # reports AI usage to Stripe, in billing processes
dramatiq.set_broker(broker)

# Last: the actors, built from the command registry around the worker modules' handlers. None of
# those modules imports this one, so each of them imports on its own.
actors = declare_actors(broker, resources)
# The chat partitions carry chat_send_message and chat_send_batch messages (each actor is declared on
# the plain chat queue, where retries and replays go); a worker runs a message by its actor's name.
for partition in CHAT_PARTITION_QUEUES:
    broker.declare_queue(partition)
