// Speakers on the job page: each turn tagged and coloured by its speaker, and a form
// that renames a speaker (PATCH /api/jobs/{id}/speakers); every export uses the names.
import { api } from "/static/common.js";

const state = { labels: [], names: {} };
const COLOURS = 10;

export function speakerName(label) {
  return state.names[label] || label;
}

function colourOf(label) {
  const index = state.labels.indexOf(label);
  return `spk-${(index < 0 ? label.charCodeAt(0) - 65 : index) % COLOURS}`;
}

// Tags a transcript line (li) with its speaker, if it has one.
export function decorate(li, segment) {
  if (!segment.speaker) return;
  li.dataset.speaker = segment.speaker;
  li.classList.add("has-speaker", colourOf(segment.speaker));
  const tag = document.createElement("span");
  tag.className = "speaker";
  tag.textContent = speakerName(segment.speaker);
  const text = li.querySelector(".text");
  text.prepend(tag);
}

function refreshTags(root) {
  for (const li of root.querySelectorAll("li[data-speaker]")) {
    const tag = li.querySelector(".speaker");
    if (tag) tag.textContent = speakerName(li.dataset.speaker);
  }
}

// Shows the rename form for a job's `speakers` (from GET /api/jobs/{id}).
export function showSpeakers(info, jobPath, transcriptEl) {
  const panel = document.getElementById("speakers-panel");
  if (!panel || !info || !info.labels || info.labels.length === 0) return;
  state.labels = info.labels;
  state.names = { ...(info.names || {}) };
  document.getElementById("speakers-count").textContent =
    `${info.count} speaker${info.count === 1 ? "" : "s"} found`;
  const list = document.getElementById("speakers-list");
  list.replaceChildren();
  for (const label of state.labels) {
    const row = document.createElement("label");
    row.className = `speaker-row ${colourOf(label)}`;
    const swatch = document.createElement("span");
    swatch.className = "speaker-label";
    swatch.textContent = label;
    const input = document.createElement("input");
    input.name = label;
    input.value = speakerName(label);
    input.maxLength = 60;
    input.setAttribute("aria-label", `Name of speaker ${label}`);
    row.append(swatch, input);
    list.append(row);
  }
  panel.hidden = false;
  const form = document.getElementById("speakers-form");
  const error = document.getElementById("speakers-error");
  form.onsubmit = async (event) => {
    event.preventDefault();
    const body = {};
    for (const input of list.querySelectorAll("input")) body[input.name] = input.value.trim();
    error.hidden = true;
    try {
      const view = await api(`${jobPath}/speakers`, {
        method: "PATCH",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      state.names = { ...(view.speakers?.names || {}) };
      for (const input of list.querySelectorAll("input")) input.value = speakerName(input.name);
      refreshTags(transcriptEl);
      document.getElementById("speakers-saved").hidden = false;
    } catch (e) {
      error.textContent = String(e.message || e);
      error.hidden = false;
    }
  };
  refreshTags(transcriptEl);
}
