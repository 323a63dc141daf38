// Bar charts as plain SVG: one bar per latent dimension, labelled, each with a tooltip.
//
// A chart is laid out in the SVG's own pixels (its viewBox is its rendered size), so text is
// never stretched, whatever the number of bars; labels thin out (every 2nd, 5th, 10th...)
// where bars are too narrow for each to have one. Charts are drawn again when they resize.

const SVG = "http://www.w3.org/2000/svg";
const FALLBACK = { width: 480, height: 144 }; // .chart svg's size in playground.css, until it is laid out
const LABEL_ROOM = 14; // px under the bars for the labels
const DIGIT_WIDTH = 6; // px, a generous width of one digit at the labels' 9px font
const drawn = new WeakMap(); // svg -> [values, options], for redrawing on resize
const resized = new ResizeObserver((entries) => {
  for (const { target } of entries) {
    const last = drawn.get(target);
    if (last) draw(target, ...last);
  }
});

function element(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  parent.appendChild(node);
  return node;
}

/** The smallest of 1, 2, 5, 10, 20, 50... bars per label that leaves each label room for its digits. */
function labelStep(count, slot) {
  const room = String(count - 1).length * DIGIT_WIDTH + 4;
  for (let step = 1; ; step *= 10) {
    for (const k of [1, 2, 5]) if (slot * step * k >= room) return step * k;
  }
}

/**
 * Draw `values` into `svg`, bars from zero; the axis spans [-limit, limit] when any value is
 * negative, else [0, limit]. `classes(i)` adds classes to bar i (e.g. "inactive").
 */
export function barChart(svg, values, options = {}) {
  drawn.set(svg, [values, options]);
  resized.observe(svg);
  draw(svg, values, options);
}

function draw(svg, values, { limit, unit = "", classes = () => "" }) {
  svg.replaceChildren();
  const box = svg.getBoundingClientRect();
  const width = box.width > 0 ? box.width : FALLBACK.width;
  const height = (box.height > 0 ? box.height : FALLBACK.height) - LABEL_ROOM; // of the bars
  svg.setAttribute("viewBox", `0 0 ${width} ${height + LABEL_ROOM}`);
  svg.removeAttribute("preserveAspectRatio"); // the default: one user unit is one pixel here
  const slot = width / Math.max(values.length, 1);
  const step = labelStep(values.length, slot);
  const signed = values.some((v) => v < 0);
  const top = limit ?? Math.max(1e-9, ...values.map(Math.abs));
  const zero = signed ? height / 2 : height;
  const scale = (signed ? height / 2 : height) / top;
  values.forEach((value, i) => {
    const clipped = Math.max(-top, Math.min(top, value));
    const length = Math.abs(clipped) * scale;
    const bar = element("rect", {
      x: i * slot + slot * 0.15, width: Math.max(slot * 0.7, 0.5),
      y: clipped >= 0 ? zero - length : zero, height: Math.max(length, 0.5),
      class: `bar ${value < 0 ? "negative" : ""} ${classes(i)}`,
    }, svg);
    element("title", {}, bar).textContent = `z${i}: ${value.toFixed(3)}${unit}`;
    if (i % step === 0) {
      element("text", { x: (i + 0.5) * slot, y: height + 11, "text-anchor": "middle" }, svg).textContent = String(i);
    }
  });
  element("line", { x1: 0, x2: width, y1: zero, y2: zero, class: "axis" }, svg);
  svg.setAttribute("aria-description", values.map((v, i) => `z${i} ${v.toFixed(2)}`).join(", "));
}
