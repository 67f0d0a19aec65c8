// The lookup page: submit indicators, follow the job's results live (server-sent events),
// sort, filter, export. The job id lives in the URL hash (#job=<id>) so a reload shows it.

import {
  $,
  api,
  clear,
  copyText,
  el,
  errorText,
  localTime,
  setStatus,
  setupTheme,
} from "./common.js";
import {
  PROVIDERS,
  PROVIDER_LABELS,
  badge,
  cellView,
  defang,
  detail,
  judge,
  rank,
  setProviders,
} from "./render.js";

const JOB_ID = /^[0-9a-f]{8,40}$/;

const form = $("lookup-form");
const textArea = $("text");
const fileInput = $("file");
const drop = $("drop");
const formStatus = $("form-status");
const rejectedBox = $("rejected");
const resultsPanel = $("results");
const table = $("results-table");
const head = $("results-head");
const tableStatus = $("table-status");
const filterText = $("filter-text");
const filterVerdict = $("filter-verdict");
const HIDDEN_KEY = "lookout.hiddenProviders";
/** More provider columns than this: the table's compact layout (narrower cells). */
const MANY_COLUMNS = 6;

const state = {
  jobId: null,
  providers: [],
  rows: [], // in job order
  byKey: new Map(),
  source: null,
  complete: false,
  sort: { key: null, dir: 1 },
  refreshQueued: false,
  retryTimer: null,
  submitted: null, // {id, count} of the job this page submitted, until it completes
  rejectedOf: null, // the job whose skipped items are listed
};

let droppedFile = null;

// ------------------------------------------------------------------ submitting

function chosenFile() {
  return (fileInput.files && fileInput.files[0]) || droppedFile;
}

function showFile() {
  const file = chosenFile();
  $("file-chosen").hidden = !file;
  $("file-name").textContent = file ? `${file.name} (${file.size} bytes)` : "";
}

// `answer`: a job, or a refusal's body: `rejected` (the first 100) and `rejected_total`.
function showRejected(answer, bad) {
  clear(rejectedBox);
  const rejected = (answer && answer.rejected) || [];
  if (!rejected.length) return;
  const total = Math.max(answer.rejected_total || 0, rejected.length);
  const shown = rejected.slice(0, 50);
  rejectedBox.append(
    el(
      "div",
      { class: bad ? "notice bad" : "notice" },
      `Skipped ${total} item${total === 1 ? "" : "s"} (not looked up):`,
      el(
        "ul",
        {},
        shown.map((r) => el("li", {}, el("code", { text: r.item }), ` — ${r.reason}`)),
      ),
      total > shown.length ? `…and ${total - shown.length} more.` : null,
    ),
  );
}

async function submit(event) {
  event.preventDefault();
  const providers = [...form.querySelectorAll('input[name="provider"]:checked')].map((c) => c.value);
  const text = textArea.value;
  const file = chosenFile();
  const fresh = $("fresh").checked;
  const expand = $("expand").checked;
  clear(rejectedBox);
  if (!providers.length) {
    setStatus(formStatus, "Choose at least one provider.", true);
    return;
  }
  if (!text.trim() && !file) {
    setStatus(formStatus, "Paste some indicators or choose a file first.", true);
    textArea.focus();
    return;
  }
  const button = $("submit");
  button.disabled = true;
  setStatus(formStatus, "Submitting…");
  let result;
  try {
    if (file) {
      const body = new FormData();
      body.append("file", file, file.name);
      if (text.trim()) body.append("text", text);
      body.append("providers", providers.join(","));
      body.append("fresh", fresh ? "true" : "false");
      body.append("expand", expand ? "true" : "false");
      result = await api("POST", "/api/v1/lookups", { form: body });
    } else {
      result = await api("POST", "/api/v1/lookups", { json: { text, providers, fresh, expand } });
    }
  } finally {
    button.disabled = false;
  }
  if (result.status !== 202) {
    setStatus(formStatus, `Not submitted: ${errorText(result)}`, true);
    showRejected(result.data, true);
    return;
  }
  const job = result.data;
  const count = job.indicators.length;
  state.submitted = { id: job.id, count };
  setStatus(formStatus, `Looking up ${count} indicator${count === 1 ? "" : "s"}.`);
  showRejected(job, false);
  state.rejectedOf = job.id;
  window.location.hash = `job=${job.id}`; // hashchange shows it
  if (state.jobId === job.id) showJob(job.id);
  loadRecent();
}

