/* nni-pl dashboard: a single page over the JSON API at /api/v1 (no build step, no external resources).
 *
 * Routes (hash): #/ experiments, #/exp/ID overview, #/exp/ID/trials, #/exp/ID/charts, #/exp/ID/trial/TID.
 * Every view renders a skeleton once and then refreshes its parts in place every 2 s while the experiment
 * runs, so forms keep what the user typed. Data from the API (parameters, logs, names) is only ever inserted
 * as text (textContent / text nodes), never as HTML.
 */
(function () {
  "use strict";

  const API = "api/v1";
  const TOKEN = new URLSearchParams(window.location.search).get("token");
  const FAST_POLL_MS = 2000;
  const SLOW_POLL_MS = 10000;
  const TRIAL_STATUSES = ["WAITING", "RUNNING", "SUCCEEDED", "FAILED", "EARLY_STOPPED", "USER_CANCELED", "TIMEOUT"];
  const ACTIVE = new Set(["WAITING", "RUNNING"]);
  const PLOT_CONFIG = { displaylogo: false, responsive: true };

  const state = {
    globalReadOnly: false,
    route: null,
    view: null, // {refresh(): Promise<boolean /* live */>, dispose()}
    viewSeq: 0,
    timer: null,
    sort: { key: "sequence_id", dir: 1 },
    filter: { text: "", status: "" },
    xAxis: "sequence",
    topK: 0,
    logStream: "stdout",
  };

  // ---- small helpers ------------------------------------------------------------------------------------

  /** el("div", {class: "x", dataset: {id: 1}, onclick: fn}, "text", child) — children are text or nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "text") node.textContent = String(value);
      else if (key === "value") node.value = value;
      else if (value === true) node.setAttribute(key, "");
      else node.setAttribute(key, String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function replaceChildren(node, ...children) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return append(node, children);
  }

  function byId(id) {
    return document.getElementById(id);
  }

  function fmtNum(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    if (!isFinite(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-4 || a >= 1e6)) return v.toExponential(4);
    return String(Number(v.toPrecision(6)));
  }

  function fmtTime(t) {
    if (t === null || t === undefined) return "–";
    const d = new Date(t * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return "–";
    s = Math.max(0, s);
    if (s < 10) return `${s.toFixed(1)}s`;
    s = Math.round(s);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (h) return `${h}h ${m}m ${sec}s`;
    if (m) return `${m}m ${sec}s`;
    return `${sec}s`;
  }

  function fmtParams(p) {
    if (p === null || p === undefined) return "";
    return Object.entries(p)
      .map(([k, v]) => `${k}=${typeof v === "number" ? fmtNum(v) : JSON.stringify(v)}`)
      .join(", ");
  }

  /** Text for Plotly, which reads a few HTML-like tags in labels: user data must not carry any. */
  function plain(s) {
    return String(s).replace(/</g, "\u2039").replace(/>/g, "\u203a");
  }

  function statusBadge(status) {
    return el("span", { class: `status status-${status}`, dataset: { status } }, status);
  }

  function isMaximize(exp) {
    return String((exp && exp.optimize_mode) || "maximize").toLowerCase().startsWith("max");
  }

  // ---- API ----------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, { method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(`${API}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(`the dashboard server cannot be reached (${e.message}); is the experiment manager still running?`, 0);
    }
    let data = null;
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = { error: text.slice(0, 300) };
      }
    }
    if (!response.ok) {
      let message = (data && data.error) || `${method} ${path} failed with HTTP ${response.status}`;
      if (response.status === 401 && !TOKEN) message += " — open the URL with ?token=... that the server printed";
      throw new ApiError(message, response.status);
    }
    return data;
  }

  const enc = encodeURIComponent;

  function showBanner(message) {
    const banner = byId("banner");
    if (!message) {
      banner.hidden = true;
      banner.textContent = "";
      return;
    }
    banner.textContent = message;
    banner.hidden = false;
  }

  function setLive(live) {
    const ind = byId("live-indicator");
    ind.classList.toggle("on", !!live);
    ind.textContent = live ? "live" : "";
  }

  function setCrumbs(...parts) {
    const nav = byId("crumbs");
    replaceChildren(nav);
    parts.forEach((part, i) => {
      if (i) nav.appendChild(el("span", { class: "sep" }, "/"));
      nav.appendChild(part.href ? el("a", { href: part.href }, part.text) : el("span", {}, part.text));
    });
  }

  /** Run an action from a button: disable it meanwhile, report the API's reason in `msgNode` or the banner. */
  async function act(button, msgNode, fn) {
    if (button) button.disabled = true;
    if (msgNode) {
      msgNode.textContent = "";
      msgNode.className = "msg";
    }
    try {
      const result = await fn();
      if (msgNode && typeof result === "string") {
        msgNode.textContent = result;
        msgNode.className = "msg ok";
      }
      await refreshNow();
    } catch (e) {
      if (msgNode) {
        msgNode.textContent = e.message;
        msgNode.className = "msg error";
      } else showBanner(e.message);
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ---- router and polling -------------------------------------------------------------------------------

  function parseRoute() {
    const parts = window.location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] === "exp" && parts[1]) {
      if (parts[2] === "trial" && parts[3]) return { name: "trial", exp: parts[1], trial: parts[3] };
      if (parts[2] === "trials") return { name: "trials", exp: parts[1] };
      if (parts[2] === "charts") return { name: "charts", exp: parts[1] };
      return { name: "overview", exp: parts[1] };
    }
    return { name: "experiments" };
  }

  function navigate() {
    clearTimeout(state.timer);
    if (state.view && state.view.dispose) state.view.dispose();
    state.viewSeq += 1;
    state.route = parseRoute();
    const app = byId("app");
    replaceChildren(app);
    showBanner("");
    const r = state.route;
    if (r.name === "experiments") state.view = experimentsView(app);
    else if (r.name === "trial") state.view = trialView(app, r.exp, r.trial);
    else state.view = experimentView(app, r.exp, r.name);
    app.dataset.view = r.name;
    refreshNow();
  }

  let inFlight = false;
  let again = false;

  /** Refresh the current view now, then poll. One refresh at a time; a request meanwhile runs right after. */
  async function refreshNow() {
    if (inFlight) {
      again = true;
      return;
    }
    clearTimeout(state.timer);
    inFlight = true;
    const seq = state.viewSeq;
    let live = false;
    try {
      live = await state.view.refresh(() => seq === state.viewSeq);
      if (seq === state.viewSeq) showBanner("");
    } catch (e) {
      if (seq === state.viewSeq) showBanner(e.message);
      live = true; // keep retrying: the server may come back
    } finally {
      inFlight = false;
    }
    if (again || seq !== state.viewSeq) {
      again = false;
      refreshNow();
      return;
    }
    setLive(live);
    clearTimeout(state.timer);
    state.timer = setTimeout(refreshNow, live ? FAST_POLL_MS : SLOW_POLL_MS);
  }

  // ---- experiments list ---------------------------------------------------------------------------------

  function experimentsView(root) {
    setCrumbs({ text: "Experiments" });
    const tbody = el("tbody");
    const table = el(
      "table",
      { id: "experiments", class: "grid" },
      el(
        "thead",
        {},
        el("tr", {}, ["ID", "Name", "Status", "Best", "Trials", "Started", "Duration", ""].map((h) => el("th", {}, h))),
      ),
      tbody,
    );
    const empty = el("p", { id: "experiments-empty", class: "muted", hidden: true }, "No experiments found.");
    append(root, [el("h1", {}, "Experiments"), el("div", { class: "card table-wrap" }, table, empty)]);

    return {
      async refresh(current) {
        const exps = await api("/experiments");
        if (!current()) return false;
        replaceChildren(tbody);
        empty.hidden = exps.length > 0;
        for (const e of exps) tbody.appendChild(experimentRow(e));
        return exps.some((e) => e.status === "RUNNING");
      },
    };
  }

  function trialCounts(counts) {
    counts = counts || {};
    const parts = [];
    for (const s of TRIAL_STATUSES) if (counts[s]) parts.push(`${counts[s]} ${s.toLowerCase().replace("_", " ")}`);
    return parts.join(", ");
  }

  function experimentRow(e) {
    const href = `#/exp/${enc(e.id)}`;
    const actions = el("td", { class: "actions" });
    if (!state.globalReadOnly) {
      if (e.status === "RUNNING" && e.manager_alive) {
        const stop = el("button", { class: "danger", dataset: { action: "stop", expId: e.id } }, "Stop");
        stop.addEventListener("click", (ev) => {
          ev.stopPropagation();
          if (window.confirm(`Stop experiment ${e.id}? Running trials are ended; it can be resumed later.`))
            act(stop, null, () => api(`/experiments/${enc(e.id)}/stop`, { method: "POST" }));
        });
        actions.appendChild(stop);
      } else if (!e.manager_alive) {
        const resume = el("button", { class: "secondary", dataset: { action: "resume", expId: e.id } }, "Resume");
        resume.addEventListener("click", (ev) => {
          ev.stopPropagation();
          act(resume, null, () => api(`/experiments/${enc(e.id)}/resume`, { method: "POST" }));
        });
        actions.appendChild(resume);
      }
    }
    const row = el(
      "tr",
      { class: "clickable", dataset: { expId: e.id } },
      el("td", {}, el("a", { href, class: "mono" }, e.id)),
      el("td", {}, e.name || ""),
      el("td", {}, statusBadge(e.status)),
      el("td", { class: "num" }, fmtNum(e.best)),
      el("td", { title: trialCounts(e.counts) }, `${(e.counts && e.counts.total) || 0}`, e.max_trial_number ? ` / ${e.max_trial_number}` : "", el("span", { class: "muted small" }, ` ${trialCounts(e.counts)}`)),
      el("td", {}, fmtTime(e.started_at)),
      el("td", {}, fmtDuration(e.duration)),
      actions,
    );
    row.addEventListener("click", (ev) => {
      if (ev.target.closest("a,button")) return;
      window.location.hash = href;
    });
    return row;
  }

  // ---- one experiment: tabs overview / trials / charts --------------------------------------------------

  function experimentView(root, expId, tab) {
    const base = `#/exp/${enc(expId)}`;
    setCrumbs({ text: "Experiments", href: "#/" }, { text: expId });
    const tabs = el(
      "nav",
      { class: "tabs", id: "tabs" },
      [
        ["overview", "Overview", base],
        ["trials", "Trials", `${base}/trials`],
        ["charts", "Charts", `${base}/charts`],
      ].map(([name, label, href]) => el("a", { href, class: name === tab ? "active" : "", dataset: { tab: name } }, label)),
    );
    const head = el("div", { class: "exp-head" }, el("h1", { id: "exp-title" }, expId), el("span", { id: "exp-status" }));
    append(root, [head, tabs]);
    const body = el("section", { id: `tab-${tab}` });
    root.appendChild(body);
    const part = tab === "trials" ? trialsTab(body, expId) : tab === "charts" ? chartsTab(body, expId) : overviewTab(body, expId);

    return {
      async refresh(current) {
        const exp = await api(`/experiments/${enc(expId)}`);
        if (!current()) return false;
        byId("exp-title").textContent = exp.name ? `${exp.name} (${exp.id})` : exp.id;
        const status = byId("exp-status");
        replaceChildren(status, statusBadge(exp.status), exp.message ? el("span", { class: "muted small" }, ` ${exp.message}`) : null);
        const readOnly = state.globalReadOnly || !!exp.read_only;
        byId("readonly-badge").hidden = !readOnly;
        document.body.classList.toggle("read-only", readOnly);
        await part.update(exp, readOnly, current);
        return exp.status === "RUNNING";
      },
      dispose: part.dispose,
    };
  }

  // ---- overview -----------------------------------------------------------------------------------------

  function progressBar(id, value, max, label) {
    const pct = max ? Math.min(100, (100 * value) / max) : 0;
    return el(
      "div",
      { class: "progress", id },
      el("div", { class: "bar", style: `width: ${pct.toFixed(1)}%` }),
      el("span", { class: "label" }, label),
    );
  }

  function overviewTab(root, expId) {
    const summary = el("div", { class: "cards", id: "summary" });
    const best = el("div", { class: "card", id: "best" });
    const metricChart = el("div", { class: "chart", id: "chart-overview-metric" });
    const config = el("pre", { id: "config", class: "code" });
    const edit = editForm(expId);
    const actions = el("div", { id: "exp-actions", class: "row" });
    append(root, [
      summary,
      el("div", { class: "two-col" }, best, el("div", { class: "card" }, el("h2", {}, "Default metric"), metricChart)),
      edit.node,
      actions,
      el("div", { class: "card" }, el("h2", {}, "Config"), config),
    ]);
    let lastChart = "";

    return {
      async update(exp, readOnly, current) {
        const c = exp.counts || {};
        const done = ["SUCCEEDED", "FAILED", "EARLY_STOPPED", "USER_CANCELED", "TIMEOUT"].reduce((n, s) => n + (c[s] || 0), 0);
        const maxT = exp.max_trial_number;
        const maxD = exp.max_experiment_duration;
        replaceChildren(
          summary,
          el("div", { class: "card stat" }, el("div", { class: "k" }, "Status"), el("div", { class: "v" }, statusBadge(exp.status))),
          el(
            "div",
            { class: "card stat", id: "stat-best" },
            el("div", { class: "k" }, `Best (${isMaximize(exp) ? "maximize" : "minimize"})`),
            el("div", { class: "v num" }, fmtNum(exp.best)),
          ),
          el(
            "div",
            { class: "card stat", id: "stat-trials" },
            el("div", { class: "k" }, "Trials"),
            el("div", { class: "v" }, `${done} done · ${c.RUNNING || 0} running · ${(c.FAILED || 0) + (c.TIMEOUT || 0)} failed`),
            progressBar("progress-trials", c.total || 0, maxT, maxT ? `${c.total || 0} / ${maxT} (maxTrialNumber)` : `${c.total || 0} (no maxTrialNumber)`),
          ),
          el(
            "div",
            { class: "card stat", id: "stat-duration" },
            el("div", { class: "k" }, "Elapsed"),
            el("div", { class: "v" }, fmtDuration(exp.elapsed)),
            progressBar("progress-duration", exp.elapsed || 0, maxD, maxD ? `${fmtDuration(exp.elapsed)} / ${fmtDuration(maxD)} (maxExperimentDuration)` : "no maxExperimentDuration"),
          ),
          el(
            "div",
            { class: "card stat" },
            el("div", { class: "k" }, "Concurrency"),
            el("div", { class: "v" }, String(exp.trial_concurrency ?? "–")),
            el("div", { class: "muted small" }, `started ${fmtTime(exp.started_at)}`),
          ),
        );
        const bt = exp.best_trial;
        replaceChildren(
          best,
          el("h2", {}, "Best trial so far"),
          bt
            ? [
                el("p", {}, el("a", { href: `#/exp/${enc(expId)}/trial/${enc(bt.trial_id)}`, class: "mono", id: "best-trial-link" }, bt.trial_id), " · ", el("span", { class: "num" }, fmtNum(bt.final))),
                paramTable(bt.parameters),
              ]
            : el("p", { class: "muted" }, "No finished trial with a metric yet."),
        );
        const cfgText = JSON.stringify(exp.config || {}, null, 2);
        if (config.textContent !== cfgText) config.textContent = cfgText;
        edit.update(exp, readOnly);
        replaceChildren(actions);
        if (!readOnly && exp.status === "RUNNING" && exp.manager_alive !== false) {
          const stop = el("button", { class: "danger", id: "stop-experiment" }, "Stop experiment");
          stop.addEventListener("click", () => {
            if (window.confirm(`Stop experiment ${expId}? It can be resumed later.`))
              act(stop, null, () => api(`/experiments/${enc(expId)}/stop`, { method: "POST" }));
          });
          actions.appendChild(stop);
        } else if (!state.globalReadOnly && exp.status !== "RUNNING" && !exp.manager_alive) {
          const resume = el("button", { id: "resume-experiment", class: "secondary" }, "Resume experiment");
          resume.addEventListener("click", () => act(resume, null, () => api(`/experiments/${enc(expId)}/resume`, { method: "POST" })));
          actions.appendChild(resume);
        }
        if (exp.status === "RUNNING" || !lastChart) {
          const trials = await api(`/experiments/${enc(expId)}/trials`);
          if (!current()) return;
          const sig = signature(trials) + state.xAxis;
          if (sig !== lastChart) {
            lastChart = sig;
            plot(metricChart, ...metricFigure(exp, trials));
          }
        }
      },
    };
  }

  function paramTable(params) {
    const rows = Object.entries(params || {}).map(([k, v]) =>
      el("tr", {}, el("th", {}, k), el("td", { class: "mono" }, typeof v === "number" ? fmtNum(v) : JSON.stringify(v))),
    );
    return el("table", { class: "params" }, el("tbody", {}, rows));
  }

  function editForm(expId) {
    const conc = el("input", { id: "edit-concurrency", type: "number", min: "1", step: "1", name: "trialConcurrency" });
    const maxT = el("input", { id: "edit-max-trials", type: "number", min: "1", step: "1", name: "maxTrialNumber" });
    const dur = el("input", { id: "edit-duration", type: "text", name: "maxExperimentDuration", placeholder: "e.g. 2h, 30m or seconds" });
    const msg = el("div", { id: "edit-msg", class: "msg", role: "status" });
    const submit = el("button", { type: "submit", id: "edit-submit" }, "Apply");
    const form = el(
      "form",
      { id: "edit-form", class: "card form", autocomplete: "off", novalidate: true },
      el("h2", {}, "Change limits (the manager applies them live)"),
      el(
        "div",
        { class: "row" },
        el("label", {}, "trialConcurrency", conc),
        el("label", {}, "maxTrialNumber", maxT),
        el("label", {}, "maxExperimentDuration", dur),
        submit,
      ),
      msg,
    );
    let shown = {};
    const fill = (input, value) => {
      // never overwrite what the user is typing
      if (document.activeElement === input || input.dataset.dirty) return;
      input.value = value === null || value === undefined ? "" : String(value);
    };
    for (const input of [conc, maxT, dur]) input.addEventListener("input", () => (input.dataset.dirty = "1"));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const body = {};
      if (conc.value !== "" && conc.value !== String(shown.conc ?? "")) body.trialConcurrency = Number(conc.value);
      if (maxT.value !== "" && maxT.value !== String(shown.maxT ?? "")) body.maxTrialNumber = Number(maxT.value);
      if (dur.value.trim() !== "" && dur.value.trim() !== String(shown.dur ?? "")) {
        const v = dur.value.trim();
        body.maxExperimentDuration = /^\d+(\.\d+)?$/.test(v) ? Number(v) : v;
      }
      if (!Object.keys(body).length) {
        msg.textContent = "Nothing changed.";
        msg.className = "msg";
        return;
      }
      act(submit, msg, async () => {
        await api(`/experiments/${enc(expId)}`, { method: "PATCH", body });
        for (const input of [conc, maxT, dur]) delete input.dataset.dirty;
        return `Updated: ${Object.entries(body).map(([k, v]) => `${k}=${v}`).join(", ")}`;
      });
    });
    return {
      node: form,
      update(exp, readOnly) {
        form.hidden = readOnly;
        for (const input of form.querySelectorAll("input,button")) input.disabled = readOnly;
        shown = { conc: exp.trial_concurrency, maxT: exp.max_trial_number, dur: exp.max_experiment_duration };
        fill(conc, shown.conc);
        fill(maxT, shown.maxT);
        fill(dur, shown.dur);
      },
    };
  }

  // ---- trials table -------------------------------------------------------------------------------------

  const COLUMNS = [
    { key: "sequence_id", label: "#", value: (t) => t.sequence_id, cell: (t) => String(t.sequence_id ?? "") },
    { key: "trial_id", label: "Trial", value: (t) => t.trial_id, cell: (t) => el("span", { class: "mono" }, t.trial_id) },
    { key: "status", label: "Status", value: (t) => t.status, cell: (t) => statusBadge(t.status) },
    // shown only where trials run on several platforms (a hybrid trainingService list)
    { key: "platform", label: "Platform", value: (t) => t.platform, cell: (t) => t.platform || "–", optional: true },
    { key: "parameters", label: "Parameters", value: (t) => fmtParams(t.parameters), cell: (t) => el("span", { class: "mono params-cell", title: JSON.stringify(t.parameters) }, fmtParams(t.parameters)) },
    { key: "final", label: "Final", value: (t) => t.final, cell: (t) => fmtNum(t.final), num: true },
    { key: "duration", label: "Duration", value: (t) => t.duration, cell: (t) => fmtDuration(t.duration), num: true },
    { key: "intermediate_count", label: "Reports", value: (t) => t.intermediate_count, cell: (t) => String(t.intermediate_count ?? 0), num: true },
  ];

  function compareTrials(a, b, key, dir) {
    const col = COLUMNS.find((c) => c.key === key) || COLUMNS[0];
    const va = col.value(a);
    const vb = col.value(b);
    const na = va === null || va === undefined;
    const nb = vb === null || vb === undefined;
    if (na || nb) return na && nb ? 0 : na ? 1 : -1; // missing values last whatever the direction
    if (typeof va === "number" && typeof vb === "number") return (va - vb) * dir;
    return String(va).localeCompare(String(vb), undefined, { numeric: true }) * dir;
  }

  // whether the trial table shows the platform column: the config lists several platforms, or trials ran on several
  function showsPlatform(exp, trials) {
    const ts = exp && exp.config ? exp.config.trainingService : null;
    if (Array.isArray(ts) && ts.length > 1) return true;
    return new Set(trials.map((t) => t.platform).filter(Boolean)).size > 1;
  }

  function trialsTab(root, expId) {
    const filterText = el("input", { id: "trial-filter", type: "search", placeholder: "filter: id, parameter, status…", value: state.filter.text });
    const statusSel = el("select", { id: "status-filter" }, el("option", { value: "" }, "all statuses"), TRIAL_STATUSES.map((s) => el("option", { value: s }, s)));
    statusSel.value = state.filter.status;
    const countNode = el("span", { id: "trial-count", class: "muted" });
    const headRow = el(
      "tr",
      {},
      COLUMNS.map((c) => el("th", { dataset: { sort: c.key }, class: `sortable${c.num ? " num" : ""}`, tabindex: "0", title: "sort" }, c.label)),
      el("th", {}, ""),
    );
    const tbody = el("tbody");
    const table = el("table", { id: "trials", class: "grid" }, el("thead", {}, headRow), tbody);
    const add = addTrialForm(expId);
    append(root, [el("div", { class: "row toolbar" }, filterText, statusSel, countNode), el("div", { class: "card table-wrap" }, table), add.node]);
    let trials = [];
    let readOnly = true;
    let platformShown = false;

    const render = () => {
      const text = state.filter.text.trim().toLowerCase();
      const shown = trials
        .filter((t) => !state.filter.status || t.status === state.filter.status)
        .filter((t) => !text || `${t.trial_id} ${t.sequence_id} ${t.status} ${t.platform || ""} ${fmtParams(t.parameters)} ${JSON.stringify(t.parameters)}`.toLowerCase().includes(text))
        .map((t, i) => [t, i])
        .sort(([a, ia], [b, ib]) => compareTrials(a, b, state.sort.key, state.sort.dir) || ia - ib)
        .map(([t]) => t);
      for (const th of headRow.querySelectorAll("th[data-sort]")) {
        th.hidden = th.dataset.sort === "platform" && !platformShown;
        const on = th.dataset.sort === state.sort.key;
        th.setAttribute("aria-sort", on ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
      }
      replaceChildren(tbody);
      for (const t of shown) {
        const href = `#/exp/${enc(expId)}/trial/${enc(t.trial_id)}`;
        const tr = el("tr", { class: "clickable", dataset: { trialId: t.trial_id, status: t.status } });
        for (const c of COLUMNS) if (!c.optional || platformShown) tr.appendChild(el("td", { class: c.num ? "num" : "", dataset: { col: c.key } }, c.cell(t)));
        const actions = el("td", { class: "actions" });
        if (!readOnly && ACTIVE.has(t.status)) actions.appendChild(killButton(expId, t.trial_id));
        tr.appendChild(actions);
        tr.addEventListener("click", (ev) => {
          if (ev.target.closest("button,a")) return;
          window.location.hash = href;
        });
        tbody.appendChild(tr);
      }
      countNode.textContent = `${shown.length} of ${trials.length} trials`;
    };

    headRow.addEventListener("click", (ev) => {
      const th = ev.target.closest("th[data-sort]");
      if (!th) return;
      if (state.sort.key === th.dataset.sort) state.sort.dir = -state.sort.dir;
      else state.sort = { key: th.dataset.sort, dir: 1 };
      render();
    });
    headRow.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && ev.target.closest("th[data-sort]")) ev.target.click();
    });
    filterText.addEventListener("input", () => {
      state.filter.text = filterText.value;
      render();
    });
    statusSel.addEventListener("change", () => {
      state.filter.status = statusSel.value;
      render();
    });

    return {
      async update(exp, ro, current) {
        const data = await api(`/experiments/${enc(expId)}/trials`);
        if (!current()) return;
        trials = data;
        readOnly = ro;
        platformShown = showsPlatform(exp, trials);
        add.update(exp, ro);
        render();
      },
    };
  }

  function killButton(expId, trialId) {
    const button = el("button", { class: "danger small", dataset: { action: "kill", trialId } }, "Kill");
    button.addEventListener("click", (ev) => {
      ev.stopPropagation();
      if (window.confirm(`Kill trial ${trialId}?`))
        act(button, null, () => api(`/experiments/${enc(expId)}/trials/${enc(trialId)}/kill`, { method: "POST" }));
    });
    return button;
  }

  function exampleParams(space) {
    const out = {};
    for (const [k, spec] of Object.entries(space || {})) {
      const v = spec && spec._value;
      if (!Array.isArray(v) || !v.length) continue;
      out[k] = spec._type === "choice" ? (typeof v[0] === "object" && v[0] !== null ? v[0] : v[0]) : v[0];
    }
    return out;
  }

  function addTrialForm(expId) {
    const text = el("textarea", { id: "add-trial-params", rows: "4", spellcheck: "false", placeholder: '{"x": 0.5}' });
    const submit = el("button", { type: "submit", id: "add-trial-submit" }, "Add trial");
    const msg = el("div", { id: "add-trial-msg", class: "msg", role: "status" });
    const spaceNode = el("pre", { class: "code small", id: "search-space" });
    const form = el(
      "form",
      { id: "add-trial-form", class: "card form", autocomplete: "off" },
      el("h2", {}, "Add a trial with your own parameters"),
      el("label", { class: "block" }, "Parameters (JSON object, checked against the search space)", text),
      el("div", { class: "row" }, submit),
      msg,
      el("details", {}, el("summary", {}, "search space"), spaceNode),
    );
    let filled = false;
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      let parameters;
      try {
        parameters = JSON.parse(text.value);
      } catch (e) {
        msg.textContent = `the parameters are not valid JSON (${e.message}); write an object like {"x": 0.5}`;
        msg.className = "msg error";
        return;
      }
      if (parameters === null || typeof parameters !== "object" || Array.isArray(parameters)) {
        msg.textContent = `the parameters must be a JSON object like {"x": 0.5}, got ${JSON.stringify(parameters)}`;
        msg.className = "msg error";
        return;
      }
      act(submit, msg, async () => {
        const r = await api(`/experiments/${enc(expId)}/trials`, { method: "POST", body: { parameters } });
        return `Trial ${r.trial_id} added; it starts when a slot is free.`;
      });
    });
    return {
      node: form,
      update(exp, readOnly) {
        form.hidden = readOnly;
        const spaceText = JSON.stringify(exp.search_space || {}, null, 2);
        if (spaceNode.textContent !== spaceText) spaceNode.textContent = spaceText;
        if (!filled && !text.value) {
          text.value = JSON.stringify(exp.best_trial ? exp.best_trial.parameters : exampleParams(exp.search_space));
          filled = true;
        }
      },
    };
  }

  // ---- charts -------------------------------------------------------------------------------------------

  function signature(trials) {
    return trials.map((t) => `${t.trial_id}:${t.status}:${t.final}:${t.intermediate_count}:${t.ended_at}`).join("|");
  }

  function plot(node, data, layout) {
    if (!window.Plotly) {
      replaceChildren(node, el("p", { class: "muted" }, "Charts need plotly.min.js, which the server did not deliver (install the plotly Python package)."));
      return;
    }
    const base = {
      margin: { l: 55, r: 20, t: 30, b: 45 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12 },
      height: 340,
    };
    window.Plotly.react(node, data, Object.assign(base, layout), PLOT_CONFIG);
    node.dataset.rendered = String(Number(node.dataset.rendered || 0) + 1);
  }

  /** Axis settings for whole numbers (trial #, report #): ticks at 1, 2, 5, 10, ... steps, never 2.5. */
  function intAxis(maxValue, title) {
    const steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];
    const dtick = steps.find((s) => maxValue / s <= 10) || Math.ceil(maxValue / 10);
    return { title: { text: title }, tickmode: "linear", tick0: 0, dtick };
  }

  function emptyFigure(text) {
    return [[], { xaxis: { visible: false }, yaxis: { visible: false }, annotations: [{ text, showarrow: false, font: { size: 14, color: "#888" } }] }];
  }

  function metricFigure(exp, trials) {
    const max = isMaximize(exp);
    const done = trials.filter((t) => typeof t.final === "number");
    if (!done.length) return emptyFigure("no final results yet");
    const byTime = state.xAxis === "time";
    done.sort((a, b) => (byTime ? (a.ended_at || 0) - (b.ended_at || 0) : a.sequence_id - b.sequence_id));
    const xs = done.map((t) => (byTime ? new Date((t.ended_at || t.started_at || 0) * 1000) : t.sequence_id));
    let best = null;
    const bestY = done.map((t) => (best = best === null ? t.final : max ? Math.max(best, t.final) : Math.min(best, t.final)));
    return [
      [
        {
          x: xs,
          y: done.map((t) => t.final),
          text: done.map((t) => `${plain(t.trial_id)}<br>${plain(fmtParams(t.parameters))}`),
          mode: "markers",
          type: "scatter",
          name: "final",
          marker: { size: 8, color: "#3b6fd4" },
          hovertemplate: "%{y}<br>%{text}<extra></extra>",
        },
        { x: xs, y: bestY, mode: "lines", type: "scatter", name: `best so far (${max ? "max" : "min"})`, line: { shape: "hv", color: "#e0662d", width: 2 } },
      ],
      {
        xaxis: byTime ? { title: { text: "end time" } } : intAxis(Math.max(...xs), "trial #"),
        yaxis: { title: { text: "default metric" } },
        legend: { orientation: "h", y: 1.12 },
      },
    ];
  }

  function paramDimensions(exp, trials) {
    const space = exp.search_space || {};
    const keys = [];
    for (const k of Object.keys(space)) keys.push(k);
    for (const t of trials) for (const k of Object.keys(t.parameters || {})) if (!keys.includes(k)) keys.push(k);
    const dims = [];
    for (const key of keys) {
      const spec = space[key] || {};
      const values = trials.map((t) => (t.parameters || {})[key]);
      const numeric = values.every((v) => typeof v === "number");
      const logScale = /^(log|qlog)/.test(spec._type || "") && values.every((v) => v > 0);
      if (numeric && spec._type !== "choice") {
        const dim = { label: plain(key) + (logScale ? " (log10)" : ""), values: values.map((v) => (logScale ? Math.log10(v) : v)) };
        const lo = Math.min(...values);
        const hi = Math.max(...values);
        if (!logScale && values.every(Number.isInteger) && hi - lo <= 20) {
          // whole numbers (randint): integer ticks only
          dim.tickvals = Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
          dim.range = lo === hi ? [lo - 1, hi + 1] : [lo, hi];
        }
        dims.push(dim);
        continue;
      }
      // a choice (or anything not numeric): indices with the choices as tick labels
      const cats = [];
      const keyOf = (v) => (typeof v === "string" ? v : JSON.stringify(v));
      if (spec._type === "choice" && Array.isArray(spec._value)) for (const v of spec._value) cats.push(keyOf(v && v._name !== undefined ? v._name : v));
      for (const v of values) {
        const kv = keyOf(v && typeof v === "object" && v._name !== undefined ? v._name : v);
        if (!cats.includes(kv)) cats.push(kv);
      }
      const idx = values.map((v) => cats.indexOf(keyOf(v && typeof v === "object" && v._name !== undefined ? v._name : v)));
      dims.push({
        label: plain(key),
        values: idx,
        tickvals: cats.map((_, i) => i),
        ticktext: cats.map((c) => plain(c.length > 18 ? c.slice(0, 17) + "…" : c)),
        range: [0, Math.max(1, cats.length - 1)],
      });
    }
    return dims;
  }

  function parcoordsFigure(exp, trials) {
    const max = isMaximize(exp);
    let done = trials.filter((t) => typeof t.final === "number");
    if (!done.length) return emptyFigure("no final results yet");
    done.sort((a, b) => (max ? b.final - a.final : a.final - b.final));
    if (state.topK > 0) done = done.slice(0, state.topK);
    const dims = paramDimensions(exp, done);
    const finals = done.map((t) => t.final);
    dims.push({ label: "metric", values: finals });
    return [
      [
        {
          type: "parcoords",
          dimensions: dims,
          line: { color: finals, colorscale: "Viridis", reversescale: !max, showscale: true, colorbar: { title: { text: "metric" } } },
          labelangle: 0,
        },
      ],
      { margin: { l: 60, r: 60, t: 50, b: 30 } },
    ];
  }

  const STATUS_COLORS = {
    WAITING: "#9aa3ad",
    RUNNING: "#3b6fd4",
    SUCCEEDED: "#2e9d5b",
    FAILED: "#d43b3b",
    EARLY_STOPPED: "#d4a13b",
    USER_CANCELED: "#7a6fb0",
    TIMEOUT: "#b5542e",
  };

  function durationFigure(trials) {
    const ts = trials.filter((t) => typeof t.duration === "number").sort((a, b) => a.sequence_id - b.sequence_id);
    if (!ts.length) return emptyFigure("no trial has started yet");
    return [
      [
        {
          type: "bar",
          x: ts.map((t) => plain(`#${t.sequence_id} ${t.trial_id}`)),
          y: ts.map((t) => t.duration),
          marker: { color: ts.map((t) => STATUS_COLORS[t.status] || "#888") },
          text: ts.map((t) => t.status),
          textposition: "none",
          hovertemplate: "%{x}<br>%{y:.2f} s<br>%{text}<extra></extra>",
        },
      ],
      { yaxis: { title: { text: "seconds" } }, xaxis: { type: "category", tickangle: -30 } },
    ];
  }

  function curvesFigure(metrics, trials) {
    const order = new Map(trials.map((t) => [t.trial_id, t.sequence_id]));
    const ids = Object.keys(metrics || {}).filter((id) => (metrics[id] || []).length).sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0));
    if (!ids.length) return emptyFigure("no intermediate results yet");
    return [
      ids.map((id) => ({
        type: "scatter",
        mode: "lines+markers",
        name: plain(id),
        x: metrics[id].map((p) => p[0]),
        y: metrics[id].map((p) => (typeof p[1] === "number" ? p[1] : null)),
        marker: { size: 4 },
      })),
      {
        xaxis: intAxis(Math.max(...ids.map((id) => metrics[id][metrics[id].length - 1][0])), "report #"),
        yaxis: { title: { text: "intermediate result" } },
        showlegend: ids.length <= 20,
      },
    ];
  }

  function chartsTab(root, expId) {
    const xSel = el("select", { id: "metric-x" }, el("option", { value: "sequence" }, "by trial #"), el("option", { value: "time" }, "by end time"));
    xSel.value = state.xAxis;
    const topK = el("select", { id: "parcoords-topk" }, [0, 5, 10, 20, 50, 100].map((k) => el("option", { value: String(k) }, k ? `top ${k}` : "all trials")));
    topK.value = String(state.topK);
    const charts = {
      metric: el("div", { class: "chart", id: "chart-metric" }),
      parcoords: el("div", { class: "chart", id: "chart-parcoords" }),
      duration: el("div", { class: "chart", id: "chart-duration" }),
      curves: el("div", { class: "chart", id: "chart-intermediate" }),
    };
    append(root, [
      el("div", { class: "card" }, el("div", { class: "row spread" }, el("h2", {}, "Default metric per trial"), xSel), charts.metric),
      el("div", { class: "card" }, el("div", { class: "row spread" }, el("h2", {}, "Hyperparameters"), topK), charts.parcoords),
      el("div", { class: "two-col" }, el("div", { class: "card" }, el("h2", {}, "Trial durations"), charts.duration), el("div", { class: "card" }, el("h2", {}, "Intermediate results"), charts.curves)),
    ]);
    let last = { exp: null, trials: [], metrics: {} };
    let sig = "";
    const draw = (force) => {
      const s = signature(last.trials);
      if (!force && s === sig) return;
      sig = s;
      plot(charts.metric, ...metricFigure(last.exp, last.trials));
      plot(charts.parcoords, ...parcoordsFigure(last.exp, last.trials));
      plot(charts.duration, ...durationFigure(last.trials));
      plot(charts.curves, ...curvesFigure(last.metrics, last.trials));
    };
    xSel.addEventListener("change", () => {
      state.xAxis = xSel.value;
      plot(charts.metric, ...metricFigure(last.exp, last.trials));
    });
    topK.addEventListener("change", () => {
      state.topK = Number(topK.value);
      plot(charts.parcoords, ...parcoordsFigure(last.exp, last.trials));
    });
    return {
      async update(exp, readOnly, current) {
        const [trials, metrics] = await Promise.all([api(`/experiments/${enc(expId)}/trials`), api(`/experiments/${enc(expId)}/metrics`)]);
        if (!current()) return;
        const running = trials.some((t) => t.status === "RUNNING");
        last = { exp, trials, metrics };
        draw(running); // durations of running trials grow: redraw while any runs
      },
    };
  }

  // ---- one trial ----------------------------------------------------------------------------------------

  function trialView(root, expId, trialId) {
    setCrumbs({ text: "Experiments", href: "#/" }, { text: expId, href: `#/exp/${enc(expId)}/trials` }, { text: trialId });
    const head = el("div", { class: "exp-head" }, el("h1", {}, "Trial ", el("span", { class: "mono" }, trialId)), el("span", { id: "trial-status" }), el("span", { id: "trial-actions" }));
    const info = el("div", { class: "cards", id: "trial-info" });
    const params = el("div", { class: "card", id: "trial-params" });
    const chart = el("div", { class: "chart", id: "chart-trial-intermediate" });
    const error = el("pre", { id: "trial-error", class: "code error", hidden: true });
    const streamSel = el("select", { id: "log-stream" }, el("option", { value: "stdout" }, "stdout"), el("option", { value: "stderr" }, "stderr"));
    streamSel.value = state.logStream;
    const log = el("pre", { id: "trial-log", class: "code log" });
    append(root, [
      head,
      info,
      el("div", { class: "two-col" }, params, el("div", { class: "card" }, el("h2", {}, "Intermediate results"), chart)),
      el("div", { class: "card", id: "trial-error-card", hidden: true }, el("h2", {}, "Error"), error),
      el("div", { class: "card" }, el("div", { class: "row spread" }, el("h2", {}, "Log (last 200 lines)"), streamSel), log),
    ]);
    let sig = "";
    streamSel.addEventListener("change", () => {
      state.logStream = streamSel.value;
      refreshNow();
    });

    return {
      async refresh(current) {
        const [exp, t] = await Promise.all([api(`/experiments/${enc(expId)}`), api(`/experiments/${enc(expId)}/trials/${enc(trialId)}`)]);
        if (!current()) return false;
        const readOnly = state.globalReadOnly || !!exp.read_only;
        byId("readonly-badge").hidden = !readOnly;
        replaceChildren(byId("trial-status"), statusBadge(t.status));
        const actions = byId("trial-actions");
        replaceChildren(actions);
        if (!readOnly && ACTIVE.has(t.status)) actions.appendChild(killButton(expId, trialId));
        replaceChildren(
          info,
          el("div", { class: "card stat" }, el("div", { class: "k" }, "Final"), el("div", { class: "v num", id: "trial-final" }, fmtNum(t.final))),
          el("div", { class: "card stat" }, el("div", { class: "k" }, "Duration"), el("div", { class: "v" }, fmtDuration(t.duration))),
          el("div", { class: "card stat" }, el("div", { class: "k" }, "Started"), el("div", { class: "v small" }, fmtTime(t.started_at))),
          el("div", { class: "card stat" }, el("div", { class: "k" }, "Sequence / source"), el("div", { class: "v small" }, `#${t.sequence_id} · ${t.parameter_source || ""}`)),
          el("div", { class: "card stat" }, el("div", { class: "k" }, "Platform"), el("div", { class: "v small", id: "trial-platform" }, t.platform || "–")),
          el("div", { class: "card stat" }, el("div", { class: "k" }, "Exit code"), el("div", { class: "v" }, t.exit_code === null || t.exit_code === undefined ? "–" : String(t.exit_code))),
        );
        replaceChildren(
          params,
          el("h2", {}, "Parameters"),
          paramTable(t.parameters),
          t.final_raw !== undefined && t.final_raw !== null && typeof t.final_raw === "object" ? [el("h2", {}, "Final result"), el("pre", { class: "code small", id: "trial-final-raw" }, JSON.stringify(t.final_raw, null, 2))] : null,
        );
        error.textContent = t.error || "";
        error.hidden = !t.error;
        byId("trial-error-card").hidden = !t.error;
        const points = t.intermediate || [];
        const s = `${points.length}:${t.status}`;
        if (s !== sig) {
          sig = s;
          if (points.length)
            plot(chart, [{ type: "scatter", mode: "lines+markers", x: points.map((p) => p.sequence), y: points.map((p) => (typeof p.value === "number" ? p.value : p.value && p.value.default)), name: plain(trialId) }], {
              xaxis: intAxis(Math.max(...points.map((p) => p.sequence)), "report #"),
              yaxis: { title: { text: "value" } },
              height: 280,
            });
          else plot(chart, ...emptyFigure("no intermediate results yet"));
        }
        try {
          const lg = await api(`/experiments/${enc(expId)}/trials/${enc(trialId)}/log?stream=${enc(state.logStream)}&tail=200`);
          if (!current()) return false;
          // follow the tail unless the user scrolled up to read
          const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 30;
          const text = lg.text || "(empty)";
          if (log.textContent !== text) log.textContent = text;
          if (atBottom) log.scrollTop = log.scrollHeight;
          log.classList.remove("muted");
        } catch (e) {
          if (e.status !== 404) throw e;
          log.textContent = `no ${state.logStream} log yet`;
          log.classList.add("muted");
        }
        return ACTIVE.has(t.status);
      },
    };
  }

  // ---- start --------------------------------------------------------------------------------------------

  async function start() {
    try {
      const v = await api("/version");
      state.globalReadOnly = !!v.read_only;
      byId("version").textContent = v.version ? `v${v.version}` : "";
      byId("readonly-badge").hidden = !state.globalReadOnly;
      document.body.classList.toggle("read-only", state.globalReadOnly);
      // a dashboard served for one experiment opens on it; "#/" still lists them all
      if (v.experiment_id && !window.location.hash) window.history.replaceState(null, "", `#/exp/${enc(v.experiment_id)}`);
    } catch (e) {
      showBanner(e.message);
    }
    window.addEventListener("hashchange", navigate);
    navigate();
  }

  start();
})();
