// A canvas to draw an input on (mouse, pen or touch), or to drop or upload an image into.
//
// Its pixels follow the model's input spec: the canvas is a whole multiple of the model's
// height and width, the background is the bottom of the value range and the ink the top
// (white on black for grey digits), and the stroke is a few model pixels wide.

export class Sketchpad {
  /** `onChange()` runs after each finished stroke, upload, drop or clear. */
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.onChange = onChange;
    this.file = null; // an uploaded file, sent as it is until something is drawn over it
    this.empty = true;
    this.width = 2.5; // stroke width in model pixels
    this.ink = "#ffffff";
    this.background = "#000000";
    this.scale = 8;
    this._drawing = null;
    canvas.addEventListener("pointerdown", (event) => this._start(event));
    canvas.addEventListener("pointermove", (event) => this._move(event));
    canvas.addEventListener("pointerup", (event) => this._end(event));
    canvas.addEventListener("pointercancel", (event) => this._end(event));
    canvas.addEventListener("dragover", (event) => {
      event.preventDefault();
      canvas.classList.add("dragging");
    });
    canvas.addEventListener("dragleave", () => canvas.classList.remove("dragging"));
    canvas.addEventListener("drop", (event) => {
      event.preventDefault();
      canvas.classList.remove("dragging");
      const file = event.dataTransfer.files[0];
      if (file) this.load(file);
    });
  }

  /** Size, colours and stroke from the model's input spec (GET /v1/models/{name} `input`). */
  configure(spec) {
    const [low, high] = spec.value_range;
    const grey = (v) => Math.round(255 * Math.min(1, Math.max(0, v)));
    this.background = `rgb(${grey(low)}, ${grey(low)}, ${grey(low)})`;
    if (spec.colour_mode === "L") this.ink = `rgb(${grey(high)}, ${grey(high)}, ${grey(high)})`;
    this.width = Math.max(1, Math.min(spec.height, spec.width) / 11); // MNIST strokes: 2-3 px of 28
    this.scale = Math.max(1, Math.round(280 / Math.max(spec.height, spec.width)));
    this.canvas.width = spec.width * this.scale;
    this.canvas.height = spec.height * this.scale;
    this.clear(false);
  }

  clear(notify = true) {
    this.file = null;
    this.empty = true;
    this.context.fillStyle = this.background;
    this.context.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (notify) this.onChange();
  }

  /** Show a file (when the browser can decode it) and send it as it is. */
  async load(file) {
    this.clear(false);
    this.file = file;
    this.empty = false;
    try {
      const bitmap = await createImageBitmap(file);
      const fit = Math.min(this.canvas.width / bitmap.width, this.canvas.height / bitmap.height);
      const [w, h] = [bitmap.width * fit, bitmap.height * fit];
      this.context.drawImage(bitmap, (this.canvas.width - w) / 2, (this.canvas.height - h) / 2, w, h);
    } catch {
      // Not an image this browser can show (TIFF, or not an image at all): the server decides.
    }
    this.onChange();
  }

  /** What to send: the uploaded file while untouched, else the canvas as a PNG. */
  async blob() {
    if (this.file) return this.file;
    return new Promise((resolve) => this.canvas.toBlob(resolve, "image/png"));
  }

  _point(event) {
    const box = this.canvas.getBoundingClientRect();
    return [
      ((event.clientX - box.left) / box.width) * this.canvas.width,
      ((event.clientY - box.top) / box.height) * this.canvas.height,
    ];
  }

  _start(event) {
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this._drawing = this._point(event);
    this._dot(this._drawing);
  }

  _move(event) {
    if (!this._drawing) return;
    const next = this._point(event);
    const c = this.context;
    c.strokeStyle = this.ink;
    c.lineWidth = this.width * this.scale;
    c.lineCap = "round";
    c.lineJoin = "round";
    c.beginPath();
    c.moveTo(...this._drawing);
    c.lineTo(...next);
    c.stroke();
    this._drawing = next;
  }

  _dot([x, y]) {
    this.context.fillStyle = this.ink;
    this.context.beginPath();
    this.context.arc(x, y, (this.width * this.scale) / 2, 0, 2 * Math.PI);
    this.context.fill();
  }

  _end(event) {
    if (!this._drawing) return;
    this._move(event);
    this._drawing = null;
    this.file = null; // the canvas, with the upload under the stroke, is the input now
    this.empty = false;
    this.onChange();
  }
}
