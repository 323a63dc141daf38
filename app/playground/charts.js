// Bar charts as plain SVG: one bar per latent dimension, labelled, each with a tooltip.

const SVG = "http://www.w3.org/2000/svg";

function element(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  parent.appendChild(node);
  return node;
}

/**
 * Draw `values` into `svg`, bars from zero; the axis spans [-limit, limit] when any value is
 * negative, else [0, limit]. `classes(i)` adds classes to bar i (e.g. "inactive").
 */
export function barChart(svg, values, { limit, unit = "", classes = () => "" } = {}) {
  svg.replaceChildren();
  const width = 20 * values.length;
  const height = 100;
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 14}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const signed = values.some((v) => v < 0);
  const top = limit ?? Math.max(1e-9, ...values.map(Math.abs));
  const zero = signed ? height / 2 : height;
  const scale = (signed ? height / 2 : height) / top;
  values.forEach((value, i) => {
    const clipped = Math.max(-top, Math.min(top, value));
    const length = Math.abs(clipped) * scale;
    const bar = element("rect", {
      x: i * 20 + 3, width: 14,
      y: clipped >= 0 ? zero - length : zero, height: Math.max(length, 0.5),
      class: `bar ${value < 0 ? "negative" : ""} ${classes(i)}`,
    }, svg);
    element("title", {}, bar).textContent = `z${i}: ${value.toFixed(3)}${unit}`;
    element("text", { x: i * 20 + 10, y: height + 11, "text-anchor": "middle" }, svg).textContent = String(i);
  });
  element("line", { x1: 0, x2: width, y1: zero, y2: zero, class: "axis" }, svg);
  svg.setAttribute("aria-description", values.map((v, i) => `z${i} ${v.toFixed(2)}`).join(", "));
}
