// Shared by the pages: time formatting, the JSON API, and a websocket that reconnects.

export const FINAL_STATES = new Set(["completed", "failed", "cancelled"]);

/** A server timestamp "YYYY-MM-DD HH:MM:SS[.ffffff]" (UTC) as a Date, or null. */
export function parseUtc(text) {
  if (!text) return null;
  const m = /^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?/.exec(String(text));
  if (!m) return null;
  const frac = m[3] ? m[3].slice(0, 4) : "";
  const date = new Date(`${m[1]}T${m[2]}${frac}Z`);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** 75 -> "1:15", 3725 -> "1:02:05". */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "–";
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = String(s).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Seconds as "MM:SS.s" (or "H:MM:SS.s") for transcript timestamps. */
export function formatTimestamp(seconds) {
  const t = Math.max(0, Number(seconds) || 0);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = (t % 60).toFixed(1).padStart(4, "0");
  const mm = String(m).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${s}` : `${mm}:${s}`;
}

/** A local, short date-time: "14:03" today, "26 Nov 14:03" otherwise. */
export function formatWhen(date) {
  if (!date) return "–";
  const now = new Date();
  const time = date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === now.toDateString()) return time;
  const day = date.toLocaleDateString(undefined, { day: "numeric", month: "short" });
  return `${day} ${time}`;
}

/** Seconds a job has run (so far, if still running), or null. */
export function runSeconds(job, now = Date.now()) {
  const started = parseUtc(job.started_at);
  if (!started) return null;
  const finished = parseUtc(job.finished_at);
  const end = finished ? finished.getTime() : FINAL_STATES.has(job.status) ? null : now;
  if (end == null) return null;
  return Math.max(0, (end - started.getTime()) / 1000);
}

/** The server's message for a failed response, falling back on the status text. */
export async function errorMessage(response) {
  let message = "";
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      message = body && (body.error || body.message);
    } catch {
      message = text.length < 300 ? text.trim() : "";
    }
  } catch {
    // The body is gone; the status line below still says something.
  }
  return message || `${response.status} ${response.statusText || "error"}`;
}

/** GET/POST JSON; throws an Error carrying the server's message. */
export async function api(path, options = {}) {
  const response = await fetch(path, {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
    ...options,
  });
  if (!response.ok) {
    const error = new Error(await errorMessage(response));
    error.status = response.status;
    throw error;
  }
  return response.json();
}

/** The ws:// URL of /ws on this origin, passing ?token= through when the page has one. */
export function socketUrl() {
  const url = new URL("/ws", window.location.href);
  url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  const token = new URLSearchParams(window.location.search).get("token");
  url.search = token ? `?token=${encodeURIComponent(token)}` : "";
  return url.toString();
}

/**
 * A websocket to /ws that reconnects by itself with exponential backoff and jitter.
 * onOpen runs on every (re)connect: that is where the page (re)subscribes.
 */
export class LiveSocket {
  constructor({ onOpen, onMessage, onState }) {
    this.onOpen = onOpen;
    this.onMessage = onMessage;
    this.onState = onState || (() => {});
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.closed = false;
  }

  connect() {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.onState(this.attempt === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.attempt = 0;
      this.onState("connected");
      this.onOpen(this);
    });
    ws.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      // The server sends a backlog as one JSON array frame of messages.
      if (Array.isArray(message)) {
        for (const item of message) this.onMessage(item);
      } else {
        this.onMessage(message);
      }
    });
    ws.addEventListener("close", () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.scheduleReconnect();
    });
    // An error is always followed by close, which does the reconnecting.
  }

  scheduleReconnect() {
    if (this.closed) return;
    this.attempt += 1;
    this.onState("reconnecting");
    // 0.5 s, 1 s, 2 s ... capped at 15 s; jitter keeps many tabs from reconnecting in step.
    const base = Math.min(15000, 500 * 2 ** (this.attempt - 1));
    const delay = base / 2 + Math.random() * (base / 2);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  get connected() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN);
  }
}

/** Reflects a LiveSocket state in the header's indicator. */
export function showConnection(state) {
  const el = document.getElementById("connection");
  if (!el) return;
  el.hidden = false;
  el.dataset.state = state;
  const labels = { connecting: "connecting…", connected: "live", reconnecting: "reconnecting…" };
  el.querySelector(".connection-label").textContent = labels[state] || state;
  el.title = state === "connected" ? "Live updates are on" : "Not connected to the server; retrying";
}

/** The status badge text and data-status attribute. */
export function setBadge(el, status) {
  el.dataset.status = status;
  el.textContent = status;
}
