// How one lookup result looks: the table cell (colour + words) and its detail panel.
// Every value that came from the user or an upstream is set as text, never as HTML.

import { el, localTime } from "./common.js";

// The providers lookout runs, in column order, how each is named to people, how its
// details look and its links: what GET /api/v1/providers says (setProviders), so a new
// provider needs nothing here.
export let PROVIDERS = [];
export let PROVIDER_LABELS = {};
let PROVIDER_DETAILS = {};
let PROVIDER_LINKS = {};

/** Take the providers from GET /api/v1/providers: [{name, label, kinds, details, links}, ...]. */
export function setProviders(providers) {
  PROVIDERS = providers.map((p) => p.name);
  PROVIDER_LABELS = Object.fromEntries(providers.map((p) => [p.name, p.label]));
  PROVIDER_DETAILS = Object.fromEntries(providers.map((p) => [p.name, p.details || {}]));
  PROVIDER_LINKS = Object.fromEntries(providers.map((p) => [p.name, p.links || {}]));
}
// The overall verdict of an indicator is the first of these its results count as (the
// rule of shared/lookups/verdicts.py judge(), mirrored): a done result counts with its verdict, an
// error or quota_exhausted one as "error", a pending or queued one as "pending", a
// not_configured one not at all.
export const VERDICT_ORDER = [
  "malicious",
  "suspicious",
  "harmless",
  "undetected",
  "error",
  "pending",
  "unknown",
];
const ICONS = {
  malicious: "✖",
  suspicious: "▲",
  harmless: "✔",
  undetected: "○",
  unknown: "•",
  error: "!",
  none: "–",
  queued: "◷",
  quota_exhausted: "◷",
  not_configured: "–",
  pending: "",
};

export function icon(name) {
  return ICONS[name] === undefined ? "" : ICONS[name];
}

export function badge(key, label) {
  const glyph = icon(key);
  return el(
    "span",
    { class: "badge" },
    glyph ? el("span", { "aria-hidden": "true", text: glyph }) : null,
    label,
  );
}

/** What a cell shows: {key (the colour class suffix), label, text}. */
export function cellView(result) {
  if (!result) return { key: "none", label: "n/a", text: "not for this kind" };
  switch (result.status) {
    case "pending":
      return { key: "pending", label: "pending", text: "waiting for the provider" };
    case "queued":
      return {
        key: "queued",
        label: "queued",
        text: result.retry_at
          ? `until ${localTime(result.retry_at, false)}`
          : result.summary || "waiting for quota",
      };
    case "quota_exhausted":
      return {
        key: "quota_exhausted",
        label: "rate-limited",
        text: result.retry_at
          ? `quota used until ${localTime(result.retry_at)}`
          : result.summary || "quota used",
      };
    case "not_configured":
      return { key: "not_configured", label: "not configured", text: result.summary || "" };
    case "error":
      // The cause (the provider says it first); where it asked is in the details.
      return { key: "error", label: "error", text: result.error || result.summary || "failed" };
    default: {
      const verdict = result.verdict || "unknown";
      return { key: verdict, label: verdict, text: result.summary || "no data" };
    }
  }
}

/** What one result adds to its indicator's overall verdict (null: nothing). */
export function countsAs(result) {
  switch (result.status) {
    case "done":
      return result.verdict || "unknown";
    case "error":
    case "quota_exhausted":
      return "error";
    case "pending":
    case "queued":
      return "pending";
    default:
      return null;
  }
}

function reason(result) {
  const label = PROVIDER_LABELS[result.provider] || result.provider;
  let said;
  if (result.status === "done") said = result.summary || result.verdict;
  else if (result.status === "pending") said = "pending";
  else said = result.error || result.summary || String(result.status).replace("_", " ");
  return `${label}: ${said}`;
}

// Mirrors shared/lookups/verdicts.py NONE_APPLIES.
const NONE_APPLIES = "no provider of this job looks up this kind of indicator";

/** {verdict, reasons} of an indicator from its results (each with its provider). */
export function judge(results) {
  if (!results.length) return { verdict: "unknown", reasons: [NONE_APPLIES] };
  const counted = results.map((r) => [countsAs(r), r]);
  const present = new Set(counted.map(([v]) => v).filter((v) => v !== null));
  const verdict = VERDICT_ORDER.find((v) => present.has(v)) || "unknown";
  let reasons = counted.filter(([v]) => v === verdict).map(([, r]) => reason(r));
  if (!reasons.length) reasons = counted.filter(([v]) => v === null).map(([, r]) => reason(r));
  return { verdict, reasons };
}