/** The form's status line once the job it submitted is complete. */
function formDone() {
  const submitted = state.submitted;
  if (!submitted || submitted.id !== state.jobId || !state.complete) return;
  state.submitted = null;
  const n = submitted.count;
  setStatus(formStatus, `Looked up ${n} indicator${n === 1 ? "" : "s"}: see the results below.`);
}

// ------------------------------------------------------------------ the table

function indicatorKey(kind, value) {
  return `${kind}\u0000${value}`;
}

function sortHeader(key, label) {
  return el(
    "th",
    { scope: "col", "aria-sort": "none", dataset: { sort: key } },
    el("button", { type: "button", class: "sort", onclick: () => sortBy(key) }, label),
  );
}

function buildTable(job) {
  for (const body of table.querySelectorAll("tbody")) body.remove();
  state.rows = [];
  state.byKey = new Map();
  const used = new Set(Object.values(job.providers || {}).flat());
  state.providers = PROVIDERS.length
    ? PROVIDERS.filter((p) => used.has(p))
    : [...used]; // the providers could not be listed: the job's own, as they come
  table.classList.toggle("many", state.providers.length > MANY_COLUMNS);
  clear(head).append(
    el(
      "tr",
      {},
      sortHeader("indicator", "Indicator"),
      sortHeader("overall", "Verdict"),
      state.providers.map((p) => sortHeader(p, PROVIDER_LABELS[p] || p)),
    ),
  );
  const columns = 2 + state.providers.length;
  job.indicators.forEach((item, index) => {
    const applicable = new Set((job.providers || {})[item.kind] || []);
    const row = {
      index,
      item,
      applicable,
      results: new Map(),
      overall: "pending",
      open: null,
      cells: new Map(),
    };
    const detailCell = el("td", { colspan: String(columns), id: `detail-${index}` });
    row.detailRow = el("tr", { class: "detail-row", hidden: true }, detailCell);
    row.detailCell = detailCell;
    row.overallCell = el("td", { class: "overall" });
    const main = el(
      "tr",
      {},
      el(
        "th",
        { scope: "row" },
        el("span", { class: "ind", text: item.value }),
        el(
          "span",
          {
            class: "kind",
            text: item.scope && item.scope !== "public" ? `${item.kind} · ${item.scope}` : item.kind,
          },
          el("a", {
            class: "history-link",
            href: `/indicator/${encodeURIComponent(item.value)}`,
            text: "history",
            "aria-label": `History of ${item.value}`,
          }),
        ),
        (row.seenNode = el("span", { class: "seen", hidden: true })),
      ),
      row.overallCell,
    );
    for (const provider of state.providers) {
      const cell = el("td", { class: "cell", dataset: { provider } });
      row.cells.set(provider, cell);
      main.append(cell);
    }
    row.body = el("tbody", { dataset: { indicator: item.value, kind: item.kind } }, main, row.detailRow);
    // Escape, from the open cell or from inside its details, closes them.
    row.body.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && row.open) {
        const button = row.cells.get(row.open).querySelector("button");
        closeDetail(row);
        if (button) button.focus();
      }
    });
    table.append(row.body);
    state.rows.push(row);
    state.byKey.set(indicatorKey(item.kind, item.value), row);
    for (const provider of state.providers) renderCell(row, provider);
    renderOverall(row);
  });
  buildColumnChoices();
  applyColumns();
}

// ------------------------------------------------------------------ columns shown

/** The providers whose columns the user hid (kept in this browser); their results still
 * count in the overall verdict. */
function hiddenProviders() {
  try {
    const stored = JSON.parse(window.localStorage.getItem(HIDDEN_KEY) || "[]");
    return new Set(Array.isArray(stored) ? stored.filter((p) => typeof p === "string") : []);
  } catch (_) {
    return new Set();
  }
}

function saveHidden(hidden) {
  try {
    window.localStorage.setItem(HIDDEN_KEY, JSON.stringify([...hidden]));
  } catch (_) {
    // storage refused (private mode): the choice lasts as long as the page
  }
}

