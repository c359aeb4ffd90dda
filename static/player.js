// A finished transcript tied to its audio: the segment and word under the play head are
// marked aria-current, clicks seek, #t=SECONDS opens at a time, space and the arrows play
// and step, and each segment can be edited in place (saved with its version; a stale
// version is refused by the server with 409, so two tabs never overwrite each other).
import { api, formatTimestamp } from "/static/common.js";

const STEP_SECONDS = 5;
// A reader's own scroll stops the transcript following the play head, until they seek.
const SCROLL_KEYS = new Set(["ArrowUp", "ArrowDown", "PageUp", "PageDown", "Home", "End"]);

function hashTime() {
  const match = /(?:^#|&)t=([0-9]+(?:\.[0-9]+)?)/.exec(window.location.hash);
  return match ? Number(match[1]) : null;
}

function isEditable(element) {
  return element instanceof HTMLElement && (element.isContentEditable
    || ["INPUT", "TEXTAREA", "SELECT"].includes(element.tagName));
}

export class TranscriptPlayer {
  constructor({ jobPath, list, audio, status, onError, decorate }) {
    this.decorate = decorate; // (li, segment): extra marks on a line, such as its speaker
    this.jobPath = jobPath;
    this.list = list;
    this.audio = audio;
    this.status = status;
    this.onError = onError;
    this.version = null;
    this.items = []; // [{start, end, li, words: [{start, end, el}]}], in audio order
    this.current = null;
    this.currentWord = null;
    this.following = true;
    this.wire();
  }

  wire() {
    const { audio, list } = this;
    for (const type of ["timeupdate", "seeked", "play"]) audio.addEventListener(type, () => this.sync());
    audio.addEventListener("playing", () => this.tick());
    audio.addEventListener("error", () => { audio.closest(".player")?.setAttribute("hidden", ""); });
    // The metadata may be in before this module runs: then its event was missed.
    if (audio.readyState >= 1) this.seekToHash();
    else audio.addEventListener("loadedmetadata", () => this.seekToHash(), { once: true });
    window.addEventListener("hashchange", () => this.seekToHash());
    list.addEventListener("click", (event) => this.onClick(event));
    list.addEventListener("wheel", () => { this.following = false; }, { passive: true });
    list.addEventListener("touchmove", () => { this.following = false; }, { passive: true });
    list.addEventListener("keydown", (event) => { if (SCROLL_KEYS.has(event.key)) this.following = false; });
    document.addEventListener("keydown", (event) => this.onKey(event));
  }

  // Frames while playing, so the highlight moves with each word, not four times a second.
  tick() {
    if (this.audio.paused || this.audio.ended) return;
    this.sync();
    requestAnimationFrame(() => this.tick());
  }

  seekToHash() {
    const t = hashTime();
    if (t == null || this.audio.readyState === 0) return;
    this.audio.currentTime = Math.min(t, this.audio.duration || t);
    this.following = true;
    this.sync();
  }

  seek(seconds) {
    this.following = true;
    this.audio.currentTime = Math.max(0, seconds);
    this.audio.play().catch(() => {});
  }

  onClick(event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const edit = target.closest("button.edit");
    if (edit) {
      this.startEdit(edit.closest("li"));
      return;
    }
    if (target.closest("[contenteditable=true]")) return;
    const word = target.closest(".word");
    const li = target.closest("li.segment");
    if (word) this.seek(Number(word.dataset.start));
    else if (li) this.seek(Number(li.dataset.start));
  }

  onKey(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    // The audio's own controls already answer space and the arrows.
    if (target === this.audio || isEditable(target)) return;
    if (target instanceof Element && target.closest(".log-panel, dialog")) return;
    if (event.key === " " && !(target instanceof HTMLButtonElement || target instanceof HTMLAnchorElement)) {
      event.preventDefault();
      if (this.audio.paused) this.audio.play().catch(() => {});
      else this.audio.pause();
    } else if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      event.preventDefault();
      const step = event.key === "ArrowLeft" ? -STEP_SECONDS : STEP_SECONDS;
      this.following = true;
      this.audio.currentTime = Math.max(0, this.audio.currentTime + step);
    }
  }

  // ---- the play head -----------------------------------------------------------------

  find(items, t) {
    // The last item starting at or before t (binary search), if t is before its end.
    let lo = 0;
    let hi = items.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (items[mid].start <= t) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return found >= 0 && t < items[found].end ? items[found] : null;
  }

  sync() {
    const t = this.audio.currentTime;
    const item = this.find(this.items, t);
    if (item !== this.current) {
      this.current?.li.removeAttribute("aria-current");
      this.current = item;
      if (item) {
        item.li.setAttribute("aria-current", "true");
        if (this.following) item.li.scrollIntoView({ block: "nearest" });
      }
    }
    const word = item ? this.find(item.words, t) : null;
    if (word !== this.currentWord) {
      this.currentWord?.el.removeAttribute("aria-current");
      this.currentWord = word;
      word?.el.setAttribute("aria-current", "true");
    }
  }

  // ---- rendering -----------------------------------------------------------------------

  async load() {
    const body = await api(`${this.jobPath}/segments`);
    this.render(body.segments || [], body.version ?? null);
    return this.items.length;
  }

  render(segments, version) {
    this.version = version;
    this.items = [];
    this.current = null;
    this.currentWord = null;
    this.list.replaceChildren(...segments.map((s) => this.segmentElement(s)));
    this.showVersion();
    this.sync();
  }

  showVersion() {
    if (!this.status) return;
    const edits = (this.version ?? 1) - 1;
    this.status.textContent = this.version == null ? ""
      : `Version ${this.version}${edits ? ` (${edits} edit${edits === 1 ? "" : "s"})` : " (as transcribed)"}`;
  }

  segmentElement(s) {
    const li = document.createElement("li");
    li.className = "segment";
    li.dataset.id = s.id;
    li.dataset.start = s.start;
    li.dataset.end = s.end;
    // A button, so the keyboard can play from a line too.
    const time = document.createElement("button");
    time.type = "button";
    time.className = "ts";
    time.textContent = `${formatTimestamp(s.start)} – ${formatTimestamp(s.end)}`;
    time.setAttribute("aria-label", `Play from ${formatTimestamp(s.start)}`);
    const text = document.createElement("span");
    text.className = "text";
    const item = { start: Number(s.start), end: Number(s.end), li, words: [] };
    this.fillText(text, s, item);
    li.append(time, text);
    if (this.version != null) {
      const edit = document.createElement("button");
      edit.type = "button";
      edit.className = "edit button small";
      edit.textContent = "Edit";
      edit.setAttribute("aria-label", `Edit the line at ${formatTimestamp(s.start)}`);
      li.append(edit);
    }
    if (s.edited) li.classList.add("edited");
    this.decorate?.(li, s);
    this.items.push(item);
    return li;
  }

  fillText(span, s, item) {
    const words = Array.isArray(s.words) ? s.words : [];
    if (words.length === 0) {
      span.textContent = String(s.text).trim();
      return;
    }
    words.forEach((w, i) => {
      const el = document.createElement("span");
      el.className = "word";
      el.dataset.start = w.start;
      el.textContent = String(w.word).trim();
      span.append(el);
      if (i < words.length - 1) span.append(" ");
      item.words.push({ start: Number(w.start), end: Number(w.end), el });
    });
  }

  // ---- editing -------------------------------------------------------------------------

  startEdit(li) {
    const span = li.querySelector(".text");
    if (!span || span.isContentEditable) return;
    const before = span.textContent;
    span.textContent = before;
    span.contentEditable = "true";
    span.setAttribute("role", "textbox");
    span.setAttribute("aria-label", "Segment text; Enter saves, Escape cancels");
    span.focus();
    document.getSelection()?.selectAllChildren(span);
    const finish = async (save) => {
      span.removeEventListener("keydown", onKey);
      span.removeEventListener("blur", onBlur);
      span.contentEditable = "false";
      span.removeAttribute("role");
      const text = span.textContent.trim();
      if (!save || !text || text === before) {
        span.textContent = before;
        return;
      }
      await this.save(li, text, before);
    };
    const onKey = (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); finish(true); }
      else if (event.key === "Escape") { event.preventDefault(); finish(false); }
    };
    const onBlur = () => finish(true);
    span.addEventListener("keydown", onKey);
    span.addEventListener("blur", onBlur);
  }

  async save(li, text, before) {
    const id = Number(li.dataset.id);
    li.setAttribute("aria-busy", "true");
    try {
      const answer = await api(`${this.jobPath}/segments/${id}`, {
        method: "PATCH",
        headers: { Accept: "application/json", "Content-Type": "application/json" },
        body: JSON.stringify({ text, version: this.version }),
      });
      this.version = answer.version;
      const index = this.items.findIndex((item) => item.li === li);
      const fresh = this.segmentElement(answer.segment);
      this.items.pop(); // segmentElement appended it; it replaces the old one in place
      this.items[index] = { ...this.items[index], li: fresh, words: [] };
      li.replaceWith(fresh);
      this.current = null;
      this.showVersion();
      this.sync();
    } catch (error) {
      li.querySelector(".text").textContent = before;
      this.onError(error.status === 409
        ? "This transcript was changed elsewhere; it has been reloaded. Make your edit again."
        : `Could not save the edit: ${error.message}`);
      if (error.status === 409) await this.load().catch(() => {});
    } finally {
      li.removeAttribute("aria-busy");
    }
  }
}
