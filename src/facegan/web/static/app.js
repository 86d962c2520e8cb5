// facegan serve: the page. Plain JavaScript, no libraries, no network beyond this server.
// A face is its seed: every image URL names the seed (and the condition, morph or edits),
// the server draws it; the same seed gives the same face as `facegan sample --seed`.
// Or a photo brought to the page: /api/project answers its latent, which the image URLs then
// carry as z= (z2= for a morph's other end) where a seed's face carries seed=.
"use strict";

const $ = (id) => document.getElementById(id);
const S = {
  info: null,        // /api/info
  seeds: [],         // the grid's seeds
  selected: null,    // face shown large: a seed (number) or a photo (object, see projectPhoto)
  a: null, b: null,  // morph ends, faces as `selected`
  photos: [],        // projected photos, in this page only
  cond: { cls: "", attrs: {} },
  edits: {},         // direction name -> strength
  interp: "slerp",
  truncation: "",    // the truncation trick's T as typed; "" = off
  runFiles: [],
};

function status(message, isError = false) {
  const el = $("status");
  el.textContent = message || "";
  el.classList.toggle("error", !!isError);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

// ---- URLs -------------------------------------------------------------------------------
function condParams() {
  if (!S.info || !S.info.labels) return {};
  if (S.info.labels.kind === "class") return S.cond.cls ? { class: S.cond.cls } : {};
  const parts = S.info.labels.names.filter((n) => S.cond.attrs[n] !== undefined && S.cond.attrs[n] !== "")
    .map((n) => `${n}=${S.cond.attrs[n]}`);
  return parts.length ? { attr: parts.join(",") } : {};
}

function editParam() {
  const parts = Object.entries(S.edits).filter(([, v]) => v !== 0).map(([n, v]) => `${n}:${v}`);
  return parts.length ? parts.join(",") : undefined;
}

function apiURL(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  q.set("v", S.info ? S.info.version : 0); // a reloaded model gets new URLs (browser cache)
  return `${path}?${q}`;
}

// Truncation changes the latents only (labels as chosen); sent with every image and strip.
const truncParams = () => (S.truncation ? { truncation: S.truncation } : {});

// A face's URL parameters: seed=S, or z=LATENT for a photo (truncation only concerns seeds).
const isPhoto = (face) => face !== null && typeof face === "object";
const faceParams = (face) => (isPhoto(face) ? { z: face.z } : { seed: face });
const otherParams = (face) => (isPhoto(face) ? { z2: face.z } : { seed2: face });
const faceKind = (face) => (isPhoto(face) ? "your" : "seed");
const faceName = (face) => (isPhoto(face) ? face.name : String(face));

const faceURL = (face, extra = {}) => apiURL("/api/image.png", { ...faceParams(face), ...condParams(), ...truncParams(), ...extra });

// ---- a photo's own detail ------------------------------------------------------------------
// The model cannot draw a real photo exactly. With "keep my photo's own detail" on, each image
// of a photo that the server draws (its edits, the morph's frames) gets back what the projection
// missed, crop - projection, so strength 0 is the photo itself (as `facegan edit --latent` does).
// Done here, in the page: the server keeps nothing of the photo.
const keepDetail = () => $("keep-detail").checked;

function dataURLBlob(url) {
  const [head, b64] = url.split(",");
  const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  return new Blob([bytes], { type: head.slice(5).split(";")[0] });
}

async function imagePixels(source) { // a Blob or a data: URL -> ImageData, exact pixels
  const blob = source instanceof Blob ? source : dataURLBlob(source);
  const bmp = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const c = document.createElement("canvas");
  c.width = bmp.width; c.height = bmp.height;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bmp, 0, 0);
  bmp.close();
  return ctx.getImageData(0, 0, c.width, c.height);
}