function buildColumnChoices() {
  const hidden = hiddenProviders();
  clear($("columns-choices")).append(
    ...state.providers.map((p) =>
      el(
        "label",
        { class: "check" },
        el("input", {
          type: "checkbox",
          name: "column",
          value: p,
          checked: !hidden.has(p),
          onchange: (event) => {
            const now = hiddenProviders();
            if (event.target.checked) now.delete(p);
            else now.add(p);
            saveHidden(now);
            applyColumns();
          },
        }),
        ` ${PROVIDER_LABELS[p] || p}`,
      ),
    ),
  );
}

function applyColumns() {
  const hidden = hiddenProviders();
  for (const th of head.querySelectorAll("th[data-sort]")) {
    th.hidden = hidden.has(th.dataset.sort);
  }
  for (const row of state.rows) {
    for (const [provider, cell] of row.cells) cell.hidden = hidden.has(provider);
    if (row.open && hidden.has(row.open)) closeDetail(row);
  }
  for (const box of $("columns-choices").querySelectorAll("input")) {
    box.checked = !hidden.has(box.value);
  }
  const count = state.providers.filter((p) => hidden.has(p)).length;
  $("columns-button").textContent = count ? `Columns (${count} hidden)` : "Columns";
}

function renderCell(row, provider) {
  const cell = row.cells.get(provider);
  const result = row.results.get(provider);
  const view = row.applicable.has(provider)
    ? cellView(result || { status: "pending" })
    : cellView(null);
  cell.className = `cell v-${view.key}`;
  cell.dataset.verdict = view.key;
  const content = [badge(view.key, view.label), el("span", { class: "summary", text: view.text })];
  if (!row.applicable.has(provider)) {
    clear(cell).append(el("div", { class: "cell-static" }, content));
    return;
  }
  const button = el(
    "button",
    {
      type: "button",
      class: "cell-btn",
      "aria-expanded": row.open === provider ? "true" : "false",
      "aria-controls": `detail-${row.index}`,
      title: view.text,
      onclick: () => toggleDetail(row, provider),
    },
    content,
    el("span", { class: "sr-only", text: `, ${PROVIDER_LABELS[provider] || provider} details` }),
  );
  const hadFocus = cell.contains(document.activeElement);
  clear(cell).append(button);
  if (hadFocus) button.focus();
}

function renderOverall(row) {
  const results = [...row.applicable].map(
    (p) => row.results.get(p) || { provider: p, status: "pending" },
  );
  const { verdict, reasons } = judge(results);
  row.overall = verdict;
  row.reasons = reasons;
  row.overallCell.className = `overall v-${row.overall}`;
  row.overallCell.dataset.verdict = row.overall;
  const why = reasons.join("; ");
  clear(row.overallCell).append(
    el(
      "div",
      { class: "cell-static", title: why },
      badge(row.overall, row.overall),
      why ? el("span", { class: "summary reasons", text: why }) : null,
    ),
  );
  row.search = [
    row.item.value,
    row.item.kind,
    row.overall,
    why,
    ...[...row.results.values()].map((r) => {
      const view = cellView(r);
      return `${view.label} ${view.text}`;
    }),
  ]
    .join(" ")
    .toLowerCase();
}

function toggleDetail(row, provider) {
  if (row.open === provider) {
    closeDetail(row);
    return;
  }
  row.open = provider;
  for (const [p, cell] of row.cells) {
    const button = cell.querySelector("button");
    if (button) button.setAttribute("aria-expanded", p === provider ? "true" : "false");
  }
  renderDetail(row);
  row.detailRow.hidden = false;
}

function closeDetail(row) {
  row.open = null;
  row.detailRow.hidden = true;
  clear(row.detailCell);
  for (const cell of row.cells.values()) {
    const button = cell.querySelector("button");
    if (button) button.setAttribute("aria-expanded", "false");
  }
}

function renderDetail(row) {
  if (!row.open) return;
  const actions = { add: addToJob, open: openNewJob };
  clear(row.detailCell).append(detail(row.item, row.open, row.results.get(row.open), actions));
}

// ------------------------------------------------------------------ pivots

