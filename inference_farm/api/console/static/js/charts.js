// Sparklines as SVG, built node by node.
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

// An SVG sparkline of values (nulls skipped), with a label for assistive technology.
export function sparkline(values, { width = 160, height = 36, label = "trend" } = {}) {
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label, class: "spark" });
  const numbers = values.filter((v) => v != null && Number.isFinite(v));
  if (numbers.length < 2) return chart;
  const max = Math.max(...numbers) || 1;
  const step = width / Math.max(1, values.length - 1);
  const points = [];
  values.forEach((v, i) => {
    if (v != null && Number.isFinite(v)) points.push(`${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  });
  chart.append(svg("polyline", { points: points.join(" "), fill: "none", "stroke-width": 1.5, class: "line" }));
  return chart;
}
