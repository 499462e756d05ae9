"""The dramatiq broker every worker process uses. Imported by dramatiq's CLI as the broker module.

Creating the broker opens no connection; pika connects lazily, per thread, after the fork.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import AsyncIO, Retries

from infra.logging import configure_logging
from infra.settings import Settings
from workers.fail_closed import FailClosed
from workers.lifetime import CloseOnShutdown
from workers.resources import ResourceHolder

settings = Settings()
configure_logging(settings.log_level, settings.log_format, service="workers")
resources = ResourceHolder(settings)

broker = RabbitmqBroker(url=settings.amqp_url, confirm_delivery=True)
broker.add_middleware(AsyncIO())
shutdown = CloseOnShutdown(resources.close)
broker.add_middleware(shutdown)
# Added before Retries so its after_* hook runs after Retries has decided to give up.
broker.add_middleware(FailClosed(resources), before=Retries)
dramatiq.set_broker(broker)

# Import the actors so that ``python -m dramatiq workers.broker`` registers them.
import workers.ai  # noqa: E402
import workers.billing  # noqa: E402
import workers.calls  # noqa: E402
import workers.chain  # noqa: E402
import workers.channels  # noqa: E402
import workers.chat  # noqa: E402
import workers.outbound  # noqa: E402
import workers.plans  # noqa: E402
import workers.tips  # noqa: E402, F401
