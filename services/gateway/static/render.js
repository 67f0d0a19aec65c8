// How one lookup result looks: the table cell (colour + words) and its detail panel.
// Every value that came from the user or an upstream is set as text, never as HTML.

import { el, localTime } from "./common.js";

// The providers lookout runs, in column order, and how each is named to people: what
// GET /api/v1/providers says (setProviders), so a new provider needs nothing here.
export let PROVIDERS = [];
export let PROVIDER_LABELS = {};

/** Take the providers from GET /api/v1/providers: [{name, label, kinds}, ...]. */
export function setProviders(providers) {
  PROVIDERS = providers.map((p) => p.name);
  PROVIDER_LABELS = Object.fromEntries(providers.map((p) => [p.name, p.label]));
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

/** {verdict, reasons} of an indicator from its results (each with its provider). */
export function judge(results) {
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

// ------------------------------------------------------------------ providers

function dnsDetail(data) {
  if ("ptr" in data || "address" in data) {
    return [
      section(
        "Reverse DNS",
        kv([
          ["Address", data.address],
          ["PTR", present(data.ptr) ? data.ptr.join(", ") : "none"],
          ["NXDOMAIN", data.nxdomain ? true : null],
        ]),
      ),
    ];
  }
  const records = data.records || {};
  const rows = Object.entries(records).filter(([, values]) => present(values));
  const table = rows.length
    ? el(
        "dl",
        { class: "kv" },
        rows.map(([type, values]) => [
          el("dt", { text: `${type} (${values.length})` }),
          el(
            "dd",
            {},
            values.map((v) => el("div", { class: type === "TXT" ? "record" : "mono", text: v })),
          ),
        ]),
      )
    : el("p", { class: "empty", text: data.nxdomain ? "The name does not exist (NXDOMAIN)." : "No records." });
  const failed = data.failed ? Object.entries(data.failed).map(([t, p]) => `${t}: ${p}`) : [];
  return [
    section("Records", kv([["Host", data.host], ["NXDOMAIN", data.nxdomain ? true : null]]), table),
    section("Failed queries", items(failed)),
  ];
}

function whoisDetail(data) {
  const provenance = kv([
    ["Source", data.source ? String(data.source).toUpperCase() : null],
    ["Server", data.server],
    ["RDAP problem", data.rdap_error],
    [
      "Failed first",
      Array.isArray(data.attempts)
        ? data.attempts.map((a) => `${String(a.protocol).toUpperCase()} ${a.upstream}: ${a.error}`)
        : null,
    ],
  ]);
  if (data.registered === false) {
    return [
      el("p", { text: "Not registered." }),
      section("Asked", provenance),
    ];
  }
  if ("address" in data && !("domain" in data)) {
    const range =
      data.start_address && data.end_address ? `${data.start_address} – ${data.end_address}` : null;
    return [
      section(
        "Network",
        kv([
          ["Name", data.network],
          ["Handle", data.handle],
          ["Range", range],
          ["CIDR", data.cidrs],
          ["ASN", data.asn !== null && data.asn !== undefined ? `AS${data.asn}` : null],
          ["Organisation", data.organization],
          ["Country", data.country],
          ["Abuse contact", data.abuse_email],
        ]),
      ),
      section(
        "Dates",
        kv([
          ["Registered", isoDay(data.created)],
          ["Updated", isoDay(data.updated)],
        ]),
        items(data.status),
      ),
      section("Asked", provenance),
    ];
  }
  const age = data.age_days !== null && data.age_days !== undefined ? ` (${data.age_days} days ago)` : "";
  return [
    section(
      "Registration",
      kv([
        ["Domain", data.domain],
        ["Registrar", data.registrar],
        ["Registered", data.created ? `${isoDay(data.created)}${age}` : null],
        ["Updated", isoDay(data.updated)],
        ["Expires", isoDay(data.expires)],
        ["Registrant country", data.registrant_country],
        ["Abuse contact", data.abuse_email],
      ]),
    ),
    section("Name servers", items(data.nameservers)),
    section("Status", items(data.status)),
    section("Asked", provenance),
  ];
}

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
  const tags = dmarc.tags && Object.keys(dmarc.tags).length
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

function vtDetail(data) {
  if (data.found === false) return [el("p", { text: "Not known to VirusTotal." })];
  const stats = data.stats || {};
  const chips = ["malicious", "suspicious", "harmless", "undetected", "timeout"]
    .filter((k) => k in stats)
    .map((k) =>
      el(
        "li",
        { class: `chip v-${k === "timeout" || !stats[k] ? "unknown" : k}` },
        `${k} ${stats[k]}`,
      ),
    );
  const votes = data.total_votes
    ? `${data.total_votes.harmless ?? 0} harmless, ${data.total_votes.malicious ?? 0} malicious`
    : null;
  const categories = data.categories && typeof data.categories === "object"
    ? [...new Set(Object.values(data.categories).map(String))]
    : null;
  return [
    section(
      "Last analysis",
      el("ul", { class: "stats", "aria-label": "Engine verdicts" }, chips),
      kv([
        ["Analysed", present(data.last_analysis_date) ? localTime(data.last_analysis_date) : null],
        ["Reputation", data.reputation],
        ["Community votes", votes],
      ]),
    ),
    section("Flagged by", items(data.flagged_by)),
    section(
      "About",
      kv([
        ["AS owner", data.as_owner],
        ["ASN", data.asn],
        ["Network", data.network],
        ["Country", data.country],
        ["Registrar", data.registrar],
        ["Created", present(data.creation_date) ? localTime(data.creation_date) : null],
        ["Final URL", data.last_final_url],
        ["Title", data.title],
        ["Categories", categories],
        ["Tags", data.tags],
      ]),
    ),
  ];
}

function abuseDetail(data) {
  if (data.skipped) return [el("p", { text: `Not looked up: ${data.skipped}.` })];
  const score = Number(data.abuseConfidenceScore ?? 0);
  const meter = el("meter", {
    min: "0",
    max: "100",
    low: "25",
    high: "75",
    optimum: "0",
    value: String(score),
    "aria-label": "Abuse confidence score",
  });
  return [
    section(
      "Report",
      el("p", {}, meter, ` ${score} / 100 confidence of abuse`),
      kv([
        ["Reports", data.totalReports],
        ["Distinct reporters", data.numDistinctUsers],
        ["Last reported", present(data.lastReportedAt) ? localTime(data.lastReportedAt) : null],
        ["Tor exit", data.isTor],
        ["Whitelisted", data.isWhitelisted],
      ]),
    ),
    section(
      "Network",
      kv([
        ["ISP", data.isp],
        ["Usage", data.usageType],
        ["Country", data.countryCode],
        ["Domain", data.domain],
        ["Host names", data.hostnames],
        ["Public", data.isPublic],
        ["Quota left today", data.quota_remaining],
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

const DETAILS = {
  dns: dnsDetail,
  whois: whoisDetail,
  emailsec: emailsecDetail,
  virustotal: vtDetail,
  abuseipdb: abuseDetail,
};

/** The detail panel of one result. */
export function detail(item, provider, result) {
  const view = cellView(result);
  const data = (result && result.data) || {};
  const label = PROVIDER_LABELS[provider] || provider;
  const head = el(
    "div",
    { class: "detail-head" },
    el("h3", {}, `${label} · `, el("span", { class: "mono", text: item.value })),
    el("span", { class: `chip v-${view.key}` }, badge(view.key, view.label)),
    result && result.cached ? el("span", { class: "chip", text: "from cache" }) : null,
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
  } else if (result && result.status === "done" && Object.keys(data).length) {
    const render = DETAILS[provider];
    try {
      body = render ? render(data) : [];
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
  const sections = body.filter(Boolean);
  return el(
    "div",
    { class: "detail" },
    head,
    meta,
    sections.length ? el("div", { class: "detail-sections" }, sections) : null,
    raw,
  );
}
