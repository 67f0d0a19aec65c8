// The watches page: indicators the scheduler looks up again every period (POST, GET and
// DELETE /api/v1/watches), telling through the relay when a verdict changes.

import { $, api, clear, el, errorText, localTime, setStatus, setupTheme } from "./common.js";

const SHOWN = 5; // indicators named per watch, the rest counted

function indicatorLink(item) {
  return el("a", {
    href: `/indicator/${encodeURIComponent(item.value)}`,
    class: "mono",
    text: item.value,
  });
}

function row(watch) {
  const more = watch.indicators.length - SHOWN;
  const remove = el(
    "button",
    {
      type: "button",
      class: "btn btn-small",
      "aria-label": `Stop watching ${watch.indicators.map((i) => i.value).join(", ")}`,
      onclick: () => removeWatch(watch.id),
    },
    "Stop watching",
  );
  return el(
    "tr",
    { dataset: { watch: watch.id } },
    el(
      "td",
      {},
      watch.indicators.slice(0, SHOWN).flatMap((item, n) => [n ? ", " : "", indicatorLink(item)]),
      more > 0 ? ` and ${more} more` : "",
      watch.comment ? el("span", { class: "seen", text: watch.comment }) : null,
    ),
    el("td", { text: watch.every }),
    el("td", { text: watch.notify_on === "worse" ? "worse" : "any change" }),
    el("td", { text: String(watch.runs) }),
    el(
      "td",
      {},
      watch.last_run_at ? localTime(watch.last_run_at) : "not yet",
      watch.last_job ? [" ", el("a", { href: `/#job=${watch.last_job}`, text: "job" })] : null,
    ),
    el("td", { text: watch.next_run_at ? localTime(watch.next_run_at) : "soon" }),
    el("td", {}, remove),
  );
}

async function load() {
  const result = await api("GET", "/api/v1/watches");
  if (!result.ok) {
    setStatus($("watches-status"), `Cannot list the watches: ${errorText(result)}`, true);
    return;
  }
  const watches = result.data.watches;
  setStatus(
    $("watches-status"),
    watches.length ? `${watches.length} watch${watches.length === 1 ? "" : "es"}` : "Nothing watched yet.",
  );
  clear($("watches-body")).append(...watches.map(row));
}

async function removeWatch(id) {
  const result = await api("DELETE", `/api/v1/watches/${id}`);
  if (result.status !== 204) {
    setStatus($("watches-status"), `Not removed: ${errorText(result)}`, true);
    return;
  }
  await load();
  setStatus($("watches-status"), "Stopped watching.");
}

async function submit(event) {
  event.preventDefault();
  const indicators = $("watch-indicators")
    .value.split(/\r?\n/)
    .map((line) => line.trim())
    .filter(Boolean);
  if (!indicators.length) {
    setStatus($("watch-status"), "Give at least one indicator.", true);
    return;
  }
  const result = await api("POST", "/api/v1/watches", {
    json: { indicators, every: $("watch-every").value.trim(), notify_on: $("watch-notify").value },
  });
  if (result.status !== 201) {
    const rejected = (result.data && result.data.rejected) || [];
    const why = rejected.length ? ` (${rejected.map((r) => `${r.item}: ${r.reason}`).join("; ")})` : "";
    setStatus($("watch-status"), `Not watched: ${errorText(result)}${why}`, true);
    return;
  }
  $("watch-indicators").value = "";
  setStatus($("watch-status"), `Watching ${result.data.indicators.length} indicator${result.data.indicators.length === 1 ? "" : "s"} every ${result.data.every}.`);
  await load();
}

setupTheme();
$("watch-form").addEventListener("submit", submit);
$("watches-refresh").addEventListener("click", load);
load();
