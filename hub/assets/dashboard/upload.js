// Upload page: drag-and-drop (or choose) many FLIR files; each is sent on its own to
// POST /api/v1/uploads (two at a time) so it gets its own progress bar and its own
// result: its findings, or the clear reason the hub rejected it.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const form = $("#upload-form");
  if (!form) return;
  const zone = $("#drop-zone");
  const input = $("#upload-files");
  const list = $("#upload-list");
  const summary = $("#upload-summary");
  const site = $("#upload-site");
  const asset = $("#upload-asset");
  const PARALLEL = 2;
  const queue = [];
  let running = 0, done = 0, total = 0, findings = 0, rejected = 0;

  function filterAssets() {
    for (const o of asset.options) {
      if (o.value) o.hidden = o.dataset.site !== site.value;
    }
    if (asset.selectedOptions[0] && asset.selectedOptions[0].hidden) asset.value = "";
  }
  site.addEventListener("change", filterAssets);
  filterAssets();

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function updateSummary() {
    summary.textContent = `${done} of ${total} files done: ${findings} findings, ${rejected} rejected`;
  }

  function showResult(item, file) {
    item.status.textContent = "";
    if (file.status === "ok") {
      item.li.dataset.result = "ok";
      const n = file.findings.length;
      findings += n;
      item.status.className = "result-ok";
      item.status.textContent = `${n} finding${n === 1 ? "" : "s"}` +
        (file.max_c != null ? `, hottest pixel ${file.max_c.toFixed(1)} °C` : "") +
        (file.camera ? ` — ${file.camera}` : "");
      if (n) {
        const ul = el("ul", "findings");
        for (const f of file.findings) {
          const li = el("li", "finding");
          // A cool exception (a phase far colder than its sibling) is named as such,
          // never "L0 none" (the same badge as the queue's).
          const sev = f.cool_exception && f.severity === 0
            ? el("span", "sev sev-cool", "cool exception")
            : el("span", `sev sev-${Math.min(4, f.severity)}`, `L${f.severity} ${f.level_name}`);
          li.append(sev, ` ${f.max_c.toFixed(1)} °C at (${f.max_at[0]}, ${f.max_at[1]}), ${f.area_px} px — ${f.action}`);
          if (!f.new) li.append(el("span", "muted", " (already stored)"));
          ul.append(li);
        }
        item.li.append(ul);
        const a = el("a", "", "see the alerts");
        a.href = `/alerts?site=${encodeURIComponent(site.value)}&gateway=upload`;
        item.li.append(a);
      }
      for (const w of file.warnings || []) item.li.append(el("p", "warn", w));
    } else {
      rejected++;
      item.li.dataset.result = "error";
      item.status.className = "result-error";
      item.status.textContent = `rejected: ${file.error ? file.error.message : "unknown reason"}`;
    }
  }

  function send(item) {
    running++;
    const data = new FormData();
    data.append("site", site.value);
    if (asset.value) data.append("asset", asset.value);
    data.append("severity_table", $("#upload-table").value);
    const ref = $("#upload-reference").value;
    if (ref !== "") {
      data.append("reference_c", ref);
      data.append("reference_kind", $("#upload-reference-kind").value);
    }
    data.append("file", item.file, item.file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/uploads");
    xhr.setRequestHeader("X-CSRF-Token", document.querySelector('meta[name="csrf-token"]').content);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) {
        item.progress.max = e.total;
        item.progress.value = e.loaded;
        item.status.textContent = e.loaded < e.total ? "uploading…" : "analysing…";
      }
    });
    xhr.addEventListener("load", () => {
      item.progress.value = item.progress.max;
      const body = xhr.response;
      if (xhr.status === 200 && body && body.files && body.files[0]) {
        showResult(item, body.files[0]);
      } else {
        rejected++;
        item.li.dataset.result = "error";
        item.status.className = "result-error";
        item.status.textContent = `rejected: ${body && body.error ? body.error.message : `the hub answered ${xhr.status}`}`;
      }
      finish();
    });
    xhr.addEventListener("error", () => {
      rejected++;
      item.li.dataset.result = "error";
      item.status.className = "result-error";
      item.status.textContent = "failed: the hub could not be reached";
      finish();
    });
    xhr.send(data);
  }

  function finish() {
    running--;
    done++;
    updateSummary();
    pump();
  }

  function pump() {
    while (running < PARALLEL && queue.length) send(queue.shift());
  }

  function add(files) {
    if (!site.value) {
      summary.textContent = "Choose a site first.";
      return;
    }
    for (const file of files) {
      const li = el("li", "upload-item");
      li.dataset.name = file.name;
      const name = el("strong", "", file.name);
      const size = el("span", "muted", ` ${(file.size / 1048576).toFixed(2)} MiB `);
      const progress = el("progress");
      progress.max = file.size || 1;
      progress.value = 0;
      progress.setAttribute("aria-label", `Upload of ${file.name}`);
      const status = el("span", "upload-status", " waiting");
      li.append(name, size, progress, " ", status);
      list.append(li);
      queue.push({ file, li, progress, status });
      total++;
    }
    updateSummary();
    pump();
  }

  input.addEventListener("change", () => { add(Array.from(input.files)); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    add(Array.from(e.dataTransfer.files));
  });
})();
