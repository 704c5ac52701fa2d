// Chitti dashboard: the live parts only. Pages are rendered by the hub; this script
// signs in and out, sends the action forms to /api/v1, keeps the live-stream
// indicator, refreshes live sections (fetching the page again and swapping the
// server-rendered HTML), and drives the queue's keyboard shortcuts and bulk actions.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const meta = (name) => {
    const m = document.querySelector(`meta[name="${name}"]`);
    return m ? m.getAttribute("content") : "";
  };
  const role = meta("user-role");
  const isOperator = role === "operator" || role === "admin";

  /** Calls the API with the session cookie and its CSRF token. */
  async function api(method, url, body, extraHeaders) {
    const headers = Object.assign(
      { "X-CSRF-Token": meta("csrf-token"), Accept: "application/json" }, extraHeaders || {});
    const init = { method, headers, credentials: "same-origin" };
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(url, init);
    let json = null;
    const type = res.headers.get("content-type") || "";
    if (type.includes("json")) {
      try { json = await res.json(); } catch (_) { json = null; }
    }
    return { ok: res.ok, status: res.status, json };
  }
  const errorText = (r) =>
    (r.json && r.json.error && r.json.error.message) || `the hub answered ${r.status}`;
  window.chitti = { api, errorText };

  function announce(text) {
    const a = $("#live-announcer");
    if (a) a.textContent = text;
  }

  // ---- Sign in and out ----------------------------------------------------------
  const login = $("#login-form");
  if (login) {
    login.addEventListener("submit", async (e) => {
      e.preventDefault();
      const err = $("#login-error");
      err.textContent = "";
      const r = await api("POST", "/api/v1/auth/login", {
        username: $("#username").value,
        password: $("#password").value,
      });
      if (r.ok) {
        location.assign(login.dataset.next || "/");
      } else {
        err.textContent = errorText(r);
        $("#password").select();
      }
    });
  }
  const logout = $("#logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      await api("POST", "/api/v1/auth/logout");
      location.assign("/login");
    });
  }

  // ---- A password reset link (/reset#token=…) -------------------------------------
  // The token stays in the fragment: never in a request line, a log or a Referer.
  const reset = $("#reset-form");
  if (reset) {
    reset.addEventListener("submit", async (e) => {
      e.preventDefault();
      const err = $("#reset-error");
      err.textContent = "";
      const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
      const r = await api("POST", "/api/v1/auth/reset", {
        token,
        new_password: $("#reset-password").value,
      });
      if (r.ok) {
        history.replaceState(null, "", "/reset");
        $("#reset-done").innerHTML = 'Your password is set. <a href="/login">Sign in</a>.';
        $("#reset-submit").disabled = true;
      } else {
        err.textContent = errorText(r);
      }
    });
  }

  // ---- API tokens (/account): scopes as a list, the token shown once -------------
  const tokenForm = $("#token-form");
  if (tokenForm) {
    tokenForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const err = $(".form-error", tokenForm);
      err.textContent = "";
      const body = {
        name: $("#token-name").value,
        scopes: $$("input[name='scopes']:checked", tokenForm).map((c) => c.value),
      };
      const days = $("#token-days").value;
      if (days !== "") body.expires_in_days = Number(days);
      const r = await api("POST", "/api/v1/tokens", body);
      if (r.ok) {
        $("#token-result").textContent =
          `Token ${r.json.name}, shown only now: ${r.json.token}`;
      } else {
        err.textContent = errorText(r);
      }
    });
  }

  // ---- Action forms (sent to the API) -------------------------------------------
  async function uploadVerified(form, file) {
    const data = new FormData();
    data.append("site", form.dataset.site);
    data.append("note", "verified-fixed image");
    data.append("file", file, file.name);
    const r = await api("POST", "/api/v1/uploads", data);
    if (!r.ok) throw new Error(errorText(r));
    const f = r.json.files[0];
    if (f.status !== "ok") throw new Error(`${f.name}: ${f.error ? f.error.message : "rejected"}`);
    return f.sha256;
  }

  for (const form of $$("form.api-form")) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const err = $(".form-error", form);
      if (err) err.textContent = "";
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
      const body = {};
      let file = null;
      for (const el of form.elements) {
        if (!el.name) continue;
        if (el.type === "file") {
          if (el.files.length) file = el.files[0];
        } else if (el.value !== "") {
          body[el.name] = el.value;
        }
      }
      const buttons = $$("button", form);
      buttons.forEach((b) => (b.disabled = true));
      try {
        if (file) body.verified_fixed_sha256 = await uploadVerified(form, file);
        const hasBody = form.dataset.method !== "DELETE";
        // A versioned document is saved with the version it was read at.
        const extra = form.dataset.ifMatch ? { "If-Match": form.dataset.ifMatch } : undefined;
        const r = await api(form.dataset.method, form.dataset.url, hasBody ? body : undefined, extra);
        if (!r.ok) throw new Error(errorText(r));
        const secrets = (r.json && r.json.new_secrets) || {};
        if (Object.keys(secrets).length) {
          // Shown once: stay on the page so they can be copied.
          const out = $(".form-result", form);
          if (out) out.textContent = "Saved. New webhook secrets, shown only now: " +
            Object.entries(secrets).map(([id, secret]) => `${id}: ${secret}`).join("; ");
          // The next save edits what was saved (secrets now "(kept)"), at its version.
          if (r.json.version !== undefined) form.dataset.ifMatch = `"${r.json.version}"`;
          const text = $("textarea[name='toml']", form);
          if (text && typeof r.json.toml === "string") text.value = r.json.toml;
          buttons.forEach((b) => (b.disabled = false));
          return;
        }
        if (form.dataset.result !== undefined) {
          // An action whose answer is the point (a test message): show it, stay.
          const out = $(".form-result", form);
          if (out) out.textContent = `${r.json.delivered ? "delivered" : "not delivered"}: ${r.json.answer}`;
          buttons.forEach((b) => (b.disabled = false));
          return;
        }
        location.reload();
      } catch (x) {
        if (err) err.textContent = x.message;
        buttons.forEach((b) => (b.disabled = false));
      }
    });
  }

  // ---- The live stream ------------------------------------------------------------
  const live = document.body.dataset.live;
  const indicator = $("#live-status");
  function setLive(state) {
    if (!indicator) return;
    indicator.dataset.state = state;
    $(".live-text", indicator).textContent = state;
  }
  let refreshTimer = null;
  let pendingResync = false;
  function scheduleRefresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      try {
        if (live === "queue") await refreshQueue();
        else if (live === "sections") await refreshSections();
      } catch (_) {
        // The next event tries again.
      }
    }, 400);
  }
  if (live && live !== "none" && indicator && window.EventSource) {
    const es = new EventSource("/api/v1/stream");
    es.addEventListener("open", () => setLive("live"));
    es.addEventListener("error", () =>
      setLive(es.readyState === EventSource.CLOSED ? "offline" : "connecting"));
    const alertId = ($("[data-alert-id]") || { dataset: {} }).dataset.alertId;
    es.addEventListener("alert", (e) => {
      if (alertId) {
        try { if (JSON.parse(e.data).id !== alertId) return; } catch (_) { return; }
      }
      scheduleRefresh();
    });
    // Gateway events change the overview and fleet pages, not the queue or an alert.
    es.addEventListener("gateway", () => { if (live === "sections" && !alertId) scheduleRefresh(); });
    es.addEventListener("resync", () => { pendingResync = true; scheduleRefresh(); });
  }

  async function fetchPage() {
    const res = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!res.ok) throw new Error(`reload: ${res.status}`);
    return new DOMParser().parseFromString(await res.text(), "text/html");
  }

  /** Swaps every `[data-live-section]` for its freshly rendered version. */
  async function refreshSections() {
    const doc = await fetchPage();
    for (const section of $$("[data-live-section][id]")) {
      const fresh = doc.getElementById(section.id);
      if (!fresh) continue;
      const open = $$("details", section).map((d) => d.open);
      section.innerHTML = fresh.innerHTML;
      $$("details", section).forEach((d, i) => { if (open[i]) d.open = true; });
    }
  }

  // ---- The alert queue -------------------------------------------------------------
  const queue = $("#alert-queue");
  const liveMarks = new Map(); // alert id → [class, until ms]
  const MARK_MS = 60000;
  let selected = -1;

  const rows = () => $$("#alert-rows tr.alert-row");
  function select(i, focus) {
    const all = rows();
    if (!all.length) { selected = -1; return; }
    selected = Math.max(0, Math.min(i, all.length - 1));
    all.forEach((r, j) => {
      r.classList.toggle("selected", j === selected);
      r.setAttribute("aria-selected", j === selected ? "true" : "false");
    });
    if (focus) all[selected].focus();
  }
  function selectedRow() { return rows()[selected] || null; }
  function checkedIds() { return $$("#alert-rows .row-check:checked").map((c) => c.value); }
  function updateBulk() {
    const b = $("#bulk-ack");
    if (b) b.disabled = checkedIds().length === 0;
  }

  async function refreshQueue() {
    if (!queue) return;
    if (queue.dataset.firstPage !== "true") {
      $("#bulk-result").textContent = "Alerts changed: see the first page.";
      return;
    }
    const doc = await fetchPage();
    const freshBody = doc.getElementById("alert-rows");
    if (!freshBody) return;
    const before = new Map(rows().map((r) => [r.dataset.id, r]));
    const freshRows = $$("tr.alert-row", freshBody);
    // A finding moves `updated`; an operator's action changes `status` only.
    const version = (r) => `${r.dataset.updated} ${r.dataset.status}`;
    const unchanged = freshRows.length === before.size && freshRows.every((r, i) =>
      rows()[i].dataset.id === r.dataset.id && version(rows()[i]) === version(r));
    if (unchanged && !pendingResync) return;
    const checked = new Set(checkedIds());
    const selectedId = selectedRow() ? selectedRow().dataset.id : null;
    const now = Date.now();
    let added = 0, changed = 0;
    for (const r of freshRows) {
      const old = before.get(r.dataset.id);
      if (!old) { liveMarks.set(r.dataset.id, ["live-new", now + MARK_MS]); added++; }
      else if (version(old) !== version(r)) {
        const mark = liveMarks.get(r.dataset.id);
        if (!mark || mark[0] !== "live-new" || mark[1] < now) liveMarks.set(r.dataset.id, ["live-changed", now + MARK_MS]);
        changed++;
      }
      const mark = liveMarks.get(r.dataset.id);
      if (mark && mark[1] > now) r.classList.add(mark[0]);
      const box = $(".row-check", r);
      if (box && checked.has(r.dataset.id)) box.checked = true;
    }
    const body = $("#alert-rows");
    body.replaceChildren(...Array.from(freshBody.children).map((n) => document.importNode(n, true)));
    const empty = $("#queue-empty");
    if (empty && rows().length) empty.remove();
    if (selectedId) {
      const i = rows().findIndex((r) => r.dataset.id === selectedId);
      if (i >= 0) select(i, false);
    }
    updateBulk();
    if (added || changed) {
      const parts = [];
      if (added) parts.push(`${added} new alert${added > 1 ? "s" : ""}`);
      if (changed) parts.push(`${changed} changed`);
      announce(parts.join(", "));
    }
    if (pendingResync) pendingResync = false;
  }

  async function acknowledge(ids) {
    let ok = 0;
    const failed = [];
    for (const id of ids) {
      const r = await api("POST", `/api/v1/alerts/${id}/acknowledge`);
      if (r.ok) ok++;
      else failed.push(errorText(r));
    }
    const msg = `Acknowledged ${ok}` + (failed.length ? `; ${failed.length} not: ${failed[0]}` : "");
    $("#bulk-result").textContent = msg;
    announce(msg);
    await refreshQueue();
  }

  if (queue) {
    select(0, false);
    $("#alert-rows").addEventListener("click", (e) => {
      const tr = e.target.closest("tr.alert-row");
      if (!tr) return;
      if (e.target.closest("a, input, button")) {
        if (e.target.classList.contains("row-check")) updateBulk();
        return;
      }
      select(rows().indexOf(tr), true);
    });
    $("#alert-rows").addEventListener("change", updateBulk);
    const all = $("#select-all");
    if (all) all.addEventListener("change", () => {
      $$("#alert-rows .row-check").forEach((c) => (c.checked = all.checked));
      updateBulk();
    });
    const bulk = $("#bulk-ack");
    if (bulk) bulk.addEventListener("click", () => acknowledge(checkedIds()));
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.target.closest("input, select, textarea, button")) return;
      const row = selectedRow();
      switch (e.key) {
        case "j": select(selected + 1, true); break;
        case "k": select(selected - 1, true); break;
        case "o": case "Enter": if (row) location.assign(row.dataset.href); break;
        case "a": if (row && isOperator) acknowledge([row.dataset.id]); break;
        case "x": {
          const box = row && $(".row-check", row);
          if (box) { box.checked = !box.checked; updateBulk(); }
          break;
        }
        default: return;
      }
      e.preventDefault();
    });
  }
})();
