// The job page: status, progress and ETA, live log, metrics charts, transcript, stop.
import {
  FINAL_STATES, LiveSocket, api, formatDuration, formatTimestamp, formatWhen, parseUtc,
  runSeconds, setBadge, showConnection,
} from "/static/common.js";
import { Sparkline } from "/static/charts.js";
import { TranscriptPlayer } from "/static/player.js";
import { decorate, showSpeakers } from "/static/speakers.js";

const job = JSON.parse(document.getElementById("job-data").textContent);
const jobId = job.id;
const jobPath = `/api/jobs/${encodeURIComponent(jobId)}`;
const $ = (id) => document.getElementById(id);

// ---- status, progress, ETA --------------------------------------------------------------

const progressState = { done: null, total: null };
// Elapsed time as the server measured it, and when we heard it, so it can tick locally.
const elapsedState = { seconds: null, at: 0 };
let completedLoaded = false;

function elapsedNow() {
  if (elapsedState.seconds != null && job.status === "running") {
    return elapsedState.seconds + (performance.now() - elapsedState.at) / 1000;
  }
  return runSeconds(job);
}

function describeMeta() {
  const parts = [];
  if (job.source) parts.push(`source ${job.source}`);
  if (job.duration_seconds != null) parts.push(`${formatDuration(job.duration_seconds)} of audio`);
  if (job.model) parts.push(`model ${job.model}`);
  if (job.language) parts.push(job.language === "auto" ? "language auto-detected" : `language ${job.language}`);
  if (job.processes != null) {
    parts.push(`${job.processes} process${job.processes === 1 ? "" : "es"} × ${job.threads ?? "?"} thread${job.threads === 1 ? "" : "s"}`);
  }
  if (Number(job.chunk_seconds) > 0) parts.push(`chunks of ${job.chunk_seconds} s, ${job.overlap_seconds} s overlap`);
  const created = parseUtc(job.created_at);
  if (created) parts.push(`created ${formatWhen(created)}`);
  // A job on a Ray cluster: its submission id (for `ray job logs`) and the node running it.
  if (job.ray_submission_id) {
    parts.push(`Ray job ${job.ray_submission_id}${job.ray_node ? ` on node ${job.ray_node.slice(0, 12)}` : ""}`);
  }
  return parts.join(" · ");
}

function renderEta() {
  const eta = $("eta");
  const elapsed = elapsedNow();
  if (job.status === "running") {
    const p = Number(job.progress) || 0;
    const bits = [];
    if (elapsed != null) bits.push(`${formatDuration(elapsed)} elapsed`);
    if (p >= 0.01 && p < 1 && elapsed != null && elapsed > 1) {
      bits.push(`about ${formatDuration((elapsed * (1 - p)) / p)} left`);
    } else if (p < 1) {
      bits.push("estimating time left…");
    }
    if (progressState.done > 0 && elapsed > 1) {
      bits.push(`${(progressState.done / elapsed).toFixed(1)}× real time`);
    }
    eta.textContent = bits.join(" · ");
  } else if (FINAL_STATES.has(job.status) && elapsed != null) {
    eta.textContent = `Ran for ${formatDuration(elapsed)}`;
    $("m-elapsed").textContent = formatDuration(elapsed);
  } else {
    eta.textContent = "";
  }
}

function renderStatus() {
  const status = job.status;
  const final = FINAL_STATES.has(status);
  setBadge($("status-badge"), status);
  const progress = status === "completed" ? 1 : Math.min(1, Math.max(0, Number(job.progress) || 0));
  $("progress-bar").value = progress;
  $("progress-text").textContent = `${(progress * 100).toFixed(1)}%`;
  $("job-meta").textContent = describeMeta();
  document.title = `${final ? status : `${Math.round(progress * 100)}%`} · ${job.filename} · transcriptor`;

  const queueNote = $("queue-note");
  if (status === "queued") {
    const pos = job.queue_position;
    queueNote.textContent = pos == null
      ? "Waiting in the queue."
      : `Waiting in the queue: position ${pos}${pos === 1 ? " (next to run)" : ""}.`;
    queueNote.hidden = false;
  } else {
    queueNote.hidden = true;
  }

  const endNote = $("end-note");
  endNote.className = "alert";
  if (status === "failed") {
    const detail = job.error_message
      || `the transcription program stopped with an error${job.exit_code != null ? ` (exit code ${job.exit_code})` : ""}`;
    endNote.textContent = `Failed: ${detail}`;
    endNote.classList.add("error");
  } else if (status === "cancelled") {
    endNote.textContent = `Cancelled: ${job.cancel_reason || job.error_message || "no reason recorded"}`;
    endNote.classList.add("warning");
  } else if (status === "completed") {
    endNote.textContent = "Completed. The transcript is ready to download.";
    endNote.classList.add("success");
  }
  endNote.hidden = !final;

  $("close-note").hidden = final;
  // A finished job's figures are its last sample, not what runs now.
  $("metrics-when").hidden = !final;
  const stop = $("stop-button");
  stop.hidden = final;
  if (final) stop.disabled = true;
  // A live session keeps what it transcribed however it ended (a closed tab cancels it).
  $("downloads").hidden = !(status === "completed" || (final && job.source === "live"));
  // A live session cannot run again: its microphone is gone.
  $("retry-button").hidden = !(status === "failed" || status === "cancelled") || job.source === "live";
  renderEta();

  if (status === "completed" && !completedLoaded) {
    completedLoaded = true;
    // The finished transcript is authoritative (chunk overlaps are merged): show it whole.
    loadSegments(true);
  }
}

