// The home page: upload with progress, then the live jobs table.
import {
  LiveSocket, api, errorMessage, formatDuration, formatWhen, parseUtc,
  runSeconds, setBadge, showConnection,
} from "/static/common.js";

const form = document.getElementById("upload-form");
const fileInput = document.getElementById("file");
const dropZone = document.getElementById("drop-zone");
const chosen = document.getElementById("file-chosen");
const uploadButton = document.getElementById("upload-button");
const progressBox = document.getElementById("upload-progress");
const progressBar = document.getElementById("upload-bar");
const progressText = document.getElementById("upload-text");
const errorBox = document.getElementById("upload-error");
const maxBytes = Number(form.dataset.maxUploadMb) * 1024 * 1024;

let selectedFile = null;
let uploading = false;

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function choose(file) {
  if (uploading) return;
  selectedFile = file || null;
  showError("");
  if (!selectedFile) {
    chosen.textContent = "";
    uploadButton.disabled = true;
    return;
  }
  chosen.textContent = `Selected: ${selectedFile.name} (${formatBytes(selectedFile.size)})`;
  if (selectedFile.size === 0) {
    showError(`${selectedFile.name} is empty.`);
    uploadButton.disabled = true;
  } else if (maxBytes > 0 && selectedFile.size > maxBytes) {
    showError(`${selectedFile.name} is ${formatBytes(selectedFile.size)}; the limit is ${formatBytes(maxBytes)}.`);
    uploadButton.disabled = true;
  } else {
    uploadButton.disabled = false;
  }
}

fileInput.addEventListener("change", () => choose(fileInput.files[0]));
// A file picked before this script ran (a slow load) fired its change event unheard.
if (fileInput.files.length > 0) choose(fileInput.files[0]);

for (const type of ["dragenter", "dragover"]) {
  dropZone.addEventListener(type, (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    dropZone.classList.add("dragging");
  });
}
dropZone.addEventListener("dragleave", (event) => {
  if (!dropZone.contains(event.relatedTarget)) dropZone.classList.remove("dragging");
});
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  const files = event.dataTransfer.files;
  if (!files || files.length === 0) return;
  try {
    fileInput.files = files; // keeps the input and the selection in step
  } catch {
    // Older browsers refuse to assign; the selection below is what is uploaded anyway.
  }
  choose(files[0]);
});
// A file dropped beside the zone would otherwise make the browser navigate to it.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

// The closed options box still says what will be used.
function summarizeOptions() {
  const value = (id) => document.getElementById(id).value.trim();
  const language = document.getElementById("language");
  const processes = Number(value("processes")) || 1;
  const threads = Number(value("threads")) || 1;
  const parts = [
    value("model") || "default model",
    language.value === "auto" ? "language auto" : language.selectedOptions[0].textContent.trim(),
    `${processes} process${processes === 1 ? "" : "es"} × ${threads} thread${threads === 1 ? "" : "s"}`,
  ];
  if (Number(value("chunk_seconds")) > 0) parts.push(`${value("chunk_seconds")} s chunks`);
  document.getElementById("options-summary").textContent = `(${parts.join(", ")})`;
}
document.getElementById("options").addEventListener("input", summarizeOptions);
document.getElementById("options").addEventListener("change", summarizeOptions);
summarizeOptions();