async function photoDetail(face) { // crop - projection: { d: Int16Array (R*R*4, alpha 0), size: R }
  const [crop, proj] = await Promise.all([imagePixels(face.crop), imagePixels(face.projection)]);
  const d = new Int16Array(crop.data.length);
  for (let i = 0; i < d.length; i++) d[i] = i % 4 === 3 ? 0 : crop.data[i] - proj.data[i];
  return { d, size: crop.width };
}

// [[face, weight], ...] -> [[detail, weight], ...] of the photos among them, when kept.
function detailsOf(pairs) {
  if (!keepDetail()) return [];
  return pairs.filter(([f, w]) => isPhoto(f) && f.detail && w > 0).map(([f, w]) => [f.detail, w]);
}

// One frame of an image: its top-left corner and the details to add there.
const wholeImage = (details) => (details.length ? [{ x: 0, y: 0, details }] : null);

function canvasBlob(canvas) {
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

// The server's PNG with each frame's details added (rounded, clipped to 0..255 as
// facegan.sampling.keep_detail does): a PNG blob.
async function withDetail(blob, frames) {
  const img = await imagePixels(blob);
  const px = img.data, W = img.width;
  for (const { x, y, details } of frames) {
    const R = details[0][0].size;
    for (let r = 0; r < R; r++) {
      for (let col = 0; col < R; col++) {
        const o = ((y + r) * W + x + col) * 4, s = (r * R + col) * 4;
        for (let ch = 0; ch < 3; ch++) {
          let v = px[o + ch];
          for (const [det, w] of details) v += w * det.d[s + ch];
          px[o + ch] = v; // a Uint8ClampedArray rounds and clips
        }
      }
    }
  }
  const c = document.createElement("canvas");
  c.width = W; c.height = img.height;
  c.getContext("2d").putImageData(img, 0, 0);
  return canvasBlob(c);
}

// A PNG blob scaled to size x size (a photo's large download, drawn here from its kept detail).
async function scaledBlob(blob, size) {
  const bmp = await createImageBitmap(blob);
  const c = document.createElement("canvas");
  c.width = size; c.height = size;
  const ctx = c.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bmp, 0, 0, size, size);
  bmp.close();
  return canvasBlob(c);
}

// A download link to a blob made here, named as the server names its downloads.
function linkBlob(a, blob, name) {
  if (a.dataset.blob) URL.revokeObjectURL(a.dataset.blob);
  a.dataset.blob = URL.createObjectURL(blob);
  a.href = a.dataset.blob;
  a.download = name;
}

function linkServer(a, href) {
  if (a.dataset.blob) { URL.revokeObjectURL(a.dataset.blob); delete a.dataset.blob; }
  a.href = href;
  a.download = "";
}

// ---- images -----------------------------------------------------------------------------
// fetch() rather than <img src>: a refusal (503 busy) is retried, a 4xx message is shown.
// frames: a photo's detail to add (withDetail), or null.
async function loadImage(img, src, tries = 3, frames = null) {
  img.dataset.want = src;
  for (let i = 0; i < tries; i++) {
    let r;
    try { r = await fetch(src); } catch (e) { status(`server unreachable: ${e.message}`, true); return false; }
    if (img.dataset.want !== src) return false; // a newer image was asked for meanwhile
    if (r.ok) {
      let blob = await r.blob();
      if (frames) blob = await withDetail(blob, frames);
      if (img.dataset.want !== src) return false;
      img.blob = blob;
      const old = img.dataset.blob;
      img.dataset.blob = URL.createObjectURL(blob);
      img.src = img.dataset.blob;
      img.dataset.drawn = frames ? "with-detail" : "as-drawn"; // what is shown (for tests and styles)
      if (old) URL.revokeObjectURL(old);
      img.dataset.command = r.headers.get("X-Facegan-Command") || "";
      return true;
    }
    const body = await r.json().catch(() => ({}));
    if (r.status === 503 && i < tries - 1) { status(body.error || "server busy; retrying"); await sleep(400 * 2 ** i); continue; }
    status(body.error || `HTTP ${r.status}`, true);
    return false;
  }
  return false;
}

