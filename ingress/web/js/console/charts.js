// Small SVG time-series charts: axes, ticks and one series drawn as a line or as bars. No library.
// Styling lives in css/admin.css (classes only; the page's CSP allows no inline styles).

const SVG_NS = "http://www.w3.org/2000/svg";
const WIDTH = 420;
const HEIGHT = 180;
const MARGIN = { top: 12, right: 12, bottom: 26, left: 48 };
const TIME_STEPS_S = [10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = String(text);
  return el;
}

/** A "nice" tick step (1, 2 or 5 times a power of ten) giving about `count` ticks up to `max`. */
export function niceStep(max, count = 4) {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) {
    if (raw <= m * power) return m * power;
  }
  return 10 * power;
}

/** Compact numbers for tick labels: 0.25, 12, 1.5k, 2M. */
export function formatNumber(value) {
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (abs >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  if (abs === 0 || abs >= 10) return String(Math.round(value));
  if (abs >= 1) return String(+value.toFixed(1));
  return String(+value.toPrecision(2));
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/**
 * Draw `points` ([{t: ISO time, v: number}], oldest first, equal steps) into `container`, replacing
 * what was there. Options: {title, unit, kind: "line" | "bar", stepSeconds, integer (whole-number ticks)}.
 * Returns the <svg>. Bad or missing values are drawn as 0; an empty series draws the axes only.
 */
export function drawChart(
  container,
  points,
  { title = "", unit = "", kind = "line", stepSeconds = 60, integer = false } = {},
) {
  const data = (Array.isArray(points) ? points : [])
    .map((p) => ({ t: Date.parse(p && p.t), v: Number(p && p.v) }))
    .filter((p) => Number.isFinite(p.t))
    .map((p) => ({ t: p.t, v: Number.isFinite(p.v) && p.v > 0 ? p.v : 0 }));
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const stepMs = Math.max(1, stepSeconds) * 1000;
  const t0 = data.length ? data[0].t : Date.now() - 3600_000;
  const t1 = data.length ? data[data.length - 1].t + stepMs : Date.now();
  const maxV = Math.max(0, ...data.map((p) => p.v));
  const yStep = integer ? Math.max(1, niceStep(maxV || 1)) : niceStep(maxV || 1);
  const yMax = Math.max(yStep, Math.ceil(maxV / yStep) * yStep);
  const x = (t) => MARGIN.left + ((t - t0) / Math.max(1, t1 - t0)) * plotW;
  const y = (v) => MARGIN.top + plotH - (v / yMax) * plotH;

  const total = data.reduce((sum, p) => sum + p.v, 0);
  const last = data.length ? data[data.length - 1].v : 0;
  const label = `${title}: ${data.length} points, latest ${formatNumber(last)} ${unit}, peak ${formatNumber(maxV)} ${unit}`;
  const root = svg("svg", {
    class: `chart chart-kind-${kind}`,
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-label": label,
    preserveAspectRatio: "xMidYMid meet",
  });
  root.appendChild(svg("title", {}, label));
  root.dataset.total = String(total);
  root.dataset.points = String(data.length);

  // Horizontal grid lines with the value ticks.
  const axes = svg("g", { class: "chart-axes" });
  for (let v = 0; v <= yMax + yStep / 2; v += yStep) {
    const yy = y(v);
    axes.appendChild(svg("line", { class: "chart-grid", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: yy, y2: yy }));
    axes.appendChild(svg("text", { class: "chart-tick", x: MARGIN.left - 6, y: yy + 4, "text-anchor": "end" }, formatNumber(v)));
  }
  // Time ticks on round clock times, about five of them.
  const spanS = (t1 - t0) / 1000;
  const tickS = TIME_STEPS_S.find((s) => spanS / s <= 6) || TIME_STEPS_S[TIME_STEPS_S.length - 1];
  const tickMs = tickS * 1000;
  for (let t = Math.ceil(t0 / tickMs) * tickMs; t <= t1; t += tickMs) {
    const xx = x(t);
    axes.appendChild(svg("line", { class: "chart-xtick", x1: xx, x2: xx, y1: MARGIN.top + plotH, y2: MARGIN.top + plotH + 4 }));
    axes.appendChild(svg("text", { class: "chart-tick", x: xx, y: HEIGHT - 8, "text-anchor": "middle" }, clock(t)));
  }
  axes.appendChild(
    svg("line", { class: "chart-axis", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(0), y2: y(0) }),
  );
  axes.appendChild(svg("line", { class: "chart-axis", x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: y(0) }));
  root.appendChild(axes);

  // The series.
  const series = svg("g", { class: "chart-series" });
  if (kind === "bar") {
    const barW = Math.max(1, (plotW / Math.max(1, data.length)) * 0.8);
    for (const p of data) {
      if (p.v <= 0) continue;
      const rect = svg("rect", { class: "chart-bar", x: x(p.t) + barW * 0.125, y: y(p.v), width: barW, height: y(0) - y(p.v) });
      rect.appendChild(svg("title", {}, `${clock(p.t)}: ${formatNumber(p.v)} ${unit}`));
      series.appendChild(rect);
    }
  } else if (data.length) {
    const coords = data.map((p) => `${x(p.t + stepMs / 2).toFixed(1)},${y(p.v).toFixed(1)}`);
    series.appendChild(svg("polyline", { class: "chart-line", points: coords.join(" "), fill: "none" }));
  }
  root.appendChild(series);
  container.replaceChildren(root);
  return root;
}