/** The option fields, checked; throws with a message naming the bad one. */
function collectOptions() {
  const options = {};
  const text = (id) => document.getElementById(id).value.trim();
  const model = text("model");
  if (model) options.model = model;
  options.language = document.getElementById("language").value || "auto";
  const speakers = document.getElementById("speakers");
  if (speakers && !speakers.disabled && speakers.value !== "off") options.speakers = speakers.value;
  // The same bounds the server checks, so a mistake shows before a long upload, not after.
  for (const [id, label, integer, min, max] of [
    ["processes", "Processes", true, 1, 16],
    ["threads", "Threads", true, 1, 64],
    ["chunk_seconds", "Chunk", false, 0, 3600],
    ["overlap_seconds", "Overlap", false, 0, 60],
  ]) {
    const raw = text(id);
    if (raw === "") continue; // the server's default
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
      const what = integer ? "a whole number" : "a number";
      document.getElementById(id).focus();
      throw new Error(`${label} must be ${what} from ${min} to ${max}.`);
    }
    options[id] = raw;
  }
  const chunk = Number(options.chunk_seconds ?? 0);
  const overlap = Number(options.overlap_seconds ?? 0);
  if (chunk > 0 && overlap * 2 >= chunk) {
    document.getElementById("overlap_seconds").focus();
    throw new Error("Overlap must be less than half of the chunk length.");
  }
  options.on_disconnect = document.getElementById("keep_running").checked ? "keep" : "cancel";
  return options;
}

function setUploading(on) {
  uploading = on;
  uploadButton.disabled = on || !selectedFile;
  fileInput.disabled = on;
  dropZone.classList.toggle("busy", on);
  progressBox.hidden = !on;
  uploadButton.textContent = on ? "Uploading…" : "Upload and transcribe";
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (uploading) return;
  if (!selectedFile) {
    showError("Choose an audio file first.");
    return;
  }
  let options;
  try {
    options = collectOptions();
  } catch (error) {
    showError(error.message);
    return;
  }
  showError("");
  const body = new FormData();
  // Options first, so the server knows them before the (large) file part streams in.
  for (const [name, value] of Object.entries(options)) body.append(name, value);
  body.append("file", selectedFile, selectedFile.name);

  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/jobs");
  xhr.setRequestHeader("Accept", "application/json");
  xhr.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    progressBar.value = e.loaded / e.total;
    progressText.textContent = `${formatBytes(e.loaded)} of ${formatBytes(e.total)}`;
  });
  xhr.upload.addEventListener("load", () => {
    progressBar.value = 1;
    progressText.textContent = "Checking the audio…";
  });
  xhr.addEventListener("load", async () => {
    if (xhr.status === 201 || xhr.status === 200) {
      let job = null;
      try {
        job = JSON.parse(xhr.responseText);
      } catch {
        // handled below
      }
      if (job && job.id != null) {
        progressText.textContent = "Uploaded; opening the job…";
        window.location.assign(`/jobs/${encodeURIComponent(job.id)}`);
        return;
      }
    }
    const response = new Response(xhr.responseText, { status: xhr.status, statusText: xhr.statusText });
    const reason = await errorMessage(response);
    setUploading(false);
    showError(`Upload refused: ${reason}`);
  });
  xhr.addEventListener("error", () => {
    setUploading(false);
    showError("The upload failed: the server could not be reached or closed the connection.");
  });
  xhr.addEventListener("abort", () => {
    setUploading(false);
    showError("The upload was cancelled.");
  });
  setUploading(true);
  progressBar.value = 0;
  progressText.textContent = "Starting upload…";
  xhr.send(body);
});

// ---- jobs table -------------------------------------------------------------------------

const tbody = document.getElementById("jobs-body");
const emptyNote = document.getElementById("jobs-empty");
const jobs = new Map(); // id -> job
const rows = new Map(); // id -> <tr>

function createdTime(job) {
  const date = parseUtc(job.created_at);
  return date ? date.getTime() : 0;
}

function cell(row, label) {
  const td = document.createElement("td");
  td.dataset.label = label;
  row.append(td);
  return td;
}

function buildRow(job) {
  const tr = document.createElement("tr");
  tr.dataset.jobId = job.id;
  const badge = document.createElement("span");
  badge.className = "badge";
  cell(tr, "Status").append(badge);
  const link = document.createElement("a");
  link.href = `/jobs/${encodeURIComponent(job.id)}`;
  link.className = "job-link";
  const source = document.createElement("span");
  source.className = "muted job-source";
  cell(tr, "File").append(link, source);
  cell(tr, "Duration").className = "num";
  const progressCell = cell(tr, "Progress");
  progressCell.className = "progress-cell";
  const bar = document.createElement("progress");
  bar.max = 1;
  const pct = document.createElement("span");
  pct.className = "pct";
  progressCell.append(bar, pct);
  cell(tr, "Created");
  cell(tr, "Run time").className = "num runtime";
  cell(tr, "Queue").className = "num";
  return tr;
}