// Live images (sliders): one request in flight, and only the latest position is drawn next.
function liveLoader(img, onDone) {
  let busy = false, next = null;
  return (src, frames = null) => {
    next = { src, frames };
    if (busy) return;
    busy = true;
    (async () => {
      while (next) {
        const n = next; next = null;
        const ok = await loadImage(img, n.src, 2, n.frames);
        if (onDone) onDone(ok);
      }
      busy = false;
    })();
  };
}

// ---- header, conditions, directions -------------------------------------------------------
function showModel() {
  const i = S.info;
  const labels = i.labels ? `, ${i.labels.kind === "class" ? "classes" : "attributes"}: ${i.labels.names.join(", ")}` : "";
  $("model-line").textContent = `${i.run} · step ${i.step} · ${i.resolution}px · ${i.ema ? "EMA" : "raw"} generator on ${i.device}${labels}`;
}

function buildCondition() {
  const box = $("condition");
  box.textContent = "";
  const labels = S.info.labels;
  if (!labels) { box.hidden = true; return; }
  box.hidden = false;
  const make = (text, options, onChange, name) => {
    const label = document.createElement("label");
    label.append(text + " ");
    const sel = document.createElement("select");
    if (name) sel.dataset.attr = name;
    for (const [value, shown] of options) {
      const o = document.createElement("option"); o.value = value; o.textContent = shown; sel.append(o);
    }
    sel.addEventListener("change", () => { onChange(sel.value); redrawAll(); });
    label.append(sel);
    box.append(label);
  };
  if (labels.kind === "class") {
    make("class", [["", "as drawn (data frequencies)"], ...labels.names.map((n) => [n, n])],
         (v) => { S.cond.cls = v; }, null);
    box.querySelector("select").id = "class-select";
  } else {
    for (const n of labels.names) {
      make(n, [["", "drawn"], ["1", "yes"], ["0", "no"]], (v) => { S.cond.attrs[n] = v; }, n);
    }
  }
}

function buildDirections() {
  const dirs = S.info.directions || [];
  $("directions").hidden = dirs.length === 0;
  const box = $("sliders");
  box.textContent = "";
  const max = S.info.limits.strength_max;
  for (const d of dirs) {
    const row = document.createElement("div"); row.className = "slider";
    const name = document.createElement("span");
    name.textContent = d.name;
    name.title = `${d.method}${d.accuracy != null ? `, accuracy ${(100 * d.accuracy).toFixed(0)}%` : ""}`;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: -max, max, step: 0.1, value: 0 });
    input.dataset.direction = d.name;
    input.setAttribute("aria-label", `edit ${d.name}`);
    const value = document.createElement("span"); value.textContent = "0.0";
    input.addEventListener("input", () => {
      S.edits[d.name] = Number(input.value);
      value.textContent = Number(input.value).toFixed(1);
      updateBig(true);
    });
    row.append(name, input, value);
    box.append(row);
  }
}

function resetEdits() {
  S.edits = {};
  for (const input of $("sliders").querySelectorAll("input")) {
    input.value = 0; input.nextElementSibling.textContent = "0.0";
  }
}

// ---- grid and viewer ----------------------------------------------------------------------
async function newFaces() {
  try {
    const n = Number($("count").value);
    S.seeds = (await getJSON(`/api/seeds?n=${n}`)).seeds;
  } catch (e) { status(e.message, true); return; }
  S.a = S.seeds[0]; S.b = S.seeds[1 % S.seeds.length];
  renderGrid();
  select(S.seeds[0]);
  updateMorph();
}

