"""The upload's per-job webhook_url field, checked before the job is stored."""

from __future__ import annotations

from server.config import Config
from server.jobs.webhook_targets import WebhookURLError, check_job_webhook
from server.web.errors import ApiError


async def job_webhook(fields: dict[str, str], config: Config) -> str | None:
    """The checked per-job webhook URL of an upload, None if it names none; 400 if refused."""
    raw = fields.get("webhook_url", "").strip()
    if not raw:
        return None
    try:
        return await check_job_webhook(raw, config)
    except WebhookURLError as error:
        raise ApiError(400, str(error), param="webhook_url") from None
