"""Helpers shared by the tests; test modules and conftests import from here, never from
each other.

- audio: REPO, SPEECH_CLIP, JFK and their sentences; tone_wav, write_wav, repeated_speech
- env: clean_env (this environment without TRANSCRIPTOR_* settings)
- fake: the fake pipeline's command (fake_command, fake_command_line, fake_pipeline_args)
  and helper_pids
- server_proc: ServerProcess, the real server as a subprocess; stop_all, free_port, GRACE
- cli_proc: cli, start_cli (`python -m server.cli` as a subprocess)
- app_api: upload, wait_status, wait_for_line against an in-process app; health: /api/health
- wsclient: websocket messages through aiohttp; raw_ws: a websocket opened by hand
- forms: multipart bodies and Response, for HTTP by hand
- waiting: wait_for (poll until truthy, fail on timeout)
- procs, spawned, children, cgroups, ray_head: processes the tests start and watch
- store_rows, legacy_db: rows and databases for the store
- speech: espeak-ng speech at 24 kHz (speak), append events, SDK-validated Realtime events
"""
