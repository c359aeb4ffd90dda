"""The URL table, nothing else."""

from __future__ import annotations

from aiohttp import web

from server.resources import resource_path
from server.web import api, library, metrics, node, openai, realtime, transcripts, views, ws

STATIC_DIR = resource_path("static")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", views.index, name="index")
    app.router.add_get("/jobs/{id}", views.job_page, name="job")
    app.router.add_get("/ws", ws.websocket, name="ws")
    app.router.add_get("/api/health", api.health)
    app.router.add_get("/api/jobs", api.list_jobs)
    app.router.add_post("/api/jobs", api.create_job)
    app.router.add_get("/api/jobs/{id}", api.get_job)
    app.router.add_post("/api/jobs/{id}/stop", api.stop_job)
    app.router.add_get("/api/jobs/{id}/logs", api.job_logs)
    app.router.add_get("/api/jobs/{id}/log", api.job_log_file)
    app.router.add_delete("/api/jobs/{id}", library.delete_job)
    app.router.add_post("/api/jobs/{id}/retry", library.retry_job)
    app.router.add_get("/api/jobs/{id}/webhooks", library.job_webhooks)
    app.router.add_get("/api/jobs/{id}/audio", transcripts.job_audio)
    app.router.add_get("/api/jobs/{id}/segments", transcripts.job_segments)
    app.router.add_patch("/api/jobs/{id}/segments/{n}", transcripts.edit_segment)
    app.router.add_get("/api/jobs/{id}/transcript/history", transcripts.transcript_history)
    app.router.add_get("/api/search", transcripts.search)
    app.router.add_get("/api/jobs/{id}/metrics", api.job_metrics)
    app.router.add_get(r"/api/jobs/{id}/transcript.{kind}", transcripts.transcript)
    app.router.add_patch("/api/jobs/{id}/speakers", api.rename_speakers)
    app.router.add_post("/v1/audio/transcriptions", openai.transcriptions)
    app.router.add_post("/v1/audio/translations", openai.translations)
    app.router.add_get("/v1/models", openai.list_models)
    app.router.add_get("/v1/realtime", realtime.realtime)
    app.router.add_get("/v1/models/{id}", openai.get_model)
    app.router.add_get("/metrics", metrics.metrics)
    app.router.add_get(f"{node.NODE_PREFIX}jobs/{{id}}/audio", node.job_audio)
    app.router.add_static("/static/", STATIC_DIR, name="static")
