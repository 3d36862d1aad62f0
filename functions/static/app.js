// The drawing page: strokes or a dropped file -> POST the image -> top-3, preview, timings.
// No framework and nothing from a CDN, so the page works offline wherever the API runs.
//
// Where it posts comes from GET /api/demo: the anonymous demo route while the deployment has it
// on (in Azure every other POST needs a function key), else the keyed /api/classify, with the
// key the visitor types sent as x-functions-key.
"use strict";

const DEMO_URL = "/api/demo";
const KEYED_OPTIONS = "?top_k=3&include_processed=true"; // what the demo route answers anyway
const MODEL_URL = "/api/model";
const PEN_WIDTH = 18; // on the 280 px canvas: about what a felt pen is to a letter-sized box
const AUTO_DELAY_MS = 350; // wait this long after the pen lifts, in case a stroke follows

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const pen = canvas.getContext("2d");

const state = {
  upload: null, // a File to classify as it is; null means "classify the canvas"
  drawn: false,
  drawing: false,
  last: null,
  autoTimer: 0,
  sequence: 0, // answers to earlier requests than the latest are dropped
  route: null, // GET /api/demo's answer: {classify_url, needs_key}
};

function resetCanvas() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.lineWidth = PEN_WIDTH;
  pen.strokeStyle = "#111";
  pen.fillStyle = "#111";
}

function point(event) {
  const box = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * canvas.width) / box.width,
    y: ((event.clientY - box.top) * canvas.height) / box.height,
  };
}

function startStroke(event) {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  clearTimeout(state.autoTimer);
  state.upload = null;
  state.drawing = true;
  state.drawn = true;
  state.last = point(event);
  $("hint").hidden = true;
  pen.beginPath(); // a dot for a tap
  pen.arc(state.last.x, state.last.y, PEN_WIDTH / 2, 0, 2 * Math.PI);
  pen.fill();
}

function continueStroke(event) {
  if (!state.drawing) return;
  // Coalesced events keep fast strokes smooth; some browsers give none for synthetic moves.
  const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const each of coalesced.length ? coalesced : [event]) {
    const next = point(each);
    pen.beginPath();
    pen.moveTo(state.last.x, state.last.y);
    pen.lineTo(next.x, next.y);
    pen.stroke();
    state.last = next;
  }
}

function endStroke() {
  if (!state.drawing) return;
  state.drawing = false;
  if ($("auto").checked) {
    state.autoTimer = setTimeout(classify, AUTO_DELAY_MS);
  }
}

function sentence(text) {
  const capitalised = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(capitalised) ? capitalised : `${capitalised}.`;
}

function showError(message) {
  const box = $("error");
  box.textContent = message ? sentence(message) : "";
  box.hidden = !message;
  if (message) $("placeholder").hidden = true;
}

function clearResults() {
  $("results").replaceChildren();
  $("timings").replaceChildren();
  $("preview-figure").hidden = true;
  $("placeholder").hidden = false;
  showError("");
}

function clearAll() {
  clearTimeout(state.autoTimer);
  state.sequence += 1;
  state.upload = null;
  state.drawn = false;
  $("file").value = "";
  $("hint").hidden = false;
  resetCanvas();
  clearResults();
}

function kindOf(label) {
  if (/^[0-9]$/.test(label)) return "digit";
  if (label.toUpperCase() === label) return "upper case";
  return "lower case";
}

function facts(list, pairs) {
  list.replaceChildren(
    ...pairs.map(([term, value]) => {
      const group = document.createElement("div");
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = term;
      dd.textContent = value;
      group.append(dt, dd);
      return group;
    }),
  );
}