export function overallVerdict(results) {
  return judge(results).verdict;
}

export function rank(key) {
  const i = VERDICT_ORDER.indexOf(key);
  if (i >= 0) return i;
  return { queued: 7, quota_exhausted: 8, not_configured: 9, none: 10 }[key] ?? 11;
}

export function defang(value, kind) {
  let out = String(value);
  if (kind === "url") out = out.replace(/^http/i, "hxxp").replace(/^ftp/i, "fxp");
  if (kind === "email") out = out.replace("@", "[at]");
  if (kind === "ipv6") return out.replace(/:/g, "[:]");
  return out.replace(/\./g, "[.]");
}

// ------------------------------------------------------------------ detail helpers

function present(value) {
  if (value === undefined || value === null || value === "") return false;
  if (Array.isArray(value)) return value.length > 0;
  return true;
}

function show(value) {
  if (value instanceof Node) return value;
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.map(String).join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A definition list of the pairs whose value is present. */
function kv(pairs) {
  const list = el("dl", { class: "kv" });
  for (const [label, value] of pairs) {
    if (!present(value)) continue;
    list.append(el("dt", { text: label }), el("dd", {}, show(value)));
  }
  return list.childElementCount ? list : null;
}

function items(values, cls = "list") {
  if (!present(values)) return null;
  return el(
    "ul",
    { class: cls },
    values.map((v) => el("li", { text: show(v) })),
  );
}

function section(title, ...content) {
  const body = content.flat().filter(Boolean);
  if (!body.length) return null;
  return el("section", {}, el("h4", { text: title }), body);
}

function problems(errors, warnings) {
  const list = el("ul", { class: "list problems" });
  for (const e of errors || []) list.append(el("li", { class: "error", text: `✖ ${e}` }));
  for (const w of warnings || []) list.append(el("li", { class: "warning", text: `▲ ${w}` }));
  return list.childElementCount ? list : null;
}

function isoDay(value) {
  if (!present(value)) return null;
  const text = String(value);
  return /^\d{4}-\d{2}-\d{2}/.test(text) ? text.slice(0, 10) : text;
}

// ------------------------------------------------------------------ declared details

// How a provider's results look is what it declares (GET /api/v1/providers, `details`:
// see shared/lookups/display.py): notes, then titled sections of labelled fields, each
// written in one of the formats below. A provider in CUSTOM (further down) is drawn by its
// own function instead; one that declares nothing gets its data's top-level keys.

const VERDICTS = new Set(["malicious", "suspicious", "harmless", "undetected"]);

/** The value at a dotted `path` of `data` ("" is `data` itself). */
function at(data, path) {
  if (!path) return data;
  let value = data;
  for (const key of path.split(".")) {
    if (value === null || typeof value !== "object" || !Object.hasOwn(value, key)) return undefined;
    value = value[key];
  }
  return value;
}

function plain(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.map(plain).join(", ");
  if (typeof value === "object") {
    return Object.entries(value)
      .map(([k, v]) => `${k}: ${plain(v)}`)
      .join(", ");
  }
  return String(value);
}

/** `template` with `{}` as `value` and `{key}` as its keys (a template-less value: itself). */
function fill(template, value) {
  if (!template) return plain(value);
  return template.replace(/\{([^{}]*)\}/g, (_, key) => plain(key ? at(value, key) : value));
}

function day(value) {
  if (typeof value === "number") {
    const date = new Date(value * 1000);
    return Number.isNaN(date.getTime()) ? String(value) : date.toISOString().slice(0, 10);
  }
  return isoDay(value);
}

function entries(value) {
  if (Array.isArray(value)) return value;
  if (value && typeof value === "object")
    return Object.entries(value).map(([k, v]) => `${k}: ${plain(v)}`);
  return [value];
}

/** Chips of a mapping of counts: the verdicts first (worst first), then the rest. */
function chips(value) {
  const pairs = value && typeof value === "object" ? Object.entries(value) : [];
  const order = ([name]) =>
    VERDICTS.has(name) ? VERDICT_ORDER.indexOf(name) : VERDICT_ORDER.length;
  pairs.sort((a, b) => order(a) - order(b));
  return el(
    "ul",
    { class: "stats" },
    pairs.map(([name, count]) =>
      el(
        "li",
        { class: `chip v-${VERDICTS.has(name) && Number(count) ? name : "unknown"}` },
        `${name} ${plain(count)}`,
      ),
    ),
  );
}

function groups(value) {
  const rows =
    value && typeof value === "object" ? Object.entries(value).filter(([, v]) => present(v)) : [];
  if (!rows.length) return null;
  return el(
    "dl",
    { class: "kv" },
    rows.map(([name, values]) => {
      const list = Array.isArray(values) ? values : [values];
      return [
        el("dt", { text: `${name} (${list.length})` }),
        el(
          "dd",
          {},
          list.map((v) => el("div", { class: "mono", text: plain(v) })),
        ),
      ];
    }),
  );
}

/** One field's value, written in its format (null: nothing to show). */
function formatted(field, value) {
  switch (field.format) {
    case "mono":
      return el("span", { class: "mono", text: fill(field.template, value) });
    case "record":
      return el("div", { class: "record", text: fill(field.template, value) });
    case "list":
      return items(entries(value).map((v) => fill(field.template, v)));
    case "date":
      return day(value);
    case "time":
      return localTime(value);
    case "count":
      return fill(field.template, value);
    case "link": {
      const text = String(value);
      return /^https?:\/\//i.test(text)
        ? el("a", { href: text, rel: "noopener noreferrer", target: "_blank", text })
        : text;
    }
    case "badge":
      return el("span", {
        class: `chip v-${VERDICTS.has(value) ? value : "unknown"}`,
        text: fill(field.template, value),
      });
    case "flag":
      return value === true ? "yes" : null;
    case "score": {
      const score = Number(value);
      return el(
        "span",
        {},
        el("meter", {
          min: "0",
          max: "100",
          low: "25",
          high: "75",
          optimum: "0",
          value: String(score),
          "aria-label": field.label,
        }),
        ` ${score} / 100`,
      );
    }
    case "counts":
      return chips(value);
    case "groups":
      return groups(value);
    default:
      return fill(field.template, value);
  }
}

function has(value) {
  if (!present(value)) return false;
  return typeof value !== "object" || Array.isArray(value) || Object.keys(value).length > 0;
}

function declaredSection(declared, data) {
  if (declared.when && !has(at(data, declared.when))) return null;
  // labelled fields in definition lists, a field without a label on its own, in their order
  const body = [];
  for (const field of declared.fields) {
    const value = at(data, field.path);
    let shown = has(value) ? formatted(field, value) : null;
    if ((shown === null || shown === "") && field.missing) shown = field.missing;
    if (shown === null || shown === "") continue;
    if (field.label) {
      let list = body[body.length - 1];
      if (!(list instanceof HTMLDListElement)) body.push((list = el("dl", { class: "kv" })));
      list.append(el("dt", { text: field.label }), el("dd", {}, shown));
    } else body.push(typeof shown === "string" ? el("p", { class: "empty", text: shown }) : shown);
  }
  return section(declared.title, body);
}

function notes(declared, data) {
  return (declared || [])
    .filter((note) => {
      const value = at(data, note.when);
      return note.equals === null || note.equals === undefined ? has(value) : value === note.equals;
    })
    .map((note) => {
      // {} is the value looked at, {key} another value of the data
      const text = note.text.replace(/\{([^{}]*)\}/g, (_, key) =>
        plain(at(data, key || note.when)),
      );
      return el("p", { class: "note", text });
    });
}

/** A result's data laid out as its provider declares (or, declaring nothing, its keys). */
function declaredDetail(declared, data) {
  let sections = (declared && declared.sections) || [];
  if (!sections.length) {
    sections = [
      {
        title: "Data",
        when: "",
        fields: Object.keys(data).map((key) => ({
          label: key,
          path: key,
          format: "text",
          template: "",
          missing: "",
        })),
      },
    ];
  }
  return [
    ...notes(declared && declared.notes, data),
    ...sections.map((s) => declaredSection(s, data)),
  ];
}

/** The host of an indicator: a URL's host, an e-mail's domain, else the value itself. */
function hostOf(item) {
  if (item.kind === "url") {
    try {
      return new URL(item.value).hostname.replace(/^\[|\]$/g, "");
    } catch (_) {
      return "";
    }
  }
  if (item.kind === "email")
    return item.value.slice(item.value.lastIndexOf("@") + 1).replace(/^\[|\]$/g, "");
  return item.value;
}

/** The provider's own page about `item`, from its declared link template (null: none). */
export function providerLink(provider, item) {
  const template = (PROVIDER_LINKS[provider] || {})[item.kind];
  if (!template || !/^https:\/\//.test(template)) return null;
  const values = { value: item.value, host: hostOf(item) };
  let missing = false;
  const href = template.replace(/\{([^{}]*)\}/g, (_, key) => {
    if (!values[key]) missing = true;
    return encodeURIComponent(values[key] || "");
  });
  if (missing) return null;
  const label = PROVIDER_LABELS[provider] || provider;
  return el("a", {
    class: "provider-link",
    href,
    rel: "noopener noreferrer",
    target: "_blank",
    text: `Open in ${label} ↗`,
  });
}

// ------------------------------------------------------------------ custom renderers

function spfNode(node, depth) {
  if (!node || depth > 12) return null;
  const via = node.via && node.via !== "root" ? ` via ${node.qualifier || ""}${node.via}` : "";
  const lookups = `${node.dns_lookups ?? 0} lookup${node.dns_lookups === 1 ? "" : "s"}`;
  const status = node.status && node.status !== "ok" ? ` · ${node.status}` : "";
  const termErrors = (node.terms || [])
    .filter((t) => t.error)
    .map((t) => el("li", { class: "term-error", text: `✖ ${t.term}: ${t.error}` }));
  const errors = (node.errors || []).map((e) => el("li", { class: "term-error", text: `✖ ${e}` }));
  const children = (node.includes || []).map((child) => spfNode(child, depth + 1)).filter(Boolean);
  return el(
    "li",
    { class: "spf-node" },
    el("div", { class: "spf-title", text: `${node.domain}${via} · ${lookups}${status}` }),
    el("div", { class: "record", text: node.record || "(no SPF record)" }),
    termErrors.length || errors.length ? el("ul", { class: "list" }, termErrors, errors) : null,
    children.length ? el("ul", {}, children) : null,
  );
}

function emailsecDetail(data) {
  if (data.skipped) return [el("p", { text: `Not evaluated: ${data.skipped}.` })];
  if (data.nxdomain) {
    return [
      el("p", {
        text: `${data.domain} does not exist (NXDOMAIN): no mail comes from it, no SPF or DMARC to evaluate.`,
      }),
    ];
  }
  const spf = data.spf || {};
  const dmarc = data.dmarc || {};
  const lookups = spf.dns_lookups ?? 0;
  const spfSection = section(
    "SPF",
    spf.status === "none"
      ? el("p", { class: "empty", text: "No SPF record." })
      : [
          el("div", { class: "record", text: spf.record || "" }),
          kv([
            ["Status", `${spf.status}${spf.valid ? " ✓" : " ✗"}`],
            ["DNS lookups", `${lookups} of 10${lookups > 10 ? " ✗ over the limit" : ""}`],
            ["Void lookups", `${spf.void_lookups ?? 0} of 2`],
            ["All", spf.all],
            ["Passes every sender", spf.pass_all ? true : null],
          ]),
        ],
    problems(spf.errors, spf.warnings),
  );
  const tree = spf.tree && spf.status !== "none" ? spfNode(spf.tree, 0) : null;
  const tags =
    dmarc.tags && Object.keys(dmarc.tags).length
      ? kv(Object.entries(dmarc.tags).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : v]))
      : null;
  const dmarcSection = section(
    "DMARC",
    dmarc.status === "none"
      ? el("p", { class: "empty", text: "No DMARC record." })
      : [
          el("div", { class: "record", text: dmarc.record || (dmarc.records || []).join("\n") }),
          kv([
            ["Found at", dmarc.found_at],
            ["Status", `${dmarc.status}${dmarc.valid ? " ✓" : " ✗"}`],
            ["Policy", dmarc.policy ? `p=${dmarc.policy}` : null],
            ["Subdomains", dmarc.subdomain_policy ? `sp=${dmarc.subdomain_policy}` : null],
            ["Applies here", dmarc.effective_policy],
            ["Percent", dmarc.pct !== null && dmarc.pct !== undefined ? `${dmarc.pct} %` : null],
            ["Alignment", dmarc.adkim ? `DKIM ${dmarc.adkim}, SPF ${dmarc.aspf}` : null],
          ]),
        ],
    problems(dmarc.errors, dmarc.warnings),
  );
  return [
    spfSection,
    tree ? section("SPF include tree", el("ul", { class: "spf-tree" }, tree)) : null,
    dmarcSection,
    section("DMARC tags", tags),
    section(
      "Also published",
      kv([
        ["Domain", data.domain],
        ["MTA-STS", data.mta_sts],
        ["BIMI", data.bimi],
      ]),
    ),
  ];
}

