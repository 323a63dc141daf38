// The playground's panels: model card, draw or drop, sample, interpolate, traverse.
//
// Each panel talks to the public API through api.js and shows the server's problem
// details when it says no. No framework: the DOM, fetch, canvas and SVG.

import { Api, Problem } from "./api.js";
import { barChart } from "./charts.js";
import { Sketchpad } from "./sketchpad.js";

const $ = (id) => document.getElementById(id);
const api = new Api();
const state = {
  models: [], // GET /v1/models
  detail: null, // GET /v1/models/{name}: the model picked
  describe: {}, // score name -> its description, from the OpenAPI schema
  mean: null, // the drawing's posterior mean, for the traversal
  path: null, // the last interpolation
};
const SLIDER_DIMENSIONS = 8;
const objectUrls = new WeakMap();

// -- small helpers ------------------------------------------------------------------------

function showProblem(where, error) {
  const node = $(where);
  node.hidden = !error;
  node.textContent = !error ? "" : error instanceof Problem ? error.explain() : `Error: ${error.message || error}`;
}

/** Run `work`, showing what goes wrong in the problem paragraph `where`; true when it went well. */
async function guarded(where, work) {
  showProblem(where, null);
  try {
    await work();
    return true;
  } catch (error) {
    showProblem(where, error);
    return false;
  }
}

/** Latest wins: calls during a run collapse into one more run after it, so sliders never queue up. */
function latest(run) {
  let busy = false;
  let again = false;
  return async () => {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      do {
        again = false;
        await run();
      } while (again);
    } finally {
      busy = false;
    }
  };
}

function setImage(img, source) {
  const old = objectUrls.get(img);
  if (old) URL.revokeObjectURL(old);
  if (source instanceof Blob) {
    const url = URL.createObjectURL(source);
    objectUrls.set(img, url);
    img.src = url;
  } else {
    objectUrls.delete(img);
    img.src = `data:image/png;base64,${source}`;
  }
  img.hidden = false;
}

function loadImage(b64) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the heatmap could not be shown"));
    image.src = `data:image/png;base64,${b64}`;
  });
}

function number(value) {
  if (value === null || value === undefined) return "—";
  const size = Math.abs(value);
  return size !== 0 && (size < 0.01 || size >= 1e5) ? value.toExponential(3) : value.toPrecision(4);
}

