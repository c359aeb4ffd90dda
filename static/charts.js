// A small sparkline chart drawn on a canvas: no library, redrawn at most once per frame.

const MAX_POINTS = 3600;

export class Sparkline {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{minMax?: number, unit?: string, peakEl?: HTMLElement, cssColor?: string}} options
   */
  constructor(canvas, { minMax = 1, unit = "", peakEl = null, cssColor = "--accent" } = {}) {
    this.canvas = canvas;
    this.minMax = minMax;
    this.unit = unit;
    this.peakEl = peakEl;
    this.cssColor = cssColor;
    this.values = [];
    this.frame = 0;
    if (window.ResizeObserver) {
      new ResizeObserver(() => this.schedule()).observe(canvas);
    } else {
      window.addEventListener("resize", () => this.schedule());
    }
  }

  push(value) {
    const v = Number(value);
    if (!Number.isFinite(v)) return;
    this.values.push(v);
    if (this.values.length > MAX_POINTS) this.values.splice(0, this.values.length - MAX_POINTS);
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.draw());
  }

  draw() {
    this.frame = 0;
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const cssWidth = canvas.clientWidth || 300;
    const cssHeight = canvas.clientHeight || 80;
    if (canvas.width !== Math.round(cssWidth * ratio)) canvas.width = Math.round(cssWidth * ratio);
    if (canvas.height !== Math.round(cssHeight * ratio)) canvas.height = Math.round(cssHeight * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, cssWidth, cssHeight);

    const style = getComputedStyle(document.documentElement);
    const color = style.getPropertyValue(this.cssColor).trim() || "#2563eb";
    const grid = style.getPropertyValue("--grid").trim() || "rgba(128,128,128,.25)";
    const muted = style.getPropertyValue("--muted").trim() || "#888";

    // One point per pixel column at most: the peak of the samples that fall in it.
    const values = this.values;
    const points = [];
    const columns = Math.max(2, Math.floor(cssWidth));
    if (values.length <= columns) {
      points.push(...values);
    } else {
      const per = values.length / columns;
      for (let i = 0; i < columns; i++) {
        let peak = -Infinity;
        for (let j = Math.floor(i * per); j < Math.floor((i + 1) * per); j++) peak = Math.max(peak, values[j]);
        points.push(peak);
      }
    }
    const peak = values.length ? Math.max(...points) : 0;
    const top = Math.max(this.minMax, peak * 1.15);
    const padTop = 14;
    const h = cssHeight - padTop - 2;

    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const y = Math.round(padTop + h * f) + 0.5;
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(cssWidth, y);
      ctx.stroke();
    }
    ctx.fillStyle = muted;
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.fillText(`${Math.round(top)}${this.unit}`, 4, 1);

    if (this.peakEl) {
      this.peakEl.textContent = values.length ? `(peak ${Math.round(Math.max(...values))}${this.unit})` : "";
    }
    if (points.length === 0) {
      ctx.fillText("no samples yet", 4, padTop + h / 2 - 6);
      return;
    }
    const x = (i) => (points.length === 1 ? cssWidth : (i / (points.length - 1)) * cssWidth);
    const y = (v) => padTop + h - (Math.max(0, v) / top) * h;
    ctx.beginPath();
    ctx.moveTo(x(0), y(points[0]));
    for (let i = 1; i < points.length; i++) ctx.lineTo(x(i), y(points[i]));
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.lineJoin = "round";
    ctx.stroke();
    ctx.lineTo(x(points.length - 1), padTop + h);
    ctx.lineTo(x(0), padTop + h);
    ctx.closePath();
    ctx.globalAlpha = 0.15;
    ctx.fillStyle = color;
    ctx.fill();
    ctx.globalAlpha = 1;
  }
}
