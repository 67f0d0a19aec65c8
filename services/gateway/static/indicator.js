// An indicator's page (/indicator/<value>): what lookout found about it over time, from
// GET /api/v1/indicators/{value}: its verdict now, the latest result per provider, each
// change of its overall verdict, the jobs it was in. "Look up again" opens a fresh job.

import { $, api, clear, el, errorText, localTime, setStatus, setupTheme } from "./common.js";
import { PROVIDER_LABELS, badge, setProviders } from "./render.js";

const value = decodeURIComponent(window.location.pathname.replace(/^\/indicator\//, ""));
const status = $("indicator-status");

function jobLink(id) {
  return id ? el("a", { href: `/#job=${id}`, class: "mono", text: id }) : "";
}

function summary(history) {
  const reasons = history.verdict_reasons || [];
  return el(
    "dl",
    { class: "kv" },
    el("dt", { text: "Kind" }),
    el("dd", { text: history.kind }),
    el("dt", { text: "Verdict" }),
    el(
      "dd",
      { id: "indicator-verdict", dataset: { verdict: history.verdict } },
      badge(history.verdict, history.verdict),
      reasons.length ? ` ${reasons.join("; ")}` : "",
    ),
    el("dt", { text: "First seen" }),
    el("dd", { text: localTime(history.first_seen) }),
    el("dt", { text: "Last seen" }),
    el("dd", { text: localTime(history.last_seen) }),
    history.pending_jobs && history.pending_jobs.length
      ? [el("dt", { text: "Still coming in" }), el("dd", {}, history.pending_jobs.map(jobLink))]
      : null,
  );
}

function providerRows(history) {
  return history.providers.map((p) =>
    el(
      "tr",
      { dataset: { provider: p.provider } },
      el("th", { scope: "row", text: p.label || PROVIDER_LABELS[p.provider] || p.provider }),
      el(
        "td",
        { class: `v-${p.status === "done" ? p.verdict : p.status}` },
        badge(p.status === "done" ? p.verdict : "error", p.status === "done" ? p.verdict : p.status),
      ),
      el("td", { text: p.summary || p.error || "" }),
      el("td", { text: localTime(p.checked_at) }),
      el("td", {}, jobLink(p.job_id)),
    ),
  );
}

function verdictRows(history) {
  return history.verdict_history.map((v) =>
    el(
      "tr",
      { dataset: { verdict: v.verdict } },
      el("td", { text: localTime(v.at) }),
      el("td", {}, badge(v.verdict, v.verdict)),
      el("td", { text: (v.reasons || []).join("; ") }),
      el("td", {}, jobLink(v.job_id)),
    ),
  );
}

function jobItems(history) {
  return history.jobs.map((job) =>
    el(
      "li",
      { dataset: { job: job.id } },
      jobLink(job.id),
      el("span", { class: "when", text: localTime(job.created_at) }),
      el("span", { class: "sample", text: `${job.indicators} indicator${job.indicators === 1 ? "" : "s"}` }),
      job.scheduled ? el("span", { class: "chip", text: "scheduled" }) : null,
    ),
  );
}

async function lookAgain(normalised) {
  const result = await api("POST", "/api/v1/lookups", {
    json: { indicators: [normalised], fresh: true },
  });
  if (result.status !== 202) {
    setStatus(status, `Not looked up: ${errorText(result)}`, true);
    return;
  }
  window.location.href = `/#job=${result.data.id}`;
}

// The button says when the indicator is watched already (by any watch): no second watch
// of it by a second click, or on the next visit.
function markWatched(every) {
  const button = $("watch-it");
  button.textContent = `Watched every ${every}`;
  button.disabled = true;
  button.title = "See Watches to change or stop it";
}

async function showWatched(normalised) {
  const result = await api("GET", "/api/v1/watches");
  if (!result.ok) return;
  const watch = result.data.watches.find((w) => w.indicators.some((i) => i.value === normalised));
  if (watch) markWatched(watch.every);
}

async function watchIt(normalised) {
  $("watch-it").disabled = true;
  const result = await api("POST", "/api/v1/watches", {
    json: { indicators: [normalised], every: "1d" },
  });
  const made = result.status === 201;
  setStatus(
    status,
    made ? "Watched: looked up again every day (see Watches)." : `Not watched: ${errorText(result)}`,
    !made,
  );
  if (made) markWatched(result.data.every);
  else $("watch-it").disabled = false;
}

async function show() {
  $("indicator-value").textContent = value;
  document.title = `${value} · lookout`;
  const providers = await api("GET", "/api/v1/providers");
  if (providers.ok) setProviders(providers.data.providers);
  setStatus(status, "Loading…");
  const result = await api("GET", `/api/v1/indicators/${encodeURIComponent(value)}`);
  if (!result.ok) {
    setStatus(
      status,
      result.status === 404
        ? `${value} was never looked up (or its history expired).`
        : `Cannot show its history: ${errorText(result)}`,
      result.status !== 404,
    );
    if (result.status === 404) {
      $("look-again").hidden = false;
      $("look-again").onclick = () => lookAgain(value);
    }
    return;
  }
  const history = result.data;
  setStatus(status, "");
  $("indicator-value").textContent = history.value;
  clear($("indicator-summary")).append(summary(history));
  clear($("providers-body")).append(...providerRows(history));
  clear($("verdicts-body")).append(...verdictRows(history));
  clear($("jobs-list")).append(...jobItems(history));
  for (const id of ["providers-panel", "verdicts-panel", "jobs-panel"]) $(id).hidden = false;
  $("look-again").hidden = false;
  $("look-again").onclick = () => lookAgain(history.value);
  $("watch-it").hidden = false;
  $("watch-it").onclick = () => watchIt(history.value);
  showWatched(history.value);
}

setupTheme();
show();