// Progress can arrive hundreds of times a second; draw it at most once per frame.
let renderFrame = 0;
function scheduleRender() {
  if (!renderFrame) {
    renderFrame = requestAnimationFrame(() => {
      renderFrame = 0;
      renderStatus();
    });
  }
}

function applyJob(data) {
  if (!data) return;
  const wasFinal = FINAL_STATES.has(job.status);
  Object.assign(job, data);
  if (FINAL_STATES.has(job.status) && !wasFinal) {
    // Fill in what a status message does not carry (finished_at, duration...).
    api(jobPath).then((full) => {
      Object.assign(job, full);
      renderStatus();
      showSpeakers(full.speakers, jobPath, transcriptEl);
    }).catch(() => {});
  }
  if (data.metrics) showMetrics(data.metrics, false);
  renderStatus();
}

// ---- log panel ---------------------------------------------------------------------------

const MAX_LOG_LINES = 3000;
// Bounds the work of one frame, so a flood never freezes the tab; the rest waits a frame.
const LINES_PER_FRAME = 400;
const logEl = $("log");
const jumpButton = $("jump-end");
let lastLogSeq = 0;
// Waiting for the next animation frame: [seq, text] for a line, {missed} for a gap note.
let pending = [];
let frame = 0;
let following = true;
let droppedFromView = 0;

function scheduleFlush() {
  if (!frame) frame = requestAnimationFrame(flushLog);
}

// Lines that would leave the view before they could be drawn become one gap note, so the
// numbers shown never jump without saying so.
function dropOldestPending(keep) {
  const drop = pending.length - keep;
  let missed = 0;
  for (const item of pending.slice(0, drop)) missed += Array.isArray(item) ? 1 : item.missed;
  pending = pending.slice(drop);
  if (!Array.isArray(pending[0])) pending[0] = { missed: pending[0].missed + missed };
  else pending.unshift({ missed });
}

function queueLogItem(item) {
  pending.push(item);
  // A background tab gets no frames: keep only what could be shown anyway
  // (trimmed in bulk at twice the cap, so a flood costs O(1) per line).
  if (pending.length > 2 * MAX_LOG_LINES) dropOldestPending(MAX_LOG_LINES);
  scheduleFlush();
}

function lineElement(item) {
  const div = document.createElement("div");
  if (!Array.isArray(item)) {
    div.className = "log-gap";
    div.textContent = `${item.missed} line${item.missed === 1 ? "" : "s"} skipped — `;
    const link = document.createElement("a");
    link.href = `${jobPath}/log`;
    link.setAttribute("download", "");
    link.textContent = "download the full log";
    div.append(link);
    return div;
  }
  const [seq, text] = item;
  // One element per line: CSS draws the number from data-seq, so it is not copied with
  // the text, and a flood costs one node (plus its text) per line.
  let className = "log-line";
  if (text.startsWith("[segment ")) className += " is-segment";
  else if (text.startsWith("[progress]")) className += " is-progress";
  else if (ERROR_WORDS.test(text)) className += " is-error";
  div.className = className;
  if (seq != null) div.dataset.seq = seq;
  div.textContent = text;
  return div;
}
const ERROR_WORDS = /\b(error|traceback|exception|failed)\b/i;