function make(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function table(caption, headers, rows) {
  const t = make("table");
  t.append(make("caption", caption));
  const head = t.createTHead().insertRow();
  headers.forEach((h) => head.append(make("th", h, { scope: "col" })));
  const body = t.createTBody();
  rows.forEach((row) => {
    const tr = body.insertRow();
    row.forEach((cell) => {
      const td = tr.insertCell();
      td.textContent = typeof cell === "number" ? number(cell) : cell;
      if (typeof cell === "number") td.className = "number";
    });
  });
  return t;
}

function definitions(pairs) {
  const list = make("dl");
  for (const [term, value] of pairs) list.append(make("dt", term), make("dd", String(value)));
  return list;
}

// -- models -------------------------------------------------------------------------------

/** Bound the form fields by what this server accepts (GET /v1/limits), so the browser refuses the rest. */
async function applyLimits() {
  const limits = await api.limits();
  $("sample-n").max = String(limits.max_samples);
  if (limits.max_interpolation_steps) $("interpolate-steps").max = String(limits.max_interpolation_steps);
}

async function loadModels() {
  await guarded("problem", async () => {
    await applyLimits();
    const list = await api.models();
    state.models = list.models;
    const names = [...new Set(list.models.map((m) => m.name))];
    const fallback = list.models.find((m) => m.default) || list.models[0]; // the server's default model
    const kept = names.includes(api.selected?.name) ? api.selected : null; // after a new key: what was picked
    const chosen = kept || { name: fallback.name, version: fallback.version };
    $("model-name").replaceChildren(...names.map((name) => new Option(name, name)));
    $("model-name").value = chosen.name;
    await pickName(chosen.name, chosen.version);
  });
}

async function pickName(name, version) {
  const versions = state.models.filter((m) => m.name === name).map((m) => m.version);
  versions.sort((a, b) => Number(b) - Number(a)); // the highest first, as the API picks
  $("model-version").replaceChildren(...versions.map((v) => new Option(v, v)));
  $("model-version").value = versions.includes(version) ? version : versions[0];
  await pickModel(name, $("model-version").value);
}

async function pickModel(name, version) {
  await guarded("problem", async () => {
    const detail = await api.model(name, version);
    api.selected = { name, version };
    const sameInput = JSON.stringify(state.detail?.input) === JSON.stringify(detail.input);
    state.detail = detail;
    state.mean = null;
    renderCard(detail);
    if (!sameInput) {
      for (const pad of [draw, from, to]) pad.configure(detail.input); // clears them
      $("draw-width").value = draw.width;
    }
    if (draw.empty) $("traverse-base").value = "origin"; // no drawing (any more) to start from
    $("traverse-grid").hidden = true; // the last model's sweep
    $("draw-ink-label").hidden = detail.input.colour_mode === "L";
    const scores = detail.calibration?.scores ?? [];
    $("draw-score").replaceChildren(...scores.map((s) => new Option(s, s)));
    $("draw-score").value = detail.calibration?.score ?? "";
    $("draw-score").disabled = scores.length === 0;
    clearDrawResults();
    clearInterpolation();
    buildSliders(detail);
    sample();
    analyse(); // what is drawn, with this model
  });
}

function renderCard(m) {
  const card = $("model-card");
  const spec = m.input;
  const parts = [
    make("h3", `${m.name} version ${m.version}${m.default ? " (default)" : ""}`, { id: "model-card-title" }),
  ];
  if (m.description) parts.push(make("p", m.description));
  parts.push(definitions([
    ["input", `${spec.channels} × ${spec.height} × ${spec.width}, ${spec.colour_mode}, values ` +
      `${spec.value_range[0]}–${spec.value_range[1]}, other sizes resized ${spec.resize}`],
    ["latent dimensions", m.latent_dim],
    ["likelihood", m.likelihood],
    ["parameters", m.parameters ?? "—"],
    ["dataset", m.dataset ?? "—"],
    ["created", new Date(m.created).toISOString().slice(0, 10)],
  ]));
  if (m.metrics.length) {
    parts.push(table("Metrics (nats per image; bits/dim)", ["split", "images", "−ELBO", "reconstruction", "KL",
      "IWAE NLL", "K", "bits/dim"], m.metrics.map((s) => [s.split, String(s.images), s.neg_elbo,
      s.reconstruction, s.kl, s.iwae_nll, String(s.importance_samples), s.bits_per_dim])));
  }
  const cal = m.calibration;
  parts.push(cal
    ? table("Calibration", ["decides with", "threshold", "false positive rate", "images", "K", "calibrated scores"],
      [[cal.score, cal.threshold, cal.false_positive_rate, String(cal.split_size), String(cal.importance_samples),
        cal.scores.join(", ")]])
    : make("p", "No calibration: scores without a threshold or decision.", { class: "muted" }));
  if (m.latents) {
    const figure = make("figure", undefined, { class: "chart" });
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-labelledby", "activity-caption");
    figure.append(svg, make("figcaption", `activity per dimension: variance of the posterior means over the ` +
      `${m.latents.split} split (${m.latents.images} images); active above ${m.latents.threshold}: ` +
      `${m.latents.most_active.length} of ${m.latent_dim}`, { id: "activity-caption" }));
    parts.push(figure);
    barChart(svg, m.latents.dimensions.map((d) => d.activity), {
      classes: (i) => (m.latents.dimensions[i].active ? "" : "inactive"),
    });
  }
  card.replaceChildren(...parts);
}

// -- draw or drop -------------------------------------------------------------------------

const draw = new Sketchpad($("draw-canvas"), () => analyse());
const from = new Sketchpad($("from-canvas"), () => {});
const to = new Sketchpad($("to-canvas"), () => {});

function clearDrawResults() {
  for (const id of ["draw-reconstruction", "draw-heatmap"]) $(id).hidden = true;
  const overlay = $("draw-overlay");
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  $("draw-scores").hidden = true;
  $("draw-decision").textContent = "";
  $("draw-decision").className = "decision";
  $("draw-latent").replaceChildren();
}

const analyse = latest(async () => {
  if (draw.empty || !state.detail) {
    clearDrawResults();
    showProblem("draw-problem", null);
    return;
  }
  const blob = await draw.blob();
  const ok = await guarded("draw-problem", async () => {
    const decide = $("draw-score").value || undefined;
    const [recon, scored, encoded] = await Promise.all([api.reconstruct(blob), api.score(blob, decide),
      api.encode(blob)]);
    setImage($("draw-reconstruction"), recon.results[0].image);
    const result = scored.results[0];
    setImage($("draw-heatmap"), result.heatmap);
    await drawOverlay(result.heatmap);
    renderScores(scored, result);
    state.mean = encoded.results[0].mean;
    barChart($("draw-latent"), state.mean, { limit: 3 });
  });
  if (!ok) {
    clearDrawResults();
    state.mean = null;
  }
  if ($("traverse-base").value === "drawing") resetSliders();
});

async function drawOverlay(heatmap) {
  const spec = state.detail.input;
  const overlay = $("draw-overlay");
  overlay.width = spec.width;
  overlay.height = spec.height;
  const c = overlay.getContext("2d");
  c.imageSmoothingEnabled = true;
  c.globalAlpha = 1;
  c.drawImage(draw.canvas, 0, 0, spec.width, spec.height);
  c.globalAlpha = 0.6;
  c.imageSmoothingEnabled = false;
  c.drawImage(await loadImage(heatmap), 0, 0);
}

function renderScores(scored, result) {
  const names = Object.keys(state.describe).length
    ? Object.keys(state.describe)
    : Object.keys(result).filter((k) => !["score", "p_value", "is_anomaly", "heatmap"].includes(k));
  const body = $("draw-scores").tBodies[0];
  body.replaceChildren();
  for (const name of names) {
    const row = body.insertRow();
    if (name === scored.score) row.className = "deciding";
    row.insertCell().textContent = name;
    const value = row.insertCell();
    value.textContent = number(result[name]);
    value.className = "number";
    value.dataset.value = String(result[name]); // the full number, for copying (and tests)
    row.insertCell().textContent = state.describe[name] || "";
  }
  for (const [name, value] of [["threshold", scored.threshold], ["p-value", result.p_value]]) {
    const row = body.insertRow();
    row.insertCell().textContent = name;
    const cell = row.insertCell();
    cell.textContent = number(value);
    cell.className = "number";
    cell.dataset.value = String(value);
    row.insertCell().textContent = name === "threshold"
      ? `of ${scored.score}, at a false positive rate of ${number(scored.false_positive_rate)}`
      : "share of calibration images scoring at least as high";
  }
  $("draw-scores").hidden = false;
  const decision = $("draw-decision");
  if (result.is_anomaly === null) {
    decision.textContent = "No decision: the model has no calibration for this score.";
    decision.className = "decision";
    return;
  }
  const verdict = result.is_anomaly ? "Anomaly" : "Normal";
  const compare = result.is_anomaly ? ">" : "≤";
  decision.textContent = `${verdict}: ${scored.score} ${number(result.score)} ${compare} threshold ` +
    `${number(scored.threshold)} (p = ${number(result.p_value)})`;
  decision.className = `decision ${result.is_anomaly ? "anomaly" : "normal"}`;
}

$("draw-clear").addEventListener("click", () => draw.clear());
$("draw-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) draw.load(file);
  event.target.value = ""; // the same file again is a change too
});
$("draw-width").addEventListener("input", (event) => {
  for (const pad of [draw, from, to]) pad.width = Number(event.target.value);
});
$("draw-ink").addEventListener("input", (event) => {
  for (const pad of [draw, from, to]) pad.ink = event.target.value;
});
$("draw-score").addEventListener("change", () => analyse());

