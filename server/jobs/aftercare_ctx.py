"""The app's aftercare resources: the webhook sender and the ended-job settler, each a
task the app owns, set up before the runner and torn down after it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from server import keys
from server.jobs.aftercare import Aftercare
from server.jobs.webhooks import WebhookSender
from server.tasks import cancel_and_wait


async def aftercare_ctx(app: web.Application) -> AsyncIterator[None]:
    store, config = app[keys.STORE], app[keys.CONFIG]
    # Our own session: webhook receivers are other people's servers, not the app's clients.
    async with aiohttp.ClientSession(trust_env=False) as session:
        sender = WebhookSender(store, config, session)
        aftercare = Aftercare(store, config, sender)
        app[keys.AFTERCARE] = aftercare
        sending = asyncio.create_task(sender.run(), name="webhook-sender")
        settling = asyncio.create_task(aftercare.run(), name="aftercare")
        try:
            yield
        finally:
            await cancel_and_wait(settling)
            # The runner has stopped: the endings its shutdown recorded get their webhooks
            # queued in the database, delivered by this server's next start.
            with contextlib.suppress(TimeoutError):
                await aftercare.drain()
            await cancel_and_wait(sending)


async def follow_endings(app: web.Application) -> None:
    aftercare = app[keys.AFTERCARE]
    app[keys.RUNNER].on_ended(aftercare.job_ended)
    aftercare.following()