function flushLog() {
  frame = 0;
  if (pending.length > MAX_LOG_LINES) dropOldestPending(MAX_LOG_LINES);
  const batch = pending.splice(0, LINES_PER_FRAME);
  if (batch.length === 0) return;
  const fragment = document.createDocumentFragment();
  for (const item of batch) fragment.append(lineElement(item));
  logEl.append(fragment);
  const excess = logEl.childElementCount - MAX_LOG_LINES;
  if (excess > 0) {
    const before = following ? 0 : logEl.scrollHeight;
    // One range deletion instead of thousands of single removals.
    const range = document.createRange();
    range.setStartBefore(logEl.firstElementChild);
    range.setEndAfter(logEl.children[excess - 1]);
    range.deleteContents();
    droppedFromView += excess;
    // Keep what the reader is looking at in place when lines leave the top.
    if (!following) logEl.scrollTop -= before - logEl.scrollHeight;
  }
  if (following) pinToEnd();
  updateLogCount();
  if (pending.length > 0) scheduleFlush();
}

function updateLogCount() {
  const parts = [];
  if (lastLogSeq > 0) parts.push(`${lastLogSeq} line${lastLogSeq === 1 ? "" : "s"}`);
  if (droppedFromView > 0) parts.push(`the last ${MAX_LOG_LINES} shown`);
  $("log-count").textContent = parts.join(", ");
}

// Only the reader's own scrolling (wheel, touch, keys, a scrollbar drag) may stop the
// panel following the end. A "scroll" event alone cannot tell: lines rewrapping after a
// resize, or leaving the top, move the scroll position too (issue #14).
const USER_SCROLL_MS = 600;
const SCROLL_KEYS = new Set(["ArrowUp", "ArrowDown", "PageUp", "PageDown", "Home", "End", " "]);
let userScrollUntil = 0;
let dragging = false;

function markUserScroll() {
  userScrollUntil = performance.now() + USER_SCROLL_MS;
}

function pinToEnd() {
  logEl.scrollTop = logEl.scrollHeight;
}

logEl.addEventListener("wheel", markUserScroll, { passive: true });
logEl.addEventListener("touchmove", markUserScroll, { passive: true });
logEl.addEventListener("keydown", (event) => { if (SCROLL_KEYS.has(event.key)) markUserScroll(); });
// A press on the panel itself (not on a line) is on its scrollbar.
logEl.addEventListener("pointerdown", (event) => { if (event.target === logEl) dragging = true; });
window.addEventListener("pointerup", () => { if (dragging) { dragging = false; markUserScroll(); } });
window.addEventListener("pointercancel", () => { dragging = false; });

logEl.addEventListener("scroll", () => {
  const fromBottom = logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight;
  if (dragging || performance.now() < userScrollUntil) {
    following = fromBottom < 24;
  } else if (following && fromBottom > 1) {
    pinToEnd(); // layout moved the end away; nobody asked to leave it
  }
  jumpButton.hidden = following;
}, { passive: true });

// A narrower or wider panel rewraps every line: stay at the end if following.
new ResizeObserver(() => { if (following) pinToEnd(); }).observe(logEl);
window.addEventListener("resize", () => { if (following) pinToEnd(); });
document.fonts?.ready.then(() => { if (following) pinToEnd(); });

jumpButton.addEventListener("click", () => {
  following = true;
  jumpButton.hidden = true;
  pinToEnd();
  logEl.focus();
});

function onLog(message) {
  const seq = Number(message.seq);
  if (!Number.isFinite(seq) || seq <= lastLogSeq) return; // already shown (replay overlap)
  lastLogSeq = seq;
  const line = String(message.line ?? "");
  if (line.startsWith("[live] ")) onLiveLine(line);
  queueLogItem([seq, line]);
}

// A live session's words as they are said, lighter, until its utterance's segment comes.
const livePending = $("live-pending");

function onLiveLine(line) {
  let event;
  try {
    event = JSON.parse(line.slice(7));
  } catch {
    return;
  }
  if (event.event === "delta") livePending.textContent += event.delta;
  else if (event.event === "completed") livePending.textContent = "";
  livePending.hidden = !livePending.textContent || FINAL_STATES.has(job.status);
}

function onGap(message) {
  const missed = Number(message.missed) || 0;
  const next = Number(message.next_seq);
  if (Number.isFinite(next) && next - 1 > lastLogSeq) lastLogSeq = next - 1;
  if (missed > 0) queueLogItem({ missed });
}

