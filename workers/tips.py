"""The tip actor of the ``billing`` queue."""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog

from schemas.channels import user_channel
from schemas.queues import BILLING_QUEUE, SEND_TIP_ACTOR
from schemas.tips import SendTipCommand, TipFailed
from workers import tips_service
from workers.broker import resources
from workers.chat import RETRY_POLICY
from workers.effects import carry_out
from workers.emits import emit, publish
from workers.fail_closed import on_failure
from workers.resources import Resources

log = structlog.get_logger(__name__)


@dramatiq.actor(queue_name=BILLING_QUEUE, actor_name=SEND_TIP_ACTOR, **RETRY_POLICY)
async def billing_send_tip(command: dict[str, Any]) -> str:
    cmd = SendTipCommand.model_validate(command)
    res = await resources.get()
    s = res.settings
    outcome = await tips_service.send_tip(res.pool, cmd, s.tip_max_credits, s.signup_credits, s.recharge_url)
    await carry_out(res.emitter, res.publisher, outcome)
    log.info("tip.done", command_id=cmd.command_id, status=outcome.status, duplicate=not outcome.fresh)
    return outcome.log_status  # for the event log (workers/event_log.py)


@on_failure(SEND_TIP_ACTOR)
async def _tip_failed(res: Resources, command: dict[str, Any], exc: BaseException) -> None:
    cmd = SendTipCommand.model_validate(command)
    notice = TipFailed(
        code="internal",
        message="the tip could not be processed; no credits moved",
        tipId=cmd.tip_id,
        clientTipId=cmd.client_tip_id,
    )
    await publish(res.emitter, [emit("error", user_channel(cmd.user_id), notice.model_dump(mode="json"))])
