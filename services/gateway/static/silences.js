// The silences page: a form for a new silence (its matchers filled in from the address's
// query, as the "Silence similar" links of the messages give them), and the list with an
// Expire button for each active silence.

import { $, api, clear, el, errorText, localTime, setStatus, setupTheme } from "./common.js";

const MATCHERS = ["source", "type", "application", "environment", "ip", "target"];

function prefill() {
  const query = new URLSearchParams(window.location.search);
  for (const name of MATCHERS) {
    const value = query.get(name);
    if (value) $(`m-${name}`).value = value;
  }
  for (const name of ["duration", "comment"]) {
    const value = query.get(name);
    if (value) $(name).value = value;
  }
}

function matcherText(matchers) {
  return MATCHERS.filter((name) => matchers[name] !== undefined).map((name) => `${name}=${matchers[name]}`);
}

async function load() {
  const result = await api("GET", "/api/v1/silences");
  const body = $("silences-body");
  if (!result.ok) {
    setStatus($("list-status"), `Cannot load silences: ${errorText(result)}`, true);
    return;
  }
  const { silences } = result.data;
  clear(body);
  for (const s of silences) {
    const active = s.state === "active";
    body.append(
      el(
        "tr",
        { id: s.id, dataset: { id: s.id, state: s.state } },
        el("td", {}, el("span", { class: `chip silence-${s.state}`, text: s.state })),
        el(
          "td",
          {},
          el("ul", { class: "list" }, matcherText(s.matchers).map((text) => el("li", { class: "mono", text }))),
          el("div", { class: "help mono", text: s.id }),
        ),
        el("td", { class: "mono", text: localTime(s.ends_at) }),
        el(
          "td",
          {},
          s.created_by,
          s.expired_by ? el("div", { class: "help", text: `expired by ${s.expired_by}` }) : null,
        ),
        el("td", { text: s.comment || "" }),
        el(
          "td",
          {},
          active
            ? el(
                "button",
                {
                  type: "button",
                  class: "btn btn-small",
                  "aria-label": `Expire silence ${s.id}`,
                  onclick: () => expire(s.id),
                },
                "Expire",
              )
            : null,
        ),
      ),
    );
  }
  if (!silences.length) {
    body.append(el("tr", {}, el("td", { colspan: "6", class: "empty", text: "No silence." })));
  }
  const active = silences.filter((s) => s.state === "active").length;
  setStatus($("list-status"), `${active} active, ${silences.length - active} expired · updated ${localTime(new Date().toISOString(), false)}`);
}

async function expire(id) {
  const result = await api("DELETE", `/api/v1/silences/${encodeURIComponent(id)}`);
  if (!result.ok) setStatus($("list-status"), `Cannot expire: ${errorText(result)}`, true);
  else setStatus($("list-status"), `Expired ${id}.`);
  await load();
}

async function create(event) {
  event.preventDefault();
  const matchers = {};
  for (const name of MATCHERS) {
    const value = $(`m-${name}`).value.trim();
    if (value) matchers[name] = value;
  }
  const body = { matchers, duration: $("duration").value.trim(), comment: $("comment").value };
  const result = await api("POST", "/api/v1/silences", { json: body });
  if (!result.ok) {
    setStatus($("form-status"), `Not created: ${errorText(result)}`, true);
    return;
  }
  setStatus($("form-status"), `Created ${result.data.id}, until ${localTime(result.data.ends_at)}.`);
  await load();
}

setupTheme();
prefill();
$("silence-form").addEventListener("submit", create);
$("refresh").addEventListener("click", load);
load();
