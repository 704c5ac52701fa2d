// The thermal viewer: the finding's °C grid (GET /api/v1/findings/{id}/temperatures,
// the API's own JSON numbers) drawn on a canvas in the hub's palette tables, with a
// °C span, zoom and pan, hotspot and component boxes, a scale bar, and the °C under
// the cursor read from the grid itself.
//
// Canvas pixel → grid pixel is exact: the grid is drawn with the transform
// canvas = offset + grid × scale (nearest neighbour), and the cursor's grid pixel is
// floor((canvas − offset) / scale). #cursor-temp shows that pixel's value with two
// decimals (the JSON grid's precision) and names it in data-x / data-y / data-celsius.
"use strict";

(function () {
  const $ = (sel) => document.querySelector(sel);
  const configEl = $("#viewer-config");
  if (!configEl) return;
  const config = JSON.parse(configEl.textContent);
  const canvas = $("#thermal-canvas");
  const bar = $("#scale-bar");
  const ctx = canvas.getContext("2d");
  const readout = $("#cursor-temp");
  const pos = $("#cursor-pos");
  const status = $("#viewer-status");
  const palette = $("#palette");
  const spanMin = $("#span-min");
  const spanMax = $("#span-max");
  const overlays = $("#show-overlays");
  const LEVEL_RGB = ["#ffffff", "#ffe600", "#ff8c00", "#ff2828", "#ff00ff"];

  let grid = null; // {width, height, values, min_c, max_c}
  let image = null; // an offscreen canvas, one pixel per grid pixel
  let view = { scale: 1, ox: 0, oy: 0, fit: 1 };
  let cursor = null; // [gx, gy] under the pointer (or moved by the keys)

  function span() {
    let lo = parseFloat(spanMin.value), hi = parseFloat(spanMax.value);
    if (!Number.isFinite(lo)) lo = grid.min_c;
    if (!Number.isFinite(hi)) hi = grid.max_c;
    if (hi <= lo) hi = lo + 0.1;
    return [lo, hi];
  }

  function colours() { return config.palettes[palette.value] || config.palettes.iron; }

  function paint() {
    const [lo, hi] = span();
    const table = colours();
    const img = new ImageData(grid.width, grid.height);
    const k = 255 / (hi - lo);
    for (let i = 0; i < grid.values.length; i++) {
      let t = Math.round((grid.values[i] - lo) * k);
      t = t < 0 ? 0 : t > 255 ? 255 : t;
      const c = table[t];
      img.data[i * 4] = c[0];
      img.data[i * 4 + 1] = c[1];
      img.data[i * 4 + 2] = c[2];
      img.data[i * 4 + 3] = 255;
    }
    image = document.createElement("canvas");
    image.width = grid.width;
    image.height = grid.height;
    image.getContext("2d").putImageData(img, 0, 0);
    drawScale(lo, hi, table);
    draw();
  }

  function layout() {
    // As wide as the card allows, no taller than most of the window (a tablet held
    // either way), the grid's aspect ratio kept. CSSOM sizes are allowed by the CSP.
    const avail = canvas.parentElement.getBoundingClientRect().width - 72;
    const maxHeight = Math.max(240, window.innerHeight * 0.72);
    const width = Math.max(160, Math.floor(Math.min(avail, 960, maxHeight * grid.width / grid.height)));
    const height = Math.round(width * grid.height / grid.width);
    canvas.width = width;
    canvas.height = height;
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    bar.width = 64;
    bar.height = height;
    const fit = width / grid.width;
    const keep = view.fit ? view.scale / view.fit : 1;
    view = { fit, scale: fit * keep, ox: keep === 1 ? 0 : view.ox, oy: keep === 1 ? 0 : view.oy };
    clampView();
  }

  function clampView() {
    const w = grid.width * view.scale, h = grid.height * view.scale;
    view.ox = Math.min(0, Math.max(canvas.width - w, view.ox));
    view.oy = Math.min(0, Math.max(canvas.height - h, view.oy));
  }

  function box(rect, colour, label) {
    const [x, y, w, h] = rect;
    const X = view.ox + x * view.scale, Y = view.oy + y * view.scale;
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#000";
    ctx.strokeRect(X - 1, Y - 1, w * view.scale + 2, h * view.scale + 2);
    ctx.strokeStyle = colour;
    ctx.strokeRect(X, Y, w * view.scale, h * view.scale);
    if (label) {
      ctx.font = "600 13px system-ui, sans-serif";
      const tw = ctx.measureText(label).width;
      const ly = Y > 18 ? Y - 18 : Y + h * view.scale + 2;
      ctx.fillStyle = "rgba(0,0,0,.75)";
      ctx.fillRect(X, ly, tw + 8, 17);
      ctx.fillStyle = colour;
      ctx.fillText(label, X + 4, ly + 13);
    }
  }

  function draw() {
    if (!image) return;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = false;
    ctx.setTransform(view.scale, 0, 0, view.scale, view.ox, view.oy);
    ctx.drawImage(image, 0, 0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    if (overlays.checked) {
      if (config.component) box(config.component.bbox, "#9ad0ff", config.component.label);
      const h = config.hotspot;
      const colour = LEVEL_RGB[Math.min(4, h.level)];
      box(h.bbox, colour, h.label);
      box([h.max_at[0], h.max_at[1], 1, 1], colour, "");
    }
    if (cursor) {
      ctx.strokeStyle = "#00e5ff";
      ctx.lineWidth = 1;
      ctx.strokeRect(view.ox + cursor[0] * view.scale + 0.5, view.oy + cursor[1] * view.scale + 0.5,
        Math.max(1, view.scale - 1), Math.max(1, view.scale - 1));
    }
  }

  function drawScale(lo, hi, table) {
    const b = bar.getContext("2d");
    b.fillStyle = "#181c22";
    b.fillRect(0, 0, bar.width, bar.height);
    const top = 10, bottom = bar.height - 10, h = bottom - top;
    for (let y = 0; y < h; y++) {
      const c = table[Math.round((1 - y / Math.max(1, h - 1)) * 255)];
      b.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
      b.fillRect(4, top + y, 18, 1);
    }
    b.fillStyle = "#e6e9ee";
    b.font = "12px system-ui, sans-serif";
    for (let i = 0; i <= 4; i++) {
      const v = hi - (hi - lo) * i / 4;
      const y = top + h * i / 4;
      b.fillRect(22, Math.round(y), 4, 1);
      b.fillText(v.toFixed(1), 28, Math.min(bottom, Math.max(top + 4, y + 4)));
    }
  }

  /** The grid pixel at a canvas pixel, or null outside the image. */
  function gridAt(cx, cy) {
    const gx = Math.floor((cx - view.ox) / view.scale);
    const gy = Math.floor((cy - view.oy) / view.scale);
    if (gx < 0 || gy < 0 || gx >= grid.width || gy >= grid.height) return null;
    return [gx, gy];
  }

  function canvasPoint(e) {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  }

  function show(p) {
    cursor = p;
    if (!p) {
      readout.textContent = "—";
      delete readout.dataset.x;
      delete readout.dataset.y;
      delete readout.dataset.celsius;
      pos.textContent = "";
    } else {
      const v = grid.values[p[1] * grid.width + p[0]];
      readout.textContent = `${v.toFixed(2)} °C`;
      readout.dataset.x = String(p[0]);
      readout.dataset.y = String(p[1]);
      readout.dataset.celsius = String(v);
      pos.textContent = `at (${p[0]}, ${p[1]})`;
    }
    draw();
  }

  function zoom(factor, cx, cy) {
    const s = Math.min(view.fit * 32, Math.max(view.fit, view.scale * factor));
    view.ox = cx - (cx - view.ox) * s / view.scale;
    view.oy = cy - (cy - view.oy) * s / view.scale;
    view.scale = s;
    clampView();
    draw();
  }

  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY, ox: view.ox, oy: view.oy };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("pointermove", (e) => {
    if (!grid) return;
    if (drag && e.buttons) {
      const r = canvas.getBoundingClientRect();
      view.ox = drag.ox + (e.clientX - drag.x) * canvas.width / r.width;
      view.oy = drag.oy + (e.clientY - drag.y) * canvas.height / r.height;
      clampView();
    }
    const [cx, cy] = canvasPoint(e);
    show(gridAt(cx, cy));
  });
  canvas.addEventListener("pointerleave", () => { if (grid && !drag) show(null); });
  canvas.addEventListener("wheel", (e) => {
    if (!grid) return;
    e.preventDefault();
    const [cx, cy] = canvasPoint(e);
    zoom(e.deltaY < 0 ? 1.25 : 0.8, cx, cy);
  }, { passive: false });
  canvas.addEventListener("keydown", (e) => {
    if (!grid) return;
    const p = cursor || [config.hotspot.max_at[0], config.hotspot.max_at[1]];
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (moves[e.key]) {
      const [dx, dy] = moves[e.key];
      show([Math.min(grid.width - 1, Math.max(0, p[0] + dx)), Math.min(grid.height - 1, Math.max(0, p[1] + dy))]);
    } else if (e.key === "+" || e.key === "=") zoom(1.25, canvas.width / 2, canvas.height / 2);
    else if (e.key === "-") zoom(0.8, canvas.width / 2, canvas.height / 2);
    else if (e.key === "0") { view.scale = view.fit; view.ox = view.oy = 0; draw(); }
    else return;
    e.preventDefault();
  });
  $("#zoom-in").addEventListener("click", () => zoom(1.5, canvas.width / 2, canvas.height / 2));
  $("#zoom-out").addEventListener("click", () => zoom(1 / 1.5, canvas.width / 2, canvas.height / 2));
  $("#zoom-reset").addEventListener("click", () => { view.scale = view.fit; view.ox = view.oy = 0; draw(); });
  $("#span-auto").addEventListener("click", () => {
    spanMin.value = grid.min_c.toFixed(1);
    spanMax.value = grid.max_c.toFixed(1);
    paint();
  });
  palette.addEventListener("change", paint);
  spanMin.addEventListener("change", paint);
  spanMax.addEventListener("change", paint);
  overlays.addEventListener("change", draw);
  window.addEventListener("resize", () => { if (grid) { layout(); draw(); } });

  // For tests and tools: where (in CSS pixels from the canvas' top-left) the centre
  // of grid pixel (gx, gy) is drawn now.
  window.chittiViewer = {
    cssPointOf(gx, gy) {
      const r = canvas.getBoundingClientRect();
      const cx = view.ox + (gx + 0.5) * view.scale, cy = view.oy + (gy + 0.5) * view.scale;
      return { x: cx * r.width / canvas.width, y: cy * r.height / canvas.height, width: r.width, height: r.height };
    },
    ready: false,
  };

  const fig = $("#visual-figure");
  if (fig && fig.dataset.src) {
    const img = $("#visual-image");
    img.addEventListener("load", () => { fig.hidden = false; });
    img.src = fig.dataset.src; // 404 (no visual image in the file): the figure stays hidden
  }

  fetch(config.grid_url, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(async (res) => {
      const body = await res.json();
      if (!res.ok) throw new Error(body.error ? body.error.message : `the hub answered ${res.status}`);
      return body;
    })
    .then((g) => {
      grid = g;
      spanMin.value = g.min_c.toFixed(1);
      spanMax.value = g.max_c.toFixed(1);
      layout();
      paint();
      status.textContent = `${g.width}×${g.height} px, ${g.min_c.toFixed(2)} to ${g.max_c.toFixed(2)} °C`;
      canvas.dataset.ready = "true";
      window.chittiViewer.ready = true;
    })
    .catch((e) => { status.textContent = `no thermogram: ${e.message}`; });
})();
