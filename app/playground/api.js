// The service's public API over fetch: the API key, the model picked, errors as problem details.
//
// Every call goes to the same server that served this page, relative to it (../v1/...),
// so the page also works behind a path prefix.

const KEY_STORAGE = "vaeserve.apiKey"; // sessionStorage: gone when the tab closes

/** An error answer of the API: its RFC 9457 problem document (status, title, detail). */
export class Problem extends Error {
  constructor(status, title, detail) {
    super(`${status} ${title}: ${detail}`);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }

  /** What a person reads: the server's words, and what to do about a missing key. */
  explain() {
    const hint = this.status === 401 ? "\nEnter a valid API key in the field at the top of the page." : "";
    return `${this.status} ${this.title}: ${this.detail}${hint}`;
  }
}

async function problemOf(response) {
  let title = response.statusText || "Error";
  let detail = "";
  try {
    const body = await response.json(); // application/problem+json (v1), or {"detail": ...}
    title = body.title || title;
    detail = body.detail || JSON.stringify(body);
  } catch {
    detail = "the server's answer is not a problem document";
  }
  return new Problem(response.status, title, detail);
}

export class Api {
  constructor(base = new URL("../", document.baseURI)) {
    this.base = base;
    this.key = sessionStorage.getItem(KEY_STORAGE) || "";
    this.selected = null; // {name, version}: sent with every model call
  }

  setKey(key) {
    this.key = key.trim();
    if (this.key) sessionStorage.setItem(KEY_STORAGE, this.key);
    else sessionStorage.removeItem(KEY_STORAGE);
  }

  url(path, params = {}, scoped = true) {
    const url = new URL(path, this.base);
    const all = scoped && this.selected ? { model: this.selected.name, version: this.selected.version, ...params } : params;
    for (const [name, value] of Object.entries(all)) {
      for (const one of [value].flat()) {
        if (one !== null && one !== undefined) url.searchParams.append(name, String(one));
      }
    }
    return url;
  }

  /** One request; resolves to parsed JSON or a Blob (`as: "blob"`), rejects with a Problem. */
  async call(path, { method = "GET", params = {}, body, json, accept, as = "json", scoped = true } = {}) {
    const headers = {};
    if (this.key) headers.Authorization = `Bearer ${this.key}`;
    if (accept) headers.Accept = accept;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(this.url(path, params, scoped), { method, headers, body });
    } catch (error) {
      throw new Problem(0, "No answer", `the server could not be reached (${error.message})`);
    }
    if (!response.ok) throw await problemOf(response);
    return as === "blob" ? response.blob() : response.json();
  }

  /** A multipart body with one file part per image, in order: any format the server decodes. */
  static files(...blobs) {
    const form = new FormData();
    blobs.forEach((blob, i) => form.append("file", blob, blob.name || `image-${i}.png`));
    return form;
  }

  limits() { return this.call("v1/limits", { scoped: false }); }
  models() { return this.call("v1/models", { scoped: false }); }
  model(name, version) { return this.call(`v1/models/${encodeURIComponent(name)}`, { params: { version }, scoped: false }); }
  schema() { return this.call("openapi.json", { scoped: false }); }
  encode(blob) { return this.call("v1/encode", { method: "POST", body: Api.files(blob) }); }
  reconstruct(blob) { return this.call("v1/reconstruct", { method: "POST", body: Api.files(blob) }); }
  score(blob, score) {
    return this.call("v1/score", { method: "POST", body: Api.files(blob), params: { heatmap: true, score } });
  }
  samples(n, seed, temperature) {
    return this.call("v1/samples", { params: { n, seed, temperature, format: "png" }, as: "blob" });
  }
  interpolate(first, second, steps, method) {
    return this.call("v1/interpolate", { method: "POST", body: Api.files(first, second), params: { steps, method } });
  }
  decode(latent) {
    return this.call("v1/decode", { method: "POST", json: { latents: [latent] }, accept: "image/png", as: "blob" });
  }
  traverseGrid(latent, dimensions, steps) {
    const params = { dimensions, steps, low: -3, high: 3, format: "png" };
    return this.call("v1/traverse", { method: "POST", json: { latents: [latent] }, params, as: "blob" });
  }
}