/** Add `values` to the job shown (a pivot's "Add to this job"), then show it grown. */
async function addToJob(values) {
  const id = state.jobId;
  if (!id) return;
  setStatus(tableStatus, `Adding ${values.length === 1 ? values[0] : `${values.length} values`}…`);
  const result = await api("POST", `/api/v1/lookups/${id}/indicators`, {
    json: { indicators: values },
  });
  if (!result.ok) {
    setStatus(tableStatus, `Not added: ${errorText(result)}`, true);
    return;
  }
  const added = result.data.added.length;
  if (added && state.jobId === id) await showJob(id);
  setStatus(
    tableStatus,
    added
      ? `Added ${added} indicator${added === 1 ? "" : "s"} to this job.`
      : "Nothing added: the job holds them already (or is full).",
  );
}

/** Open a new job looking up `values` (a pivot's "New job"). */
async function openNewJob(values) {
  const providers = [...form.querySelectorAll('input[name="provider"]:checked')].map(
    (c) => c.value,
  );
  const result = await api("POST", "/api/v1/lookups", {
    json: { indicators: values, providers },
  });
  if (result.status !== 202) {
    setStatus(tableStatus, `No new job: ${errorText(result)}`, true);
    return;
  }
  window.location.hash = `job=${result.data.id}`;
  loadRecent();
}

// ------------------------------------------------------------------ seen before

const SEEN_ASKED = 100; // rows whose history is asked for (one request), per job shown

/** The overall verdict an indicator had before job `jobId`, and when: from its history. */
// What an indicator's history says of the time before the job shown: the newest other job
// created before it, and the overall verdict in force when the job shown was created (the
// history's newest entries only: none when they are all later, never a later one).
function previous(history, shown) {
  const cutoff = Date.parse(shown.created_at);
  const earlier = (at) => Date.parse(at) < cutoff;
  const job = (history.jobs || []).find((j) => j.id !== shown.id && earlier(j.created_at));
  const before = (history.verdict_history || []).find(
    (v) => v.job_id !== shown.id && earlier(v.at),
  );
  if (!before || !job) return null;
  return { verdict: before.verdict, at: job.created_at, job: job.id };
}

async function markSeen(shown) {
  const jobId = shown.id;
  const rows = state.rows.slice(0, SEEN_ASKED);
  if (!rows.length) return;
  // One request for every row: the indicators lookout has a history of, in short.
  const result = await api("POST", "/api/v1/indicators/seen", {
    json: { indicators: rows.map((row) => row.item.value) },
  });
  if (!result.ok || state.jobId !== jobId) return;
  const histories = new Map(result.data.seen.map((h) => [indicatorKey(h.kind, h.value), h]));
  for (const row of rows) {
    const history = histories.get(indicatorKey(row.item.kind, row.item.value));
    const seen = history && previous(history, shown);
    if (!seen) continue;
    row.seen = seen;
    row.seenNode.hidden = false;
    row.seenNode.dataset.verdict = seen.verdict;
    clear(row.seenNode).append(
      "seen before: ",
      badge(seen.verdict, seen.verdict),
      ` ${localTime(seen.at)}`,
    );
    row.seenNode.title = `In job ${seen.job}, ${localTime(seen.at)}`;
  }
}

// ------------------------------------------------------------------ recent lookups

async function loadRecent() {
  const list = $("recent-list");
  const result = await api("GET", "/api/v1/lookups?limit=10");
  if (!result.ok) {
    setStatus($("recent-status"), `Cannot list recent lookups: ${errorText(result)}`, true);
    return;
  }
  const found = result.data.jobs;
  setStatus($("recent-status"), found.length ? "" : "No lookups yet.");
  clear(list).append(
    ...found.map((job) => {
      const more = job.indicators - job.sample.length;
      return el(
        "li",
        { dataset: { job: job.id } },
        el("a", { href: `#job=${job.id}`, text: job.id }),
        el("span", { class: "when", text: localTime(job.created_at) }),
        el(
          "span",
          { class: "sample" },
          job.sample.join(", "),
          more > 0 ? ` and ${more} more` : "",
        ),
        job.scheduled ? el("span", { class: "chip", text: "scheduled" }) : null,
      );
    }),
  );
}

function applyResult(result) {
  const row = state.byKey.get(indicatorKey(result.kind, result.indicator));
  if (!row || !row.applicable.has(result.provider)) return;
  row.results.set(result.provider, result);
  // A provider this page has no column for still counts in the verdict, as in the API.
  if (row.cells.has(result.provider)) renderCell(row, result.provider);
  renderOverall(row);
  if (row.open === result.provider) renderDetail(row);
  scheduleRefresh();
}