function showResult(result, timings, roundTripMs) {
  const rows = result.top_k.map(({ label, probability }) => {
    const row = document.createElement("li");
    row.className = "row";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = kindOf(label);
    name.append(kind);
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    bar.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(probability * 100).toFixed(1)}%`;
    row.append(name, bar, pct);
    requestAnimationFrame(() => {
      fill.style.width = `${Math.max(probability * 100, 0.5)}%`;
    });
    return row;
  });
  $("results").replaceChildren(...rows);
  $("placeholder").hidden = true;
  if (result.processed) {
    $("preview").src = result.processed;
    $("preview-figure").hidden = false;
  }
  facts($("timings"), [
    ["Read request", `${timings.decode.toFixed(1)} ms`],
    ["Preprocess", `${timings.preprocess.toFixed(1)} ms`],
    ["Inference", `${timings.inference.toFixed(1)} ms`],
    ["Server total", `${timings.total.toFixed(1)} ms`],
    ["Round trip", `${roundTripMs.toFixed(0)} ms`],
  ]);
}

// The canvas as an 8-bit grey PNG, which canvas.toBlob cannot make: the server preprocesses it
// in 1.27 ms against 2.09 for toBlob's RGBA PNG (README, "Preprocessing"), to the same tile: the
// canvas is opaque and its ink grey. Browsers without CompressionStream send toBlob's PNG.
const PNG_SIGNATURE = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const chunk = new Uint8Array(12 + data.length); // length, type, data, CRC of type and data
  const view = new DataView(chunk.buffer);
  view.setUint32(0, data.length);
  chunk.set(new TextEncoder().encode(type), 4);
  chunk.set(data, 8);
  view.setUint32(8 + data.length, crc32(chunk.subarray(4, 8 + data.length)));
  return chunk;
}

async function greyPng() {
  const { width, height } = canvas;
  const rgba = pen.getImageData(0, 0, width, height).data;
  const rows = new Uint8Array((width + 1) * height); // each row: filter type 0, then its pixels
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = 4 * (y * width + x); // luminance as the server computes it (ITU-R 601)
      rows[y * (width + 1) + 1 + x] = Math.round(
        (299 * rgba[i] + 587 * rgba[i + 1] + 114 * rgba[i + 2]) / 1000,
      );
    }
  }
  const zlib = new Blob([rows]).stream().pipeThrough(new CompressionStream("deflate"));
  const header = new Uint8Array(13); // bit depth 8, colour type 0 (grey), no interlace
  new DataView(header.buffer).setUint32(0, width);
  new DataView(header.buffer).setUint32(4, height);
  header[8] = 8;
  const data = new Uint8Array(await new Response(zlib).arrayBuffer());
  return new Blob(
    [PNG_SIGNATURE, pngChunk("IHDR", header), pngChunk("IDAT", data), pngChunk("IEND", new Uint8Array())],
    { type: "image/png" },
  );
}

function canvasBlob() {
  if (typeof CompressionStream === "function") return greyPng();
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

async function findRoute() {
  try {
    const response = await fetch(DEMO_URL);
    if (response.ok) return await response.json();
  } catch {
    // An API without GET /api/demo: the keyed route, which needs no key outside Azure.
  }
  return { enabled: false, classify_url: "/api/classify", needs_key: false };
}

async function useRoute() {
  state.route = await findRoute();
  $("key-box").hidden = !state.route.needs_key;
  $("route").textContent = `POST ${state.route.classify_url}`;
}

// One image as the raw body, for either route: the canvas as PNG, an upload as it is (typed
// application/octet-stream, so that the server, not the browser's guess, says what it is).
function request(image, isUpload) {
  const headers = { "Content-Type": isUpload ? "application/octet-stream" : "image/png" };
  if (state.route.needs_key) headers["x-functions-key"] = $("key").value.trim();
  const url = state.route.classify_url + (state.route.enabled ? "" : KEYED_OPTIONS);
  return fetch(url, { method: "POST", headers, body: image });
}

async function classify() {
  clearTimeout(state.autoTimer);
  if (!state.upload && !state.drawn) {
    showError("Draw a character first, or upload an image of one.");
    return;
  }
  if (!state.route) await useRoute();
  if (state.route.needs_key && !$("key").value.trim()) {
    showError("This deployment has no public demo: enter a function key to classify.");
    return;
  }
  const sequence = ++state.sequence;
  const image = state.upload || (await canvasBlob());
  $("classify").disabled = true;
  const started = performance.now();
  try {
    const response = await request(image, Boolean(state.upload));
    const answer = await response.json().catch(() => null);
    if (sequence !== state.sequence) return;
    if (response.status === 401 || response.status === 403) {
      clearResults();
      showError("The function key was refused: check it and try again.");
      return;
    }
    const result = answer && answer.results ? answer.results[0] : null;
    const failure = (result && result.error) || (answer && answer.error);
    if (!response.ok || failure) {
      clearResults();
      showError(failure ? failure.message : `The server answered ${response.status}.`);
      return;
    }
    showError("");
    showResult(result, answer.timings_ms, performance.now() - started);
  } catch (error) {
    if (sequence === state.sequence) {
      clearResults();
      showError(`Could not reach the server: ${error.message}`);
    }
  } finally {
    if (sequence === state.sequence) $("classify").disabled = false;
  }
}

async function useFile(file) {
  if (!file) return;
  clearAll();
  state.upload = file;
  $("hint").hidden = true;
  try {
    // Show the upload where the drawing goes, scaled to fit; the file itself is what is sent.
    const image = await createImageBitmap(file);
    const scale = Math.min(canvas.width / image.width, canvas.height / image.height);
    const width = image.width * scale;
    const height = image.height * scale;
    pen.drawImage(image, (canvas.width - width) / 2, (canvas.height - height) / 2, width, height);
  } catch {
    // Not an image the browser can show: the server says what is wrong with it.
  }
  classify();
}

async function loadModelInfo() {
  try {
    const response = await fetch(MODEL_URL);
    const model = await response.json();
    if (!response.ok) throw new Error(model.error ? model.error.message : response.statusText);
    const test = model.metrics && model.metrics.test;
    facts($("model-info"), [
      ["Name", model.name],
      ["Version", model.version],
      ["Architecture", model.architecture],
      ["Parameters", model.parameters.toLocaleString("en")],
      ["Classes", String(model.labels.length)],
      ["Test top-1", test && test.top1 !== undefined ? `${(test.top1 * 100).toFixed(2)}%` : "n/a"],
    ]);
  } catch (error) {
    facts($("model-info"), [["Status", `not available: ${error.message}`]]);
  }
}

function setUp() {
  resetCanvas();
  canvas.addEventListener("pointerdown", startStroke);
  canvas.addEventListener("pointermove", continueStroke);
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  $("classify").addEventListener("click", classify);
  $("clear").addEventListener("click", clearAll);
  $("file").addEventListener("change", (event) => useFile(event.target.files[0]));

  const zone = $("dropzone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    useFile(event.dataTransfer.files[0]);
  });
  loadModelInfo();
  useRoute();
}

setUp();
