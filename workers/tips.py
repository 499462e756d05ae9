"""The tip handler of the ``billing`` queue."""

from __future__ import annotations

from schemas.queues import SEND_TIP_ACTOR
from schemas.tips import SendTipCommand
from workers import tips_service
from workers.effects import Outcome
from workers.handlers import Handlers
from workers.resources import Resources

handlers = Handlers()


@handlers.on(SEND_TIP_ACTOR)
async def send_tip(res: Resources, cmd: SendTipCommand) -> Outcome:
    s = res.settings
    return await tips_service.send_tip(res.pool, cmd, s.tip_max_credits, s.signup_credits, s.recharge_url)