// ------------------------------------------------------------------ progress, filter, sort

function scheduleRefresh() {
  if (state.refreshQueued) return;
  state.refreshQueued = true;
  window.requestAnimationFrame(() => {
    state.refreshQueued = false;
    refresh();
  });
}

function refresh() {
  let total = 0;
  let finished = 0;
  const counts = new Map();
  for (const row of state.rows) {
    for (const provider of row.applicable) {
      if (!row.cells.has(provider)) continue;
      total += 1;
      const r = row.results.get(provider);
      if (r && r.status !== "pending" && r.status !== "queued") finished += 1;
    }
    counts.set(row.overall, (counts.get(row.overall) || 0) + 1);
  }
  const bar = $("progress-bar");
  bar.max = Math.max(total, 1);
  bar.value = finished;
  $("progress-text").textContent = state.complete
    ? `Complete: ${finished} of ${total} results`
    : `${finished} of ${total} results…`;
  const order = ["malicious", "suspicious", "harmless", "undetected", "error", "pending", "unknown"];
  const tally = order.filter((v) => counts.get(v)).map((v) => `${counts.get(v)} ${v}`);
  formDone();
  const announce = state.complete ? `Lookup complete: ${tally.join(", ")}.` : "";
  if ($("announce").textContent !== announce) $("announce").textContent = announce;
  clear($("counts")).append(
    ...order
      .filter((v) => counts.get(v))
      .map((v) => el("li", { class: `chip v-${v}` }, badge(v, `${counts.get(v)} ${v}`))),
  );
  if (state.sort.key) applySort();
  applyFilter();
}

function applyFilter() {
  const needle = filterText.value.trim().toLowerCase();
  const verdict = filterVerdict.value;
  let shown = 0;
  for (const row of state.rows) {
    const match = (!needle || row.search.includes(needle)) && (!verdict || row.overall === verdict);
    row.body.hidden = !match;
    if (match) shown += 1;
  }
  const text =
    shown === state.rows.length
      ? `${state.rows.length} indicator${state.rows.length === 1 ? "" : "s"}`
      : `Showing ${shown} of ${state.rows.length} indicators`;
  if (tableStatus.textContent !== text) setStatus(tableStatus, text);
}

function sortValue(row, key) {
  if (key === "indicator") return row.item.value;
  if (key === "overall") return rank(row.overall);
  const result = row.results.get(key);
  return rank(row.applicable.has(key) ? cellView(result || { status: "pending" }).key : "none");
}

function applySort() {
  const { key, dir } = state.sort;
  const sorted = [...state.rows].sort((a, b) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    const c = typeof x === "string" ? x.localeCompare(y) : x - y;
    return c * dir || a.index - b.index;
  });
  for (const row of sorted) table.append(row.body);
  for (const th of head.querySelectorAll("th")) {
    const active = th.dataset.sort === key;
    th.setAttribute("aria-sort", active ? (dir === 1 ? "ascending" : "descending") : "none");
  }
}

function sortBy(key) {
  state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
  applySort();
}

// ------------------------------------------------------------------ following a job

function stopFollowing() {
  if (state.source) state.source.close();
  state.source = null;
  if (state.retryTimer) window.clearTimeout(state.retryTimer);
  state.retryTimer = null;
}

function follow(id) {
  stopFollowing();
  const source = new EventSource(`/api/v1/lookups/${id}/events`);
  state.source = source;
  // A result of an indicator this page has no row for, or a "done" naming more indicators:
  // the job grew after this page read it (a pivot added, its expansion): read it again.
  const reread = () => {
    source.close();
    if (state.jobId === id) showJob(id);
  };
  source.addEventListener("result", (event) => {
    const result = JSON.parse(event.data);
    if (!state.byKey.has(indicatorKey(result.kind, result.indicator))) reread();
    else applyResult(result);
  });
  source.addEventListener("done", (event) => {
    if (JSON.parse(event.data).length !== state.rows.length) {
      reread();
      return;
    }
    source.close();
    state.complete = true;
    scheduleRefresh();
  });
  source.addEventListener("grown", reread);
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED && state.jobId === id && !state.complete) {
      // The server refused or went away for good: ask again in a moment.
      state.retryTimer = window.setTimeout(() => showJob(id), 3000);
    }
  });
}