/** Where a failed provider asked, and what each upstream said. */
function errorDetail(data) {
  const attempts = Array.isArray(data.attempts) ? data.attempts : [];
  return [
    section(
      "Asked",
      kv([
        ["Upstream", data.upstream],
        ["Check", data.check],
        ["Domain", data.domain],
        ["Host", data.host],
        ["Address", data.address],
        ["Upstream said", data.message],
        ["Detail", data.detail],
        ["Reason", data.reason],
      ]),
      attempts.length
        ? el(
            "ul",
            { class: "list attempts" },
            attempts.map((a) =>
              el(
                "li",
                {},
                el("strong", { text: `${String(a.protocol || "").toUpperCase()} ` }),
                el("span", { class: "mono", text: a.upstream || "" }),
                `: ${a.error}`,
              ),
            ),
          )
        : null,
    ),
  ];
}

// Providers drawn by their own function rather than by their declaration: the SPF
// include tree is a tree, which fields cannot say.
const CUSTOM = {
  emailsec: emailsecDetail,
};

/** How to turn a provider on: the variable to set and where a free key is had. */
function setupDetail(data) {
  if (!data.variable) return null;
  const signup = typeof data.signup_url === "string" && /^https?:\/\//.test(data.signup_url);
  return el(
    "p",
    { class: "setup-hint" },
    "Set ",
    el("code", { text: data.variable }),
    signup ? " to turn it on: " : " to turn it on.",
    signup
      ? el("a", {
          class: "signup-link",
          href: data.signup_url,
          rel: "noopener noreferrer",
          target: "_blank",
          text: "get a free key ↗",
        })
      : null,
  );
}