function renderGrid() {
  const grid = $("grid");
  grid.textContent = "";
  for (const seed of S.seeds) {
    const fig = document.createElement("figure");
    fig.className = "face"; fig.dataset.seed = seed; fig.tabIndex = 0;
    const img = document.createElement("img");
    img.alt = `face of seed ${seed}`;
    const cap = document.createElement("figcaption"); cap.textContent = `seed ${seed}`;
    fig.append(img, cap);
    fig.addEventListener("click", () => select(seed));
    fig.addEventListener("keydown", (e) => { if (e.key === "Enter") select(seed); });
    grid.append(fig);
    loadImage(img, faceURL(seed)).then((ok) => fig.classList.toggle("failed", !ok));
  }
  markCards();
}

function markCards() {
  const cards = [...$("grid").children].map((fig) => [fig, Number(fig.dataset.seed)])
    .concat([...$("photo-list").children].map((fig) => [fig, S.photos[Number(fig.dataset.photo)]]));
  for (const [fig, face] of cards) {
    fig.classList.toggle("selected", face === S.selected);
    fig.classList.toggle("is-a", face === S.a);
    fig.classList.toggle("is-b", face === S.b);
  }
}

function select(face) {
  S.selected = face;
  resetEdits();
  $("viewer").hidden = false;
  markCards();
  updateBig(false);
}

let bigLive = null;
const largeSize = () => Math.max(Math.min(S.info.limits.max_size, 512), S.info.resolution);

// The downloads of the open face: the server's PNGs, or for a photo with its detail kept the
// image drawn here (and that image scaled up).
async function linkBigDownloads(ok) {
  const big = $("big"), face = S.selected;
  if (!ok || !isPhoto(face) || !big.dataset.detail) return;
  const edit = editParam(), want = big.dataset.want;
  let name = "facegan-photo";
  for (const [n, v] of Object.entries(S.edits)) {
    if (v !== 0) name += `-${n.replace(/[^A-Za-z0-9]/g, "").slice(0, 20)}${v >= 0 ? "+" : ""}${v.toFixed(1)}`;
  }
  const large = await scaledBlob(big.blob, largeSize());
  if (big.dataset.want !== want || edit !== editParam()) return; // a newer image meanwhile
  linkBlob($("download"), big.blob, `${name}.png`);
  linkBlob($("download-large"), large, `${name}-${largeSize()}.png`);
}

function updateBig(live) {
  if (S.selected === null) return;
  const face = S.selected, edit = editParam();
  const src = faceURL(face, { edit });
  const frames = wholeImage(detailsOf([[face, 1]]));
  $("big-kind").textContent = faceKind(face);
  $("big-seed").textContent = faceName(face);
  $("big-edit").textContent = edit ? `edited: ${edit.replaceAll(":", " ").replaceAll(",", ", ")}` : "";
  $("big").dataset.detail = frames ? "1" : "";
  if (!frames) {
    linkServer($("download"), faceURL(face, { edit, download: 1 }));
    linkServer($("download-large"), faceURL(face, { edit, download: 1, size: largeSize() }));
  }
  $("download-large").textContent = `PNG ${largeSize()}×${largeSize()}`;
  if (live) bigLive(src, frames);
  else loadImage($("big"), src, 3, frames).then((ok) => { showCommand(); linkBigDownloads(ok); });
}

function showCommand() {
  if (isPhoto(S.selected)) {
    const p = S.selected;
    const how = $("big").dataset.detail ? "with its own detail kept" : `the projection alone, PSNR ${fmtDB(p.psnr)}`;
    $("command").textContent = `${p.file || "your photo"} (${how}): ` +
      "its latent lives in this page only; the server kept nothing";
    return;
  }
  let cmd = $("big").dataset.command;
  if (cmd && S.truncation && !cmd.includes("--truncation")) cmd += ` --truncation ${S.truncation}`;
  $("command").textContent = cmd
    ? `${cmd}${editParam() ? "   # the unedited face" : ""}`
    : "";
}

// ---- morph ---------------------------------------------------------------------------------
let morphLive = null;
function morphParams() {
  return { ...otherParams(S.b), t: Number($("morph-t").value).toFixed(2), interp: S.interp };
}