/**
 * The providers (columns, labels), asked once: every table waits for them. Without them
 * (the gateway did not answer) a job's own providers make the columns, named as they are.
 */
const providersLoaded = api("GET", "/api/v1/providers").then((result) => {
  if (result.ok && result.data && Array.isArray(result.data.providers)) {
    setProviders(result.data.providers);
  }
});

async function showJob(id) {
  await providersLoaded;
  if (!JOB_ID.test(id)) {
    resultsPanel.hidden = false;
    setStatus(tableStatus, `"${id}" is not a lookup job id.`, true);
    return;
  }
  const fresh = state.jobId !== id;
  if (fresh) {
    stopFollowing();
    state.jobId = id;
    state.complete = false;
    state.sort = { key: null, dir: 1 };
    filterText.value = "";
    filterVerdict.value = "";
  }
  resultsPanel.hidden = false;
  $("job-id").textContent = `job ${id}`;
  const result = await api("GET", `/api/v1/lookups/${id}`);
  if (state.jobId !== id) return; // another job was chosen meanwhile
  if (!result.ok) {
    setStatus(tableStatus, `Cannot show this job: ${errorText(result)}`, true);
    if (fresh) {
      buildTable({ indicators: [], providers: {} });
    }
    return;
  }
  const job = result.data;
  tableStatus.classList.remove("bad");
  if (state.rejectedOf !== id) {
    // A job opened from a link or a reload: what its submission skipped, and why.
    showRejected(job, false);
    state.rejectedOf = id;
  }
  const grown = state.rows.length !== job.indicators.length;
  if (fresh || !state.rows.length || grown) {
    buildTable(job);
    markSeen(job);
  }
  for (const r of job.results) applyResult(r);
  state.complete = Boolean(job.complete);
  $("export-csv").href = `/api/v1/lookups/${id}.csv`;
  $("export-csv").setAttribute("download", `lookout-${id}.csv`);
  $("export-json").href = `/api/v1/lookups/${id}`;
  $("export-json").setAttribute("download", `lookout-${id}.json`);
  refresh();
  if (!state.complete) follow(id);
}

function jobFromHash() {
  const match = /^#job=(.*)$/.exec(window.location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

function onHash() {
  const id = jobFromHash();
  if (id && id !== state.jobId) {
    showJob(id).then(() => {
      if (document.activeElement === $("submit") || document.activeElement === document.body) {
        $("results-title").focus();
      }
    });
  }
}

// ------------------------------------------------------------------ toolbar

async function copyDefanged() {
  const visible = [...table.querySelectorAll("tbody")]
    .filter((body) => !body.hidden)
    .map((body) => defang(body.dataset.indicator, body.dataset.kind));
  if (!visible.length) {
    setStatus(tableStatus, "Nothing to copy.", true);
    return;
  }
  const ok = await copyText(`${visible.join("\n")}\n`);
  setStatus(
    tableStatus,
    ok
      ? `Copied ${visible.length} indicator${visible.length === 1 ? "" : "s"}, defanged.`
      : "Copying was refused by the browser.",
    !ok,
  );
}

// ------------------------------------------------------------------ wiring

setupTheme();
form.addEventListener("submit", submit);
fileInput.addEventListener("change", () => {
  droppedFile = null;
  showFile();
});
$("file-clear").addEventListener("click", () => {
  fileInput.value = "";
  droppedFile = null;
  showFile();
  fileInput.focus();
});
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  const files = event.dataTransfer && event.dataTransfer.files;
  if (!files || !files.length) return;
  droppedFile = files[0];
  try {
    fileInput.files = files;
    droppedFile = null;
  } catch (_) {
    // older browsers: keep the dropped file aside
  }
  showFile();
});
// A file dropped beside the zone must not replace the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());
textArea.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});
filterText.addEventListener("input", applyFilter);
filterVerdict.addEventListener("change", applyFilter);
$("copy-defanged").addEventListener("click", copyDefanged);
$("columns-all").addEventListener("click", () => {
  saveHidden(new Set());
  applyColumns();
});
window.addEventListener("hashchange", onHash);
onHash();
loadRecent();