/** The detail panel of one result. */
/**
 * The values worth looking up next that the provider found (`result.pivots`), each with
 * what it is; `actions.add(values)` adds them to this job, `actions.open(values)` opens a
 * new job with them (either may be missing).
 */
function pivotSection(pivots, actions) {
  if (!pivots || !pivots.length) return null;
  const buttons = (values, what) =>
    el(
      "span",
      { class: "pivot-actions" },
      actions && actions.add
        ? el(
            "button",
            {
              type: "button",
              class: "btn btn-small",
              "aria-label": `Add ${what} to this job`,
              onclick: () => actions.add(values),
            },
            "Add to this job",
          )
        : null,
      actions && actions.open
        ? el(
            "button",
            {
              type: "button",
              class: "btn btn-small",
              "aria-label": `Open a new job with ${what}`,
              onclick: () => actions.open(values),
            },
            "New job",
          )
        : null,
    );
  const all = pivots.map((p) => p.value);
  return el(
    "section",
    { class: "detail-section pivots" },
    el(
      "h4",
      {},
      "Look up next",
      pivots.length > 1 ? buttons(all, `all ${pivots.length} values`) : null,
    ),
    el(
      "ul",
      { class: "pivot-list" },
      pivots.map((p) =>
        el(
          "li",
          { dataset: { pivot: p.value } },
          el("span", { class: "mono", text: p.value }),
          el("span", { class: "kind", text: p.kind }),
          el("span", { class: "why", text: p.why }),
          buttons([p.value], p.value),
        ),
      ),
    ),
  );
}