// A morph keeps each photo's detail fading out towards the other end, (1 - t)^2 of A's and
// t^2 of B's (as facegan morph --from --to).
const morphDetails = (t) => detailsOf([[S.a, (1 - t) ** 2], [S.b, t ** 2]]);

function updateMorphFrame() {
  if (S.a === null) return;
  const t = Number($("morph-t").value);
  $("morph-t-value").textContent = t.toFixed(2);
  const frames = wholeImage(morphDetails(t));
  $("morph-img").dataset.detail = frames ? "1" : "";
  morphLive(faceURL(S.a, morphParams()), frames);
  if (!frames) linkServer($("morph-download"), faceURL(S.a, { ...morphParams(), download: 1 }));
}

async function linkMorphDownload(ok) {
  const img = $("morph-img");
  if (!ok || !img.dataset.detail) return;
  const end = (f) => (isPhoto(f) ? "photo" : String(f));
  linkBlob($("morph-download"), img.blob, `facegan-${end(S.a)}-to-${end(S.b)}-t${Number($("morph-t").value).toFixed(2)}.png`);
}

function updateMorph() {
  if (S.a === null || S.b === null) return;
  $("kind-a").textContent = faceKind(S.a); $("seed-a").textContent = faceName(S.a);
  $("kind-b").textContent = faceKind(S.b); $("seed-b").textContent = faceName(S.b);
  loadImage($("morph-a"), faceURL(S.a), 3, wholeImage(detailsOf([[S.a, 1]])));
  loadImage($("morph-b"), faceURL(S.b), 3, wholeImage(detailsOf([[S.b, 1]])));
  updateMorphFrame();
  const steps = Math.min(10, S.info.limits.strip_steps[1]), R = S.info.resolution;
  // The strip is the server's grid: frames side by side, 2 px apart and around.
  const frames = [];
  for (let i = 0; i < steps; i++) {
    const details = morphDetails(i / (steps - 1));
    if (details.length) frames.push({ x: 2 + i * (R + 2), y: 2, details });
  }
  loadImage($("strip"), apiURL("/api/strip.png", { ...faceParams(S.a), ...otherParams(S.b), steps, interp: S.interp, ...condParams(), ...truncParams() }),
            3, frames.length ? frames : null);
  markCards();
}

function redrawAll() {
  renderGrid();
  renderPhotos();
  updateBig(false);
  updateMorph();
}

// ---- bring your photo ----------------------------------------------------------------------
// The file goes as the raw body of a POST (the server reads it in memory; no form, no disk).
// While the projector is being prepared, or the server is busy, the answer is a 503 with a
// Retry-After: the page says so and sends the photo again then.
const fmtDB = (x) => (typeof x === "number" ? `${x.toFixed(2)} dB` : "∞ dB");

function photoProgress(message) { $("photo-progress").textContent = message || ""; }

async function projectPhoto(file) {
  if (!file) return;
  const limit = S.info.limits.upload_bytes;
  if (file.size > limit) {
    status(`that photo is ${(file.size / 2 ** 20).toFixed(1)} MB, more than the ${limit / 2 ** 20} MB the server takes; pick a smaller one`, true);
    return;
  }
  const url = apiURL("/api/project", { align: $("align").checked ? 1 : 0, ...condParams() });
  const zone = $("drop-zone");
  zone.classList.add("busy");
  $("photo-input").disabled = true;
  status("");
  const t0 = performance.now();
  const about = S.info.projection ? S.info.projection.seconds : null;
  let waiting = null; // the server's last "preparing" / "busy" message, while waiting to retry
  const tick = () => {
    const s = ((performance.now() - t0) / 1000).toFixed(0);
    photoProgress(waiting || `projecting ${file.name || "your photo"}… ${s} s` +
      (about ? ` (a photo takes about ${Math.max(1, Math.round(about))} s)` : ""));
  };
  tick();
  const ticker = setInterval(tick, 500);
  try {
    for (let attempt = 0; attempt < 500; attempt++) {
      waiting = null;
      let r;
      try { r = await fetch(url, { method: "POST", body: file, cache: "no-store" }); }
      catch (e) { throw new Error(`server unreachable: ${e.message}`); }
      const body = await r.json().catch(() => ({}));
      if (r.ok) { await showProjection(body, file.name); return; }
      if (r.status !== 503) throw new Error(body.error || `HTTP ${r.status}`);
      waiting = body.error || "server busy";
      tick();
      await sleep(1000 * Math.max(1, Number(r.headers.get("Retry-After")) || 2));
    }
    throw new Error("the server stayed busy; try again later");
  } catch (e) {
    photoProgress("");
    status(e.message, true);
  } finally {
    clearInterval(ticker);
    zone.classList.remove("busy");
    $("photo-input").disabled = false;
    $("photo-input").value = "";
  }
}