// A finished job whose lines the server no longer holds: show the file's tail instead.
async function loadLogTailIfEmpty() {
  if (lastLogSeq > 0 || logEl.childElementCount > 0 || pending.length > 0) return;
  try {
    const body = await api(`${jobPath}/logs?lines=${MAX_LOG_LINES}`);
    if (lastLogSeq > 0 || logEl.childElementCount > 0) return;
    for (const line of body.lines || []) queueLogItem([null, line]);
    if (!(body.lines || []).length) logEl.dataset.empty = "No log output.";
  } catch {
    logEl.dataset.empty = "No log output.";
    // The log may not exist (the job never started); the panel stays empty.
  }
}

// ---- metrics -----------------------------------------------------------------------------

const cpuChart = new Sparkline($("cpu-chart"), { minMax: 100, unit: "%", peakEl: $("cpu-peak"), cssColor: "--cpu" });
const memChart = new Sparkline($("mem-chart"), { minMax: 64, unit: " MiB", peakEl: $("mem-peak"), cssColor: "--mem" });

function showMetrics(m, sample = true) {
  if (!m) return;
  if (m.cpu_percent != null) $("m-cpu").textContent = `${Number(m.cpu_percent).toFixed(0)}%`;
  if (m.memory_mb != null) $("m-mem").textContent = `${Number(m.memory_mb).toFixed(0)} MiB`;
  if (m.elapsed_seconds != null) {
    elapsedState.seconds = Number(m.elapsed_seconds);
    elapsedState.at = performance.now();
    $("m-elapsed").textContent = formatDuration(elapsedState.seconds);
  }
  if (m.pid != null) $("m-pid").textContent = m.pid;
  if (m.num_processes != null) $("m-procs").textContent = m.num_processes;
  if (sample) {
    cpuChart.push(m.cpu_percent);
    memChart.push(m.memory_mb);
  }
}

async function loadMetrics() {
  try {
    const body = await api(`${jobPath}/metrics`);
    const history = body.metrics || [];
    // Live samples that arrived first belong after the history.
    const liveCpu = cpuChart.values.splice(0);
    const liveMem = memChart.values.splice(0);
    for (const m of history) {
      cpuChart.values.push(Number(m.cpu_percent) || 0);
      memChart.values.push(Number(m.memory_mb) || 0);
    }
    cpuChart.values.push(...liveCpu);
    memChart.values.push(...liveMem);
    cpuChart.schedule();
    memChart.schedule();
    if (liveCpu.length === 0 && history.length > 0) showMetrics(history.at(-1), false);
  } catch {
    cpuChart.schedule();
    memChart.schedule();
  }
}

// ---- transcript --------------------------------------------------------------------------

const transcriptEl = $("transcript");
const segmentSeqs = new Set();
const segmentKeys = new Set();
let finalTranscript = false;

function segmentKey(s) {
  return `${Number(s.start).toFixed(2)}|${Number(s.end).toFixed(2)}|${String(s.text).trim()}`;
}

function addSegment(s) {
  if (s.seq != null) {
    if (segmentSeqs.has(s.seq)) return;
    segmentSeqs.add(s.seq);
  }
  const key = segmentKey(s);
  if (segmentKeys.has(key)) return;
  segmentKeys.add(key);
  const li = document.createElement("li");
  li.className = "segment";
  li.dataset.start = s.start;
  const time = document.createElement("span");
  time.className = "ts";
  time.textContent = `${formatTimestamp(s.start)} – ${formatTimestamp(s.end)}`;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = String(s.text).trim();
  li.append(time, text);
  decorate(li, s);
  // Workers on parallel chunks finish out of order: keep the list in audio order.
  let after = null;
  for (let node = transcriptEl.lastElementChild; node; node = node.previousElementSibling) {
    if (Number(node.dataset.start) <= Number(s.start)) {
      after = node;
      break;
    }
  }
  const nearEnd = transcriptEl.scrollHeight - transcriptEl.scrollTop - transcriptEl.clientHeight < 24;
  if (after) after.after(li);
  else transcriptEl.prepend(li);
  $("transcript-empty").hidden = true;
  if (nearEnd && after === transcriptEl.lastElementChild.previousElementSibling) {
    transcriptEl.scrollTop = transcriptEl.scrollHeight;
  }
}

// A completed job's transcript comes from the server's store, words, edits and all.
const player = new TranscriptPlayer({
  jobPath, list: transcriptEl, audio: $("player"), status: $("transcript-version"),
  onError: (text) => showActionError(text), decorate,
});

