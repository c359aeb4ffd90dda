// The home page's search box: GET /api/search as you type (debounced); each hit links to
// its job page at the segment's start (#t=START). Snippets come escaped from the server,
// with only <mark> around the matches, so they are shown as HTML.
import { api, formatTimestamp } from "/static/common.js";

const form = document.getElementById("search-form");
const input = document.getElementById("search-q");
const results = document.getElementById("search-results");
const note = document.getElementById("search-note");
const DEBOUNCE_MS = 250;
let timer = 0;
let asked = 0;

function show(text, isError = false) {
  note.textContent = text;
  note.hidden = !text;
  note.classList.toggle("error", isError);
}

function hitElement(hit) {
  const li = document.createElement("li");
  li.className = "search-hit";
  const link = document.createElement("a");
  link.href = `/jobs/${encodeURIComponent(hit.job_id)}#t=${Number(hit.start).toFixed(2)}`;
  const where = document.createElement("span");
  where.className = "search-where";
  where.textContent = `${hit.filename} (job ${hit.job_id}) · ${formatTimestamp(hit.start)}`;
  const snippet = document.createElement("span");
  snippet.className = "search-snippet";
  snippet.innerHTML = hit.snippet;
  link.append(where, snippet);
  li.append(link);
  return li;
}

async function search() {
  const q = input.value.trim();
  const mine = ++asked;
  if (!q) {
    results.replaceChildren();
    show("");
    return;
  }
  try {
    const body = await api(`/api/search?q=${encodeURIComponent(q)}`);
    if (mine !== asked) return; // a later query answered first
    results.replaceChildren(...body.hits.map(hitElement));
    show(body.hits.length ? "" : "Nothing found.");
  } catch (error) {
    if (mine !== asked) return;
    results.replaceChildren();
    show(error.status === 400 ? error.message : `Search failed: ${error.message}`, true);
  }
}

input.addEventListener("input", () => {
  clearTimeout(timer);
  timer = setTimeout(search, DEBOUNCE_MS);
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(timer);
  search();
});
