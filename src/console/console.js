"use strict";
// The console: reads the public JSON API of this same origin and renders it. Every value
// that comes from the API goes into the page as text (textContent, text nodes, SVG <title>):
// nothing is ever parsed as HTML, and the page's CSP (Trusted Types) refuses every HTML sink.
(() => {
  const TOKEN_KEY = "webhook-inbox.read-token";
  const PAGE = 25;
  const $ = (id) => document.getElementById(id);
  const state = { cursors: [null], page: 0, next: null, selected: null, rejectionsCursor: null };

  // Builds an element; string children become text nodes, never markup.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }
  const svg = (tag, attrs) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  };

  // --- the read token: sessionStorage only, sent as a bearer token -----------------------
  const token = {
    get: () => sessionStorage.getItem(TOKEN_KEY) || "",
    set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
    forget: () => sessionStorage.removeItem(TOKEN_KEY),
  };
  let asking = null;
  function askToken() {
    if (asking) return asking;
    const dialog = $("token-dialog");
    asking = new Promise((resolve) => {
      const done = (ok) => {
        dialog.close();
        asking = null;
        resolve(ok);
      };
      $("token-form").onsubmit = (event) => {
        event.preventDefault();
        const value = $("token-input").value.trim();
        if (!value) return;
        token.set(value);
        $("token-input").value = "";
        done(true);
      };
      $("token-forget").onclick = () => { token.forget(); done(false); };
      $("token-cancel").onclick = () => done(false);
      dialog.oncancel = (event) => { event.preventDefault(); done(false); };
    });
    dialog.showModal();
    $("token-input").focus();
    return asking;
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(describe(status, detail));
      this.status = status;
    }
  }
  function describe(status, detail) {
    if (Array.isArray(detail)) {
      return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("\n");
    }
    return typeof detail === "string" ? `${detail} (${status})` : `HTTP ${status}`;
  }

  // GET a JSON endpoint; on 401 ask for the token once and try again.
  async function api(path, { retry = true } = {}) {
    const headers = { Accept: "application/json" };
    const current = token.get();
    if (current) headers.Authorization = `Bearer ${current}`;
    const response = await fetch(path, { headers, cache: "no-store", credentials: "omit" });
    if (response.status === 401 && retry) {
      if (await askToken()) return api(path, { retry: false });
    }
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) throw new ApiError(response.status, body && body.detail);
    return body;
  }

  function showError(error) {
    const box = $("error");
    if (!error) { box.hidden = true; box.textContent = ""; return; }
    box.textContent = error.message || String(error);
    box.hidden = false;
  }

  // --- filters, reflected in the address (never the token) --------------------------------
  const FIELDS = ["from", "to", "since", "q"];
  function filtersFromUrl() {
    const params = new URLSearchParams(location.search);
    const out = {};
    for (const name of FIELDS) out[name] = params.get(name) || "";
    out.m = params.get("m") || "";
    return out;
  }
  function writeUrl(filters, push) {
    const params = new URLSearchParams();
    for (const name of [...FIELDS, "m"]) if (filters[name]) params.set(name, filters[name]);
    const search = params.toString();
    const url = location.pathname + (search ? `?${search}` : "");
    if (url !== location.pathname + location.search) {
      history[push ? "pushState" : "replaceState"](null, "", url);
    }
  }
  function formFilters() {
    const out = {};
    for (const name of FIELDS) out[name] = $(`f-${name}`).value.trim();
    out.m = state.selected || "";
    return out;
  }
  function fillForm(filters) {
    for (const name of FIELDS) $(`f-${name}`).value = filters[name] || "";
  }

  function listQuery(filters, cursor) {
    const params = new URLSearchParams({ order: "desc", limit: String(PAGE) });
    for (const name of FIELDS) if (filters[name]) params.set(name, filters[name]);
    if (cursor) params.set("cursor", cursor);
    return `/messages?${params}`;
  }

  // --- the message list ---------------------------------------------------------------------
  async function loadMessages() {
    const filters = formFilters();
    const cursor = state.cursors[state.page];
    const list = $("list");
    list.setAttribute("aria-busy", "true");
    try {
      const body = await api(listQuery(filters, cursor));
      state.next = body.next_cursor;
      renderList(body.data);
      const first = state.page * PAGE + (body.data.length ? 1 : 0);
      const last = state.page * PAGE + body.data.length;
      $("count").textContent = `${first}–${last} of ${body.total}`;
      showError(null);
    } catch (error) {
      state.next = null;
      renderList([]);
      $("count").textContent = "";
      showError(error);
    } finally {
      list.removeAttribute("aria-busy");
      $("older").disabled = !state.next;
      $("newest").disabled = state.page === 0;
    }
  }

  function renderList(messages) {
    const list = $("list");
    list.replaceChildren();
    if (!messages.length) {
      list.append(el("li", { class: "empty" }, "No messages match."));
      return;
    }
    for (const m of messages) {
      const button = el("button", { type: "button", class: "item", dataset: { id: m.message_id } },
        el("span", { class: "meta" },
          el("time", { datetime: m.ts }, m.ts),
          el("span", {}, `${m.from} → ${m.to}`),
          el("span", { class: "id" }, m.message_id)),
        el("span", { class: "text" }, m.text === null || m.text === undefined ? "(no text)" : m.text));
      if (m.message_id === state.selected) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => select(m.message_id, true));
      list.append(el("li", {}, button));
    }
  }

  async function select(id, push) {
    state.selected = id;
    for (const b of document.querySelectorAll("#list button[data-id]")) {
      if (b.dataset.id === id) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
    writeUrl(formFilters(), push);
    const detail = $("detail");
    if (!id) {
      detail.replaceChildren(el("p", { class: "note" }, "Select a message to read it in full."));
      return;
    }
    detail.replaceChildren(el("p", { class: "note" }, "Loading…"));
    try {
      const m = await api(`/messages/${encodeURIComponent(id)}`);
      detail.replaceChildren(
        el("h3", { id: "detail-title" }, "Message"),
        el("dl", {},
          el("dt", {}, "id"), el("dd", { id: "detail-id" }, m.message_id),
          el("dt", {}, "from"), el("dd", {}, m.from),
          el("dt", {}, "to"), el("dd", {}, m.to),
          el("dt", {}, "ts"), el("dd", {}, m.ts)),
        m.text === null || m.text === undefined
          ? el("p", { class: "note" }, "(no text)")
          : el("pre", { id: "detail-text" }, m.text));
      if (push) detail.focus();
    } catch (error) {
      detail.replaceChildren(el("p", { class: "error" }, error.message));
    }
  }

  // --- overview: totals, top senders, messages per hour, health -----------------------------
  async function loadStats() {
    try {
      const s = await api("/stats");
      $("total-messages").textContent = String(s.total_messages);
      $("total-senders").textContent = String(s.senders_count);
      $("first-ts").textContent = s.first_message_ts || "–";
      $("last-ts").textContent = s.last_message_ts || "–";
      const top = s.messages_per_sender || [];
      const max = Math.max(1, ...top.map((r) => r.count));
      const bars = $("senders");
      bars.replaceChildren();
      if (!top.length) bars.append(el("li", { class: "note" }, "No senders yet."));
      for (const row of top) {
        const fill = el("span", { class: "fill" });
        fill.style.width = `${(100 * row.count) / max}%`;
        const filter = el("button", { type: "button", class: "quiet name", title: `Show messages from ${row.from}` }, row.from);
        filter.addEventListener("click", () => applyFilters({ ...formFilters(), from: row.from, m: "" }));
        bars.append(el("li", {}, filter, el("span", { class: "track", "aria-hidden": "true" }, fill), el("span", {}, String(row.count))));
      }
    } catch (error) {
      showError(error);
    }
  }

  async function loadHourly() {
    const days = Number($("days").value) || 7;
    const chart = $("hourly");
    try {
      const body = await api(`/stats/hourly?days=${days}`);
      const start = Date.parse(body.from);
      const hours = days * 24;
      const counts = new Array(hours).fill(0);
      for (const row of body.data) {
        const i = Math.round((Date.parse(row.hour) - start) / 3600000);
        if (i >= 0 && i < hours) counts[i] = row.count;
      }
      const max = Math.max(1, ...counts);
      const width = 700, height = 120, base = 104, w = width / hours;
      chart.replaceChildren(svg("line", { x1: 0, x2: width, y1: base, y2: base }));
      counts.forEach((count, i) => {
        if (!count) return;
        const h = Math.max(1, (count / max) * (base - 6));
        const bar = svg("rect", { x: i * w, y: base - h, width: Math.max(w - 0.5, 0.5), height: h });
        const title = svg("title");
        title.textContent = `${new Date(start + i * 3600000).toISOString().slice(0, 13)}:00Z: ${count}`;
        bar.append(title);
        chart.append(bar);
      });
      for (let d = 0; d < days; d += Math.max(1, Math.ceil(days / 7))) {
        const label = svg("text", { x: d * 24 * w + 2, y: height - 2 });
        label.textContent = new Date(start + d * 86400000).toISOString().slice(5, 10);
        chart.append(label);
      }
      const total = counts.reduce((a, b) => a + b, 0);
      $("hourly-text").textContent = `${total} messages in the last ${days} day${days > 1 ? "s" : ""}; busiest hour ${max === 1 && !total ? 0 : max}.`;
    } catch (error) {
      chart.replaceChildren();
      $("hourly-text").textContent = error.status === 404 ? "Not available on this server." : error.message;
    }
  }

  async function loadHealth() {
    const badge = (id, text, ok) => {
      const node = $(id);
      node.textContent = text;
      node.className = `badge ${ok ? "ok" : "bad"}`;
    };
    try {
      const live = await fetch("/health/live", { cache: "no-store" });
      badge("live", live.ok ? "live: ok" : `live: ${live.status}`, live.ok);
    } catch (_) {
      badge("live", "live: unreachable", false);
    }
    try {
      const response = await fetch("/health/ready", { cache: "no-store" });
      const body = await response.json();
      const failed = body.checks ? Object.keys(body.checks).join(", ") : "";
      badge("ready", response.ok ? "ready" : `not ready: ${failed}`, response.ok);
      if (body.checks) $("ready").title = Object.values(body.checks).join("; ");
      return body;
    } catch (_) {
      badge("ready", "ready: unreachable", false);
      return null;
    }
  }

  // --- the rejection log, when the server has one ---------------------------------------
  async function loadRejections(more) {
    const section = $("rejections-section");
    const cursor = more ? state.rejectionsCursor : null;
    try {
      const body = await api(`/rejections?limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      const rows = $("rejections");
      if (!more) rows.replaceChildren();
      for (const r of body.data) {
        rows.append(el("tr", {},
          el("td", {}, r.at), el("td", {}, String(r.status)), el("td", {}, r.reason),
          el("td", {}, r.detail), el("td", {}, r.request_id)));
      }
      if (!rows.children.length) rows.append(el("tr", {}, el("td", { colspan: "5" }, "None.")));
      state.rejectionsCursor = body.next_cursor;
      $("rejections-more").hidden = !body.next_cursor;
      section.hidden = false;
    } catch (error) {
      section.hidden = error.status === 404 || error.status === 401;
      if (!section.hidden) showError(error);
    }
  }

  // --- wiring -------------------------------------------------------------------------------
  function applyFilters(filters, push = true) {
    fillForm(filters);
    state.cursors = [null];
    state.page = 0;
    writeUrl({ ...filters, m: state.selected || "" }, push);
    return loadMessages();
  }

  async function loadAll() {
    const ready = await loadHealth();
    if (ready && ready.read_auth === "required" && !token.get()) await askToken();
    await Promise.all([loadMessages(), loadStats(), loadHourly(), loadRejections(false)]);
    const wanted = filtersFromUrl().m;
    if (wanted) await select(wanted, false);
  }

  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilters(formFilters());
  });
  $("clear").addEventListener("click", () => applyFilters({ from: "", to: "", since: "", q: "" }));
  $("older").addEventListener("click", () => {
    if (!state.next) return;
    state.cursors[state.page + 1] = state.next;
    state.page += 1;
    loadMessages().then(() => $("list").focus());
  });
  $("newest").addEventListener("click", () => {
    state.cursors = [null];
    state.page = 0;
    loadMessages();
  });
  $("days").addEventListener("change", loadHourly);
  $("rejections-more").addEventListener("click", () => loadRejections(true));
  $("token-button").addEventListener("click", async () => {
    if (await askToken()) loadAll();
  });
  window.addEventListener("popstate", () => {
    const filters = filtersFromUrl();
    applyFilters(filters, false);
    select(filters.m || null, false);
  });
  // Keyboard: "/" to search, "j"/"k" (or arrows) to move through the list.
  document.addEventListener("keydown", (event) => {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
    if (event.key === "/" && !typing) {
      event.preventDefault();
      $("f-q").focus();
      return;
    }
    if (typing || event.altKey || event.ctrlKey || event.metaKey) return;
    const keys = { j: 1, k: -1, ArrowDown: 1, ArrowUp: -1 };
    const step = keys[event.key];
    if (!step) return;
    const items = [...document.querySelectorAll("#list button[data-id]")];
    if (!items.length) return;
    const at = items.indexOf(document.activeElement);
    if (at < 0 && !event.key.startsWith("Arrow")) { items[0].focus(); event.preventDefault(); return; }
    if (at < 0) return;
    const next = items[Math.min(items.length - 1, Math.max(0, at + step))];
    next.focus();
    event.preventDefault();
  });

  fillForm(filtersFromUrl());
  state.selected = filtersFromUrl().m || null;
  loadAll();
})();