async function showProjection(ans, fileName) {
  const face = { z: ans.latent, name: `photo ${S.photos.length + 1}`, file: fileName, psnr: ans.psnr,
                 ssim: ans.ssim, crop: ans.crop, projection: ans.projection, aligned: ans.aligned };
  face.detail = await photoDetail(face);
  S.photos.push(face);
  $("photo-crop").src = ans.crop;
  $("photo-proj").src = ans.projection;
  $("photo-crop-caption").textContent = ans.aligned ? "your photo, aligned" : "your photo, as cropped";
  $("photo-psnr").textContent = `PSNR ${fmtDB(ans.psnr)}, SSIM ${ans.ssim.toFixed(3)}`;
  $("photo-notes").textContent = (ans.notes || []).join(" ");
  $("photo-result").hidden = false;
  photoProgress(`${face.name}: projected in ${ans.seconds} s; it is now the open face`);
  // The first photo is morphed to a random face; a second one becomes the other end.
  if (isPhoto(S.a)) S.b = face; else S.a = face;
  renderPhotos();
  select(face);
  updateMorph();
}

function renderPhotos() {
  const list = $("photo-list");
  list.textContent = "";
  S.photos.forEach((face, i) => {
    const fig = document.createElement("figure");
    fig.className = "face"; fig.dataset.photo = i; fig.tabIndex = 0;
    const img = document.createElement("img");
    img.alt = `projection of ${face.name}`;
    img.src = face.projection; // as projected; the open face follows the condition chosen
    const cap = document.createElement("figcaption"); cap.textContent = face.name;
    fig.append(img, cap);
    fig.addEventListener("click", () => select(face));
    fig.addEventListener("keydown", (e) => { if (e.key === "Enter") select(face); });
    list.append(fig);
  });
  markCards();
}

function setUpPhotos() {
  const p = S.info.projection;
  $("upload-mb").textContent = String(Math.round(S.info.limits.upload_bytes / 2 ** 20));
  if (!p || !p.align_available) {
    $("align").checked = false;
    $("align").disabled = true;
    $("align-label").title = "face alignment needs facenet-pytorch on the server (pip install 'facegan[align]')";
  }
  $("photo-input").addEventListener("change", () => projectPhoto($("photo-input").files[0]));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (!zone.classList.contains("busy")) projectPhoto(e.dataTransfer.files[0]);
  });
}

