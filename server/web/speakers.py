"""Speaker labels on the server side: the `speakers` upload option, what a job found,
renaming speakers, and exports that use the names (issue 25)."""

from __future__ import annotations

import asyncio
import json
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.formats import SPEAKERS_FILE
from pipeline.speakers import CHOICES, missing, parse_speakers
from server.web.errors import ApiError

MAX_NAME_CHARS = 60


@cache
def unavailable() -> str | None:
    """Why this server cannot label speakers (checked once: installs do not change)."""
    return missing()


def status() -> dict[str, Any]:
    """For /api/health: whether `speakers` works here, and why not."""
    reason = unavailable()
    return {"available": reason is None, "choices": list(CHOICES), **({"reason": reason} if reason else {})}


def speakers_option(raw: str | None) -> str:
    """The upload's `speakers` field checked: 'off' (default), 'auto' or '1'-'10'."""
    try:
        value = parse_speakers(raw or "off")
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    if value != "off" and (reason := unavailable()):
        raise ApiError(400, f"speakers={value} is not available on this server: {reason}")
    return value


def names_of(job: dict[str, Any]) -> dict[str, str]:
    raw = job.get("speaker_names")
    return dict(json.loads(raw)) if raw else {}


def found(job: dict[str, Any]) -> dict[str, Any] | None:
    """What the speaker stage found for a job (read from its output), with the names."""
    options = json.loads(job.get("pipeline_options") or "{}")
    asked = options.get("speakers")
    if not asked or asked == "off":
        return None
    out = job.get("output_path")
    path = Path(out) / SPEAKERS_FILE if out else None
    stage: dict[str, Any] = json.loads(path.read_text()) if path and path.is_file() else {}
    return {
        "asked": asked,
        "count": stage.get("count"),
        "labels": stage.get("labels", []),
        "names": names_of(job),
    }


async def with_speakers(job: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
    """The job's view with `speakers` (None when the job did not ask for them)."""
    view["speakers"] = await asyncio.to_thread(found, job)
    view.pop("speaker_names", None)
    return view


def renamed(job: dict[str, Any], body: Any) -> str | None:
    """The job's speaker_names column after PATCH /api/jobs/{id}/speakers with `body`
    ({"A": "Maria"}); a name equal to the label (or empty) drops the rename."""
    if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
        raise ApiError(400, 'send a JSON object of label -> name, such as {"A": "Maria"}')
    stage = found(job)
    if stage is None or stage["count"] is None:
        raise ApiError(409, f"job {job['id']} has no speakers to rename")
    unknown = [label for label in body if label not in stage["labels"]]
    if unknown:
        raise ApiError(400, f"no speaker {unknown[0][:10]!r} in job {job['id']}; it has {stage['labels']}")
    names = names_of(job)
    for label, name in body.items():
        name = " ".join(name.split())[:MAX_NAME_CHARS]
        if name and name != label:
            names[label] = name
        else:
            names.pop(label, None)
    return json.dumps(names) if names else None