// -- sample -------------------------------------------------------------------------------

/**
 * True when every field of `form` is valid; else its first invalid field's message goes into
 * the problem paragraph `where` (in place of an older answer's) and nothing is sent.
 */
function validForm(form, where) {
  const invalid = [...$(form).elements].find((field) => field.willValidate && !field.checkValidity());
  if (!invalid) return true;
  const label = invalid.closest("label")?.firstChild?.textContent.trim() || invalid.id;
  showProblem(where, new Error(`${label}: ${invalid.validationMessage}`));
  return false;
}

function sample() {
  if (!validForm("sample-form", "sample-problem")) {
    $("sample-grid").hidden = true; // it is another model's, or other values'
    return Promise.resolve(false);
  }
  return guarded("sample-problem", async () => {
    const blob = await api.samples($("sample-n").value, $("sample-seed").value, $("sample-temperature").value);
    setImage($("sample-grid"), blob);
  });
}

$("sample-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sample();
});
$("sample-new-seed").addEventListener("click", () => {
  $("sample-seed").value = String(Math.floor(Math.random() * 1e6));
  sample();
});

// -- interpolate --------------------------------------------------------------------------

function clearInterpolation() {
  state.path = null;
  $("interpolate-strip").replaceChildren();
  $("interpolate-frame").hidden = true;
  $("interpolate-at").textContent = "";
  $("interpolate-position").disabled = true;
}

function showFrame(i) {
  const path = state.path;
  setImage($("interpolate-frame"), path.images[i]);
  $("interpolate-at").textContent = `t = ${path.t[i].toFixed(2)} (image ${i + 1} of ${path.images.length})`;
  [...$("interpolate-strip").children].forEach((img, j) => img.classList.toggle("current", i === j));
}

// A submission the browser refuses (a field out of range) replaces an older answer's problem.
for (const [form, where] of [["sample-form", "sample-problem"], ["interpolate-form", "interpolate-problem"]]) {
  $(form).addEventListener("invalid", () => validForm(form, where), true);
}

