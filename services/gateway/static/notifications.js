// The notifications page: recent notifications with their delivery state per target, and
// each target's dead letters with a Replay button.

import { $, api, clear, el, errorText, localTime, setStatus, setupTheme } from "./common.js";

const STATE_ICONS = {
  delivered: "✔",
  retrying: "◷",
  paused: "⏸",
  dead: "✖",
  pending: "…",
  skipped: "–",
  not_applicable: "∅",
  silenced: "🔕",
  active: "✔",
};
const REFRESH_MS = 10000;

const state = { target: null, timer: null, busy: false };

function stateChip(value, text) {
  return el(
    "span",
    { class: `chip s-${value}`, dataset: { state: value } },
    el("span", { "aria-hidden": "true", text: STATE_ICONS[value] || "•" }),
    text || value,
  );
}

// ------------------------------------------------------------------ recent notifications

function targetItem(name, info) {
  const attempts = info.attempts ? ` · ${info.attempts} attempt${info.attempts === 1 ? "" : "s"}` : "";
  const chip = stateChip(info.state, `${name}: ${info.state}${attempts}`);
  const more = [];
  if (info.last_error) more.push(el("div", { class: "error-text", text: `Last error: ${info.last_error}` }));
  if (info.next_attempt_at) more.push(el("div", { text: `Next attempt: ${localTime(info.next_attempt_at)}` }));
  if (info.silence_id) {
    more.push(el("div", {}, "Silenced by ", el("a", { href: `/silences#${info.silence_id}`, class: "mono", text: info.silence_id })));
  }
  if (info.updated_at) more.push(el("div", { class: "help", text: `Updated ${localTime(info.updated_at)}` }));
  if (info.attempt_log && info.attempt_log.length) more.push(attemptLog(name, info.attempt_log));
  const item = el("li", { dataset: { target: name, state: info.state } });
  if (more.length) item.append(el("details", {}, el("summary", {}, chip), more));
  else item.append(chip);
  return item;
}

/** Every call to the target for this notification, newest last. */
function attemptLog(name, log) {
  return el(
    "table",
    { class: "data attempt-log", "aria-label": `Attempts to ${name}` },
    el(
      "thead",
      {},
      el("tr", {}, ["Time", "Outcome", "HTTP", "ms", "Error"].map((h) => el("th", { scope: "col", text: h }))),
    ),
    el(
      "tbody",
      {},
      log.map((a) =>
        el(
          "tr",
          { dataset: { outcome: a.outcome } },
          el("td", { class: "mono", text: localTime(a.at) }),
          el("td", { text: a.outcome }),
          el("td", { class: "mono", text: a.status === null || a.status === undefined ? "–" : String(a.status) }),
          el("td", { class: "mono", text: String(a.ms) }),
          el("td", { class: "error-text", text: a.error || "" }),
        ),
      ),
    ),
  );
}

// ------------------------------------------------------------------ target health

async function loadHealth() {
  const result = await api("GET", "/api/v1/targets");
  const list = $("target-health");
  if (!result.ok) {
    setStatus($("health-status"), `Cannot load targets: ${errorText(result)}`, true);
    return;
  }
  clear(list);
  targetChoices(result.data.targets.map((t) => t.name));
  const paused = result.data.targets.filter((t) => t.state === "paused");
  for (const t of result.data.targets) {
    const failures = t.consecutive_failures
      ? ` · ${t.consecutive_failures} failure${t.consecutive_failures === 1 ? "" : "s"} in a row`
      : "";
    const chip = stateChip(t.state, `${t.name} (${t.type}): ${t.state}${failures}`);
    const more = [];
    if (t.last_error && t.consecutive_failures) {
      more.push(el("div", { class: "error-text", text: `Last error: ${t.last_error}` }));
    }
    if (t.state === "paused" && t.paused_at) more.push(el("div", { text: `Paused ${localTime(t.paused_at)}` }));
    if (t.next_probe_at) more.push(el("div", { text: `Next probe: ${localTime(t.next_probe_at)}` }));
    if (t.on_failure) more.push(el("div", { class: "help", text: `Tells ${t.on_failure} when it fails` }));
    const item = el("li", { dataset: { target: t.name, state: t.state } });
    if (more.length) item.append(el("details", { open: t.state === "paused" }, el("summary", {}, chip), more));
    else item.append(chip);
    list.append(item);
  }
  setStatus(
    $("health-status"),
    paused.length ? `Paused: ${paused.map((t) => t.name).join(", ")}` : "Every target is active.",
    paused.length > 0,
  );
}