// ---- the run: sample grids, curves, evaluations ------------------------------------------
let followLatest = true;
async function refreshRun() {
  let r;
  try { r = await getJSON("/api/run"); } catch (e) { return; }
  if (!r.run_dir) { $("no-run").hidden = false; return; }
  const samples = r.files.filter((f) => f.kind === "sample").sort((x, y) => x.step - y.step);
  S.runFiles = samples;
  const slider = $("samples-step");
  $("samples-figure").hidden = samples.length === 0;
  if (samples.length) {
    slider.max = samples.length - 1;
    if (followLatest) slider.value = samples.length - 1;
    showSampleGrid();
  }
  const loss = r.files.find((f) => f.id === "loss.png");
  $("loss-figure").hidden = !loss;
  if (loss) {
    const src = `/api/run/files/${encodeURIComponent(loss.id)}?v=${loss.version}`;
    if ($("loss-img").getAttribute("src") !== src) $("loss-img").src = src;
  }
  const m = r.metrics || {};
  const last = m.last;
  $("train-line").textContent = last
    ? `· step ${last.step}: d_loss ${fmt(last.d_loss)}, g_loss ${fmt(last.g_loss)}` +
      (last.steps_per_s ? `, ${fmt(last.steps_per_s)} steps/s` : "")
    : "";
  const evals = m.evals || [];
  $("evals").hidden = evals.length === 0;
  const body = $("evals").querySelector("tbody");
  body.textContent = "";
  for (const e of evals) {
    const tr = document.createElement("tr");
    for (const v of [e.step, fmt(e.fid, 1), e.kid_mean != null ? `${fmt(e.kid_mean, 3)} ± ${fmt(e.kid_std, 3)}` : "", e.n]) {
      const td = document.createElement("td"); td.textContent = v ?? ""; tr.append(td);
    }
    body.append(tr);
  }
  if (S.info && r.model_version !== S.info.version) {
    // The run wrote a newer checkpoint and the server loaded it: redraw the same seeds.
    S.info = await getJSON("/api/info");
    showModel();
    buildDirections(); // `facegan directions` may have written RUN/directions.json meanwhile
    redrawAll();
    status(`model reloaded: step ${S.info.step}`);
  }
}

function fmt(x, digits = 3) {
  return typeof x === "number" ? x.toFixed(digits) : "";
}

function showSampleGrid() {
  const f = S.runFiles[Number($("samples-step").value)];
  if (!f) return;
  const src = `/api/run/files/${encodeURIComponent(f.id)}?v=${f.version}`;
  if ($("samples-img").getAttribute("src") !== src) $("samples-img").src = src;
  $("samples-caption").textContent = `step ${f.step} (${Number($("samples-step").value) + 1} of ${S.runFiles.length})`;
}

// ---- start -----------------------------------------------------------------------------------
async function start() {
  try { S.info = await getJSON("/api/info"); } catch (e) { status(`cannot reach the server: ${e.message}`, true); return; }
  showModel();
  buildCondition();
  buildDirections();
  setUpPhotos();
  bigLive = liveLoader($("big"), linkBigDownloads);
  morphLive = liveLoader($("morph-img"), linkMorphDownload);
  $("keep-detail").addEventListener("change", redrawAll);
  $("new-faces").addEventListener("click", newFaces);
  $("count").addEventListener("change", newFaces);
  $("truncation").addEventListener("change", () => {
    const input = $("truncation");
    const t = input.value.trim(), x = Number(t);
    if (t !== "" && !(x >= Number(input.min) && x <= Number(input.max))) {
      status(`truncation must be a number from ${input.min} to ${input.max}; empty for off`, true);
      return;
    }
    S.truncation = t === "" ? "" : String(x);
    status("");
    redrawAll();
  });
  $("reset-edits").addEventListener("click", () => { resetEdits(); updateBig(false); });
  $("set-a").addEventListener("click", () => { S.a = S.selected; updateMorph(); });
  $("set-b").addEventListener("click", () => { S.b = S.selected; updateMorph(); });
  $("morph-t").addEventListener("input", updateMorphFrame);
  for (const radio of document.querySelectorAll("input[name=interp]")) {
    radio.addEventListener("change", () => { S.interp = radio.value; updateMorph(); });
  }
  $("samples-step").addEventListener("input", () => {
    followLatest = Number($("samples-step").value) === S.runFiles.length - 1;
    showSampleGrid();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "n" && !(e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement)) newFaces();
  });
  await newFaces();
  refreshRun();
  setInterval(refreshRun, 10000); // a run still training writes new grids and curves
}

start();