export function detail(item, provider, result, actions = null) {
  const view = cellView(result);
  const data = (result && result.data) || {};
  const label = PROVIDER_LABELS[provider] || provider;
  const head = el(
    "div",
    { class: "detail-head" },
    el("h3", {}, `${label} · `, el("span", { class: "mono", text: item.value })),
    el("span", { class: `chip v-${view.key}` }, badge(view.key, view.label)),
    result && result.cached ? el("span", { class: "chip", text: "from cache" }) : null,
    providerLink(provider, item),
  );
  const meta = kv([
    ["Summary", result && result.summary],
    ["Error", result && result.error],
    ["Status", result && result.status !== "done" ? result.status : null],
    ["Waiting for", data.reason],
    ["Until", result && result.retry_at ? localTime(result.retry_at) : null],
    ["Updated", result && result.updated_at ? localTime(result.updated_at) : null],
  ]);
  let body = [];
  if (result && result.status === "error") {
    body = errorDetail(data);
  } else if (result && result.status === "not_configured") {
    body = [setupDetail(data)];
  } else if (result && result.status === "done" && Object.keys(data).length) {
    const render = CUSTOM[provider];
    try {
      body = render ? render(data) : declaredDetail(PROVIDER_DETAILS[provider], data);
    } catch (_) {
      body = [];
    }
  }
  const raw = Object.keys(data).length
    ? el(
        "details",
        {},
        el("summary", { text: "Raw data" }),
        el("pre", { class: "json", text: JSON.stringify(data, null, 2) }),
      )
    : null;
  const sections = [...body, pivotSection(result && result.pivots, actions)].filter(Boolean);
  return el(
    "div",
    { class: "detail" },
    head,
    meta,
    sections.length ? el("div", { class: "detail-sections" }, sections) : null,
    raw,
  );
}