function fillRow(tr, job) {
  const [statusTd, fileTd, durationTd, progressTd, createdTd, runTd, queueTd] = tr.children;
  setBadge(statusTd.firstChild, job.status);
  const link = fileTd.firstChild;
  link.textContent = job.filename || `job ${job.id}`;
  link.title = job.filename || "";
  // A job an API request made says so (`api: openai`); its request decides its life.
  fileTd.dataset.source = job.source || "";
  fileTd.lastChild.textContent = job.source ? ` (${job.source})` : "";
  durationTd.textContent = formatDuration(job.duration_seconds);
  const progress = job.status === "completed" ? 1 : Number(job.progress) || 0;
  const bar = progressTd.querySelector("progress");
  bar.value = progress;
  bar.setAttribute("aria-label", `Progress of ${job.filename}`);
  progressTd.querySelector(".pct").textContent = `${Math.round(progress * 100)}%`;
  const created = parseUtc(job.created_at);
  createdTd.textContent = formatWhen(created);
  createdTd.title = created ? created.toLocaleString() : "";
  runTd.textContent = formatDuration(runSeconds(job));
  queueTd.textContent = job.status === "queued" && job.queue_position != null ? `#${job.queue_position}` : "";
  queueTd.title = job.status === "queued" && job.queue_position != null
    ? (job.queue_position === 1 ? "next to run" : `${job.queue_position - 1} ahead`) : "";
}

function render() {
  const ordered = [...jobs.values()].sort((a, b) => createdTime(b) - createdTime(a)
    || String(b.id).localeCompare(String(a.id), undefined, { numeric: true }));
  for (const [id, tr] of rows) {
    if (!jobs.has(id)) {
      tr.remove();
      rows.delete(id);
    }
  }
  let previous = null;
  for (const job of ordered) {
    const id = String(job.id);
    let tr = rows.get(id);
    if (!tr) {
      tr = buildRow(job);
      rows.set(id, tr);
    }
    fillRow(tr, job);
    // Move only what is out of place, so focus and hover survive updates.
    const expected = previous ? previous.nextSibling : tbody.firstChild;
    if (expected !== tr) tbody.insertBefore(tr, expected);
    previous = tr;
  }
  emptyNote.hidden = jobs.size > 0;
  document.getElementById("jobs-table").hidden = jobs.size === 0;
}

function replaceAll(list) {
  jobs.clear();
  for (const job of list || []) jobs.set(String(job.id), job);
  render();
}

function upsert(job) {
  if (!job || job.id == null) return;
  const id = String(job.id);
  jobs.set(id, { ...(jobs.get(id) || {}), ...job });
  render();
}

// Run times of running jobs tick; nothing else is redrawn on a timer.
setInterval(() => {
  for (const [id, job] of jobs) {
    if (job.status === "running") {
      rows.get(id).querySelector(".runtime").textContent = formatDuration(runSeconds(job));
    }
  }
}, 1000);

const socket = new LiveSocket({
  onOpen: (ws) => ws.send({ type: "subscribe_jobs" }),
  onMessage: (message) => {
    if (message.type === "jobs") replaceAll(message.jobs);
    else if (message.type === "job") upsert({ ...(message.data || {}), id: message.data?.id ?? message.job });
  },
  onState: showConnection,
});

api("/api/jobs")
  .then((body) => {
    // The socket's snapshot may already be here; it is at least as new.
    if (jobs.size === 0) replaceAll(body.jobs);
  })
  .catch((error) => {
    emptyNote.hidden = false;
    emptyNote.textContent = `Could not load the jobs: ${error.message}`;
  })
  .finally(() => socket.connect());