/** When lookout received it; the sender's own date only where that is all there is. */
function receivedCell(note) {
  if (note.received_at) {
    return el(
      "td",
      { class: "mono", dataset: { received: note.received_at } },
      localTime(note.received_at),
      note.timestamp ? el("div", { class: "help", text: `sent ${localTime(note.timestamp)}` }) : null,
    );
  }
  return el(
    "td",
    { class: "mono" },
    el("div", { class: "help", text: "not recorded; sent" }),
    localTime(note.timestamp),
  );
}

function about(note) {
  const parts = [`${note.source} / ${note.type}`];
  if (note.application) {
    parts.push(note.environment ? `${note.application} (${note.environment})` : note.application);
  } else if (note.environment) {
    parts.push(note.environment);
  }
  if (note.risk !== null && note.risk !== undefined) parts.push(`risk ${note.risk}`);
  return parts.join(" · ");
}

// The target filter's choices: the configured targets, the choice kept while it exists.
function targetChoices(names) {
  const filter = $("target-filter");
  const have = [...filter.options].slice(1).map((o) => o.value);
  if (have.length === names.length && have.every((n, i) => n === names[i])) return;
  const chosen = filter.value;
  clear(filter);
  filter.append(el("option", { value: "", text: "any" }), ...names.map((n) => el("option", { value: n, text: n })));
  filter.value = names.includes(chosen) ? chosen : "";
}

async function loadNotifications() {
  const params = new URLSearchParams({ limit: "100" });
  const wanted = $("state-filter").value;
  const target = $("target-filter").value;
  if (wanted) params.set("state", wanted);
  if (target) params.set("target", target);
  const result = await api("GET", `/api/v1/notifications?${params}`);
  const body = $("notes-body");
  if (!result.ok) {
    setStatus($("notes-status"), `Cannot load notifications: ${errorText(result)}`, true);
    return;
  }
  const { notifications, total, partial } = result.data;
  // Keep open <details> open across a refresh.
  const open = new Set(
    [...body.querySelectorAll("details[open]")].map((d) => d.closest("tr").dataset.id + "\u0000" + d.closest("li").dataset.target),
  );
  clear(body);
  for (const note of notifications) {
    const targets = Object.entries(note.targets).sort(([a], [b]) => a.localeCompare(b));
    const row = el(
      "tr",
      { dataset: { id: note.id } },
      receivedCell(note),
      el(
        "td",
        {},
        note.title ? el("div", { class: "note-title", text: note.title }) : null,
        el("div", { class: "mono", text: note.id }),
        el("div", { class: "help", text: about(note) }),
      ),
      el("td", {}, stateChip(note.state)),
      el("td", {}, el("ul", { class: "targets" }, targets.map(([n, info]) => targetItem(n, info)))),
    );
    for (const details of row.querySelectorAll("details")) {
      if (open.has(note.id + "\u0000" + details.closest("li").dataset.target)) details.open = true;
    }
    body.append(row);
  }
  const filtered = Boolean(wanted);
  if (!notifications.length) {
    const empty = filtered ? "No notification in this state." : "No notification yet.";
    body.append(el("tr", {}, el("td", { colspan: "4", class: "empty", text: empty })));
  }
  const counted = `${partial ? "at least " : ""}${total}${filtered ? " in this state" : ""}`;
  setStatus(
    $("notes-status"),
    `${notifications.length} shown of ${counted} · updated ${localTime(new Date().toISOString(), false)}`,
  );
}

// ------------------------------------------------------------------ dead letters

async function loadTargets() {
  const result = await api("GET", "/api/v1/deadletters");
  const list = $("dead-targets");
  if (!result.ok) {
    setStatus($("dead-status"), `Cannot load dead letters: ${errorText(result)}`, true);
    return;
  }
  const targets = result.data.targets;
  if (!state.target || !targets.some((t) => t.name === state.target)) {
    const first = targets.find((t) => t.count > 0) || targets[0];
    state.target = first ? first.name : null;
  }
  clear(list);
  for (const t of targets) {
    list.append(
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            class: "btn",
            "aria-pressed": t.name === state.target ? "true" : "false",
            dataset: { target: t.name },
            onclick: () => {
              state.target = t.name;
              refreshDead();
            },
          },
          el("span", { text: t.name }),
          t.configured ? null : el("span", { class: "help", text: "(not configured)" }),
          el("span", {
            class: t.count ? "count some" : "count",
            text: String(t.count),
            "aria-label": `${t.count} dead letter${t.count === 1 ? "" : "s"}`,
          }),
        ),
      ),
    );
  }
  if (!targets.length) setStatus($("dead-status"), "No target is configured.");
}