$("interpolate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  await guarded("interpolate-problem", async () => {
    if (from.empty || to.empty) throw new Error("draw or upload both images first");
    const path = await api.interpolate(await from.blob(), await to.blob(), $("interpolate-steps").value,
      $("interpolate-method").value);
    state.path = path;
    $("interpolate-strip").replaceChildren(...path.images.map((b64, i) => make("img", undefined, {
      src: `data:image/png;base64,${b64}`, alt: `t = ${path.t[i].toFixed(2)}`,
    })));
    const slider = $("interpolate-position");
    slider.max = String(path.images.length - 1);
    slider.value = "0";
    slider.disabled = false;
    showFrame(0);
  });
});
$("interpolate-position").addEventListener("input", (event) => showFrame(Number(event.target.value)));
$("from-clear").addEventListener("click", () => from.clear());
$("to-clear").addEventListener("click", () => to.clear());
for (const [input, pad] of [["from-file", from], ["to-file", to]]) {
  $(input).addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) pad.load(file);
    event.target.value = "";
  });
}

// -- traverse -----------------------------------------------------------------------------

function traverseBase() {
  const dim = state.detail.latent_dim;
  if ($("traverse-base").value === "drawing" && state.mean) return [...state.mean];
  return new Array(dim).fill(0);
}

/** The most active dimensions (all by activity when none is active), as /v1/traverse picks by default. */
function sliderDimensions(detail) {
  const all = [...Array(detail.latent_dim).keys()];
  if (!detail.latents) return all.slice(0, SLIDER_DIMENSIONS);
  const { most_active: active, dimensions } = detail.latents;
  const byActivity = all.sort((a, b) => dimensions[b].activity - dimensions[a].activity);
  return (active.length ? active : byActivity).slice(0, SLIDER_DIMENSIONS);
}

function buildSliders(detail) {
  const box = $("traverse-sliders");
  box.querySelectorAll("label").forEach((node) => node.remove());
  for (const d of sliderDimensions(detail)) {
    const activity = detail.latents ? ` (activity ${detail.latents.dimensions[d].activity.toFixed(2)})` : "";
    const input = make("input", undefined, { type: "range", min: "-3", max: "3", step: "0.1", value: "0" });
    input.dataset.dimension = String(d);
    const output = make("output", "0.0");
    const label = make("label", `z${d}${activity}`);
    label.append(input, output);
    input.addEventListener("input", () => {
      output.textContent = Number(input.value).toFixed(1);
      decodeSliders();
    });
    box.append(label);
  }
  resetSliders();
}

function resetSliders() {
  if (!state.detail) return;
  if ($("traverse-base").value === "drawing" && !state.mean) {
    showProblem("traverse-problem", new Error("draw or upload an image in “Draw or drop” first; starting from 0"));
  } else {
    showProblem("traverse-problem", null);
  }
  const base = traverseBase();
  for (const input of $("traverse-sliders").querySelectorAll("input")) {
    input.value = String(base[Number(input.dataset.dimension)]);
    input.nextElementSibling.textContent = Number(input.value).toFixed(1);
  }
  decodeSliders();
}

function sliderLatent() {
  const z = traverseBase();
  for (const input of $("traverse-sliders").querySelectorAll("input")) z[Number(input.dataset.dimension)] = Number(input.value);
  return z;
}

const decodeSliders = latest(async () => {
  await guarded("traverse-problem", async () => setImage($("traverse-image"), await api.decode(sliderLatent())));
});

$("traverse-base").addEventListener("change", () => resetSliders());
$("traverse-reset").addEventListener("click", () => resetSliders());
$("traverse-sweep").addEventListener("click", () =>
  guarded("traverse-problem", async () => {
    const grid = await api.traverseGrid(traverseBase(), sliderDimensions(state.detail), 7);
    setImage($("traverse-grid"), grid);
  }));

// -- settings -----------------------------------------------------------------------------

$("api-key").value = api.key;
$("api-key").addEventListener("change", (event) => {
  api.setKey(event.target.value);
  loadModels();
});
$("settings").addEventListener("submit", (event) => {
  event.preventDefault();
  api.setKey($("api-key").value);
  loadModels();
});
$("model-name").addEventListener("change", (event) => pickName(event.target.value, null));
$("model-version").addEventListener("change", (event) => pickModel($("model-name").value, event.target.value));

async function describeScores() {
  try {
    const schema = await api.schema();
    const properties = schema.components.schemas.ImageScores.properties;
    state.describe = Object.fromEntries(Object.entries(properties).map(([name, p]) => [name, p.description || ""]));
  } catch {
    state.describe = {}; // the table still lists the scores, without their descriptions
  }
}

await describeScores();
await loadModels();
document.body.dataset.ready = "true"; // for tests and screenshots: the first load is done