async function loadSegments(replace = false) {
  try {
    if (job.status === "completed") {
      finalTranscript = true;
      if ((await player.load()) === 0) $("transcript-empty").textContent = "No speech was found in this audio.";
      else $("transcript-empty").hidden = true;
      return;
    }
    const body = await api(`${jobPath}/segments`);
    const segments = body.segments || [];
    if (replace && segments.length > 0) {
      transcriptEl.replaceChildren();
      segmentKeys.clear();
      finalTranscript = true;
    }
    for (const s of segments) addSegment(s);
    if (transcriptEl.childElementCount === 0 && FINAL_STATES.has(job.status)) {
      $("transcript-empty").textContent = job.status === "completed"
        ? "No speech was found in this audio."
        : "No transcript was produced.";
    }
  } catch {
    // Nothing yet; live segments will come over the socket.
  }
}

// ---- stop ----------------------------------------------------------------------------------

const stopButton = $("stop-button");
const dialog = $("stop-dialog");

stopButton.addEventListener("click", () => {
  if (typeof dialog.showModal === "function") {
    dialog.returnValue = "";
    dialog.showModal();
  } else if (window.confirm("Stop this job? The transcription and its processes will be stopped.")) {
    stopJob();
  }
});

dialog.addEventListener("close", () => {
  if (dialog.returnValue === "stop") stopJob();
  else stopButton.focus();
});

function showActionError(text) {
  const box = $("action-error");
  box.textContent = text;
  box.hidden = !text;
}

async function stopJob() {
  showActionError("");
  stopButton.disabled = true;
  stopButton.textContent = "Stopping…";
  try {
    applyJob(await api(`${jobPath}/stop`, { method: "POST" }));
  } catch (error) {
    if (error.status === 409) {
      applyJob(await api(jobPath).catch(() => null));
    } else {
      showActionError(`Could not stop the job: ${error.message}`);
      stopButton.disabled = false;
    }
  } finally {
    stopButton.textContent = "Stop job";
  }
}

// ---- retry ---------------------------------------------------------------------------------

$("retry-button").addEventListener("click", async () => {
  const button = $("retry-button");
  showActionError("");
  button.disabled = true;
  try {
    const fresh = await api(`${jobPath}/retry`, { method: "POST" });
    window.location.assign(`/jobs/${encodeURIComponent(fresh.id)}`);
  } catch (error) {
    showActionError(`Could not retry the job: ${error.message}`);
    button.disabled = false;
  }
});

// ---- the live channel ----------------------------------------------------------------------

function onMessage(message) {
  if (message.job != null && String(message.job) !== String(jobId)) return;
  switch (message.type) {
    case "status":
      applyJob({
        status: message.status,
        ...("progress" in message ? { progress: message.progress } : {}),
        exit_code: message.exit_code ?? job.exit_code,
        error_message: message.error_message ?? job.error_message,
        cancel_reason: message.cancel_reason ?? job.cancel_reason,
        queue_position: message.queue_position ?? null,
      });
      break;
    case "log":
      onLog(message);
      break;
    case "progress":
      if (message.done_seconds != null) progressState.done = Number(message.done_seconds);
      if (message.total_seconds != null) progressState.total = Number(message.total_seconds);
      if (job.status === "queued") job.status = "running";
      job.progress = Number(message.progress) || 0;
      scheduleRender();
      break;
    case "segment":
      // Once the finished transcript is shown, replayed live segments would only repeat it.
      if (!finalTranscript) addSegment(message);
      break;
    case "metrics":
      showMetrics(message);
      break;
    case "gap":
      onGap(message);
      break;
    case "error":
      showActionError(`The server said: ${message.error}`);
      break;
    default:
      break;
  }
}

const socket = new LiveSocket({
  onOpen: (ws) => {
    const subscribe = { type: "subscribe", job: jobId };
    // Resume after the last line shown, so a reconnect neither loses nor repeats one.
    if (lastLogSeq > 0) subscribe.since = lastLogSeq;
    ws.send(subscribe);
  },
  onMessage,
  onState: (state) => {
    showConnection(state);
    document.body.dataset.connection = state;
  },
});

setInterval(() => {
  if (job.status === "running") renderEta();
}, 1000);

renderStatus();
socket.connect();
loadSegments().then(() => showSpeakers(job.speakers, jobPath, transcriptEl));
loadMetrics();
if (FINAL_STATES.has(job.status)) setTimeout(loadLogTailIfEmpty, 1500);
// Tests and curious people can look at the page's state.
window.transcriptorJob = { job, socket, cpuChart, memChart, player, get lastLogSeq() { return lastLogSeq; } };