async function loadEntries() {
  const view = $("dead-view");
  if (!state.target) {
    clear(view);
    return;
  }
  const target = state.target;
  const result = await api("GET", `/api/v1/deadletters/${encodeURIComponent(target)}`);
  if (target !== state.target) return;
  if (!result.ok) {
    clear(view).append(el("p", { class: "empty", text: `Cannot list: ${errorText(result)}` }));
    return;
  }
  const { deadletters, total, configured } = result.data;
  clear(view);
  if (!deadletters.length) {
    view.append(el("p", { class: "empty", text: `${target} has no dead letters.` }));
    return;
  }
  const replayAll = el(
    "button",
    {
      type: "button",
      class: "btn",
      // off when every one is listed and none can be replayed (e.g. not a notification)
      disabled: !configured || (deadletters.length === total && !deadletters.some((d) => d.replayable)),
      onclick: () => replay(target, { all: true }, `all ${total} dead letters`),
    },
    `Replay all ${total}`,
  );
  view.append(
    el(
      "div",
      { class: "panel-head" },
      el("h3", { text: `${target}: ${total} dead letter${total === 1 ? "" : "s"}` }),
      replayAll,
    ),
    el(
      "div",
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": `Dead letters of ${target}` },
      el(
        "table",
        { class: "data", id: "dead-table" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ["Seq", "Failed", "Notification", "Attempts", "Error", "Action"].map((h) =>
              el("th", { scope: "col", text: h }),
            ),
          ),
        ),
        el(
          "tbody",
          {},
          deadletters.map((d) => {
            const what = d.id ? `${d.id}` : "(not a valid notification)";
            return el(
              "tr",
              { dataset: { seq: String(d.seq), id: d.id || "" } },
              el("td", { class: "mono", text: String(d.seq) }),
              el("td", { class: "mono", text: localTime(d.failed_at) }),
              el(
                "td",
                {},
                el("div", { class: "mono", text: what }),
                d.id ? el("div", { class: "help", text: `${d.source} / ${d.type}` }) : null,
                d.raw ? el("div", { class: "error-text", text: d.raw }) : null,
              ),
              el("td", { text: String(d.attempts) }),
              el("td", { class: "error-text", text: d.error }),
              el(
                "td",
                {},
                el(
                  "button",
                  {
                    type: "button",
                    class: "btn btn-small",
                    disabled: !configured || !d.replayable,
                    "aria-label": `Replay ${what} to ${target}`,
                    onclick: () => replay(target, { id: String(d.seq) }, what),
                  },
                  "Replay",
                ),
              ),
            );
          }),
        ),
      ),
    ),
  );
}

async function replay(target, body, what) {
  if (state.busy) return;
  state.busy = true;
  setStatus($("dead-status"), `Replaying ${what} to ${target}…`);
  try {
    const result = await api("POST", `/api/v1/deadletters/${encodeURIComponent(target)}/replay`, {
      json: body,
    });
    if (!result.ok) {
      setStatus($("dead-status"), `Replay failed: ${errorText(result)}`, true);
    } else {
      const { replayed, skipped, outcomes } = result.data;
      const reasons = outcomes.filter((o) => !o.replayed).map((o) => `${o.seq}: ${o.reason}`);
      setStatus(
        $("dead-status"),
        `Replayed ${replayed} dead letter${replayed === 1 ? "" : "s"} to ${target}` +
          (skipped ? `; skipped ${skipped} (${reasons.join("; ")})` : "."),
        skipped > 0,
      );
    }
  } finally {
    state.busy = false;
  }
  await refreshAll();
}

async function refreshDead() {
  await loadTargets();
  await loadEntries();
}

async function refreshAll() {
  await Promise.all([loadNotifications(), loadHealth(), refreshDead()]);
}

function schedule() {
  if (state.timer) window.clearInterval(state.timer);
  state.timer = null;
  if ($("auto-refresh").checked) {
    state.timer = window.setInterval(() => {
      if (!document.hidden) refreshAll();
    }, REFRESH_MS);
  }
}

setupTheme();
$("refresh").addEventListener("click", refreshAll);
$("state-filter").addEventListener("change", loadNotifications);
$("target-filter").addEventListener("change", loadNotifications);
$("auto-refresh").addEventListener("change", schedule);
schedule();
refreshAll();
