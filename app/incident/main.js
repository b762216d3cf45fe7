// The incident view (ui://meshes/incident), shown by an MCP Apps host beside a triage_failures result.
//
// It renders only what the server's tools return (already redacted) and builds every node with
// textContent: a payload, a cause or a receiver's reason phrase is text, never markup. Every action goes
// through the host's tool bridge to the server's own tools (and the server's own confirmations).
import { App, applyDocumentTheme, applyHostStyleVariables } from "@modelcontextprotocol/ext-apps";

const TIMELINE_TOOL = "triage_timeline"; // app-only: per-bucket counts the model never needs
const WAIT_SECONDS = 60;
const MAX_RETRIES = 10000; // retry_failed's own ceiling
// The triage call's window and filters, passed on to every call the view makes for the same incident.
const SCOPE = ["workspace", "event", "connection", "rule", "since", "until", "max_events"];
// Distinct in both themes; a group keeps its colour (by start order) in the chart, the legend and its card.
const PALETTE = {
  light: ["#d1495b", "#2e86ab", "#e39b17", "#6a4c93", "#2a9d8f", "#8d6e63", "#c2185b", "#546e7a"],
  dark: ["#ff7b8a", "#64b5f6", "#ffc857", "#b39ddb", "#4dd0c4", "#bcaaa4", "#f48fb1", "#90a4ae"],
};

const state = { args: {}, result: null, timeline: null, timelineError: null, theme: "light", busy: false };
const view = document.getElementById("view");
const announcer = document.getElementById("announce");

// --- DOM helpers: text nodes only --------------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "style") for (const [k, v] of Object.entries(value)) node.style.setProperty(k, v);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

// Replaces a node's children; skips the absent ones (the DOM's own replaceChildren would print "null").
function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  append(node, children);
  return node;
}

function announce(text) {
  announcer.textContent = text;
}

// --- formatting ------------------------------------------------------------------------------------

function moment(iso) {
  const at = Date.parse(iso);
  return Number.isNaN(at) ? null : at;
}

function when(iso) {
  const at = moment(iso);
  if (at === null) return iso ? String(iso) : "—";
  return new Date(at).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function ago(iso) {
  const at = moment(iso);
  if (at === null) return "";
  const minutes = Math.round((Date.now() - at) / 60000);
  if (minutes < 1) return "just now";
  if (minutes < 90) return `${minutes} min ago`;
  const hours = minutes / 60;
  if (hours < 48) return `${Math.round(hours)} h ago`;
  return `${Math.round(hours / 24)} d ago`;
}

const count = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : String(n ?? 0));
const plural = (n, one, many) => `${count(n)} ${n === 1 ? one : many}`;

function groupTitle(group) {
  const conn = group.connection || {};
  const type = conn.type || "connection";
  return conn.name ? `${conn.name} (${type})` : `${type} ${conn.id || ""}`.trim();
}

function text(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

// --- data ------------------------------------------------------------------------------------------

// Groups in the order their causes started: the first thing to break comes first.
function groupsByStart(result) {
  const groups = [...(result.groups || [])];
  return groups.sort((a, b) => (moment(a.first_seen) ?? Infinity) - (moment(b.first_seen) ?? Infinity));
}

function colourOf(result) {
  const palette = PALETTE[state.theme] || PALETTE.light;
  const colours = new Map();
  groupsByStart(result).forEach((g, i) => colours.set(g.key, palette[i % palette.length]));
  return colours;
}

function scope() {
  const args = {};
  for (const name of SCOPE) if (state.args[name] !== undefined && state.args[name] !== null) args[name] = state.args[name];
  return args;
}

// A tool's answer: its structured content, or an Error with the tool's own words.
async function call(name, args, options) {
  const result = await app.callServerTool({ name, arguments: args }, { timeout: 300000, ...options });
  const words = (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
  if (result.isError) throw new Error(words || `${name} failed`);
  if (result.structuredContent) return result.structuredContent;
  try {
    return JSON.parse(words);
  } catch {
    return { text: words };
  }
}

async function loadTimeline() {
  state.timeline = null;
  state.timelineError = null;
  if (!(state.result?.groups || []).length) return;
  try {
    state.timeline = await call(TIMELINE_TOOL, scope());
  } catch (error) {
    state.timelineError = error.message;
  }
}

async function show(result) {
  state.result = result;
  render();
  await loadTimeline();
  renderTimeline();
}

// --- rendering -------------------------------------------------------------------------------------

function render() {
  const result = state.result;
  view.setAttribute("aria-busy", "false");
  if (!result) return;
  const groups = groupsByStart(result);
  const findings = result.findings || [];
  fill(view, 
    el(
      "div",
      { class: "bar" },
      el("div", {}, el("h1", {}, "Failing deliveries"), el("p", { class: "summary", id: "summary" }, summaryLine(result))),
      el("button", { type: "button", id: "refresh", onclick: refresh, "aria-describedby": "summary" }, "Refresh"),
    ),
    groups.length ? el("section", { id: "timeline", "aria-label": "Timeline" }) : null,
    groups.length
      ? el(
          "section",
          { "aria-labelledby": "groups-title" },
          el("h2", { id: "groups-title" }, `Groups, in the order they started (${groups.length})`),
          el("div", { class: "cards" }, groups.map((g) => card(g, colourOf(result).get(g.key)))),
        )
      : null,
    findings.length ? findingsSection(findings) : null,
  );
  renderTimeline();
}

function summaryLine(result) {
  const parts = [];
  const groups = result.groups || [];
  if (groups.length) {
    parts.push(`${plural(result.failing ?? 0, "failing delivery", "failing deliveries")} in ${plural(result.count ?? groups.length, "group", "groups")}`);
    if (result.groups_omitted) parts.push(`${count(result.groups_omitted)} smaller groups not shown`);
  } else {
    parts.push(result.summary || "No failing deliveries in the window.");
  }
  if ((result.findings || []).length) parts.push(plural(result.findings.length, "silent finding", "silent findings"));
  parts.push(`${plural(result.events_scanned ?? 0, "event", "events")} scanned`);
  const window = result.window || {};
  if (window.from || window.to) {
    const from = moment(window.from) === null ? window.from : when(window.from);
    const to = moment(window.to) === null ? window.to : when(window.to);
    parts.push(`window ${from} → ${to}${window.complete === false ? " (partial: the scan stopped early)" : ""}`);
  }
  return parts.join(" · ");
}

function renderTimeline() {
  const section = document.getElementById("timeline");
  if (!section || !state.result) return;
  const result = state.result;
  const groups = groupsByStart(result);
  const colours = colourOf(result);
  const starts = el(
    "ol",
    { class: "starts", "aria-label": "When each cause started" },
    groups.map((g, i) =>
      el(
        "li",
        {},
        el("span", { class: "swatch", style: { background: colours.get(g.key) }, "aria-hidden": "true" }),
        `${i + 1}. ${groupTitle(g)} failing since ${when(g.first_seen)} (${ago(g.first_seen)})`,
      ),
    ),
  );
  const figure = el("figure", {}, starts);
  if (state.timeline) figure.append(...chart(state.timeline, groups, colours));
  else if (state.timelineError) figure.append(el("p", { class: "muted" }, `The chart is not available: ${state.timelineError}`));
  else figure.append(el("p", { class: "muted" }, "Loading the timeline…"));
  fill(section, figure);
}

function chart(timeline, groups, colours) {
  const buckets = timeline.buckets || [];
  const series = new Map((timeline.groups || []).map((g) => [g.key, g.counts || []]));
  const shown = groups.filter((g) => series.has(g.key));
  if (!buckets.length || !shown.length) return [el("p", { class: "muted" }, "No failures to chart in the window.")];
  const W = 720, H = 180, left = 36, right = 8, top = 10, bottom = 22;
  const innerW = W - left - right, innerH = H - top - bottom;
  const totals = buckets.map((_, b) => shown.reduce((sum, g) => sum + (series.get(g.key)[b] || 0), 0));
  const peak = Math.max(1, ...totals);
  const barW = innerW / buckets.length;
  const from = moment(timeline.from), to = moment(timeline.to);
  const xOf = (iso) => {
    const at = moment(iso);
    if (at === null || from === null || to === null || to <= from) return left;
    return left + Math.min(1, Math.max(0, (at - from) / (to - from))) * innerW;
  };
  const caption = `Failed deliveries per ${minutes(timeline.bucket_seconds)} from ${when(timeline.from)} to ${when(timeline.to)}, stacked by group. ${shown
    .map((g) => `${groupTitle(g)}: ${count(sum(series.get(g.key)))} since ${when(g.first_seen)}`)
    .join("; ")}.`;
  const image = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-caption" });
  image.append(
    svg("line", { class: "axis", x1: left, y1: top + innerH, x2: W - right, y2: top + innerH }),
    svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, count(peak)),
    svg("text", { x: left - 4, y: top + innerH, "text-anchor": "end" }, "0"),
    svg("text", { x: left, y: H - 6 }, when(timeline.from)),
    svg("text", { x: W - right, y: H - 6, "text-anchor": "end" }, when(timeline.to)),
  );
  buckets.forEach((bucket, b) => {
    let base = top + innerH;
    for (const g of shown) {
      const n = series.get(g.key)[b] || 0;
      if (!n) continue;
      const height = (n / peak) * innerH;
      base -= height;
      image.append(
        svg(
          "rect",
          { x: left + b * barW + 0.5, y: base, width: Math.max(1, barW - 1), height, fill: colours.get(g.key) },
          svg("title", {}, `${groupTitle(g)}: ${count(n)} from ${when(bucket)}`),
        ),
      );
    }
  });
  // Where each cause began: a marker per group, numbered as in the list above the chart.
  shown.forEach((g, i) => {
    const x = xOf(g.first_seen);
    image.append(
      svg("line", { x1: x, y1: top, x2: x, y2: top + innerH, stroke: colours.get(g.key), "stroke-width": 2, "stroke-dasharray": "4 3" }),
      svg("text", { class: "start-label", x: x + 3, y: top + 10 + i * 12 }, `${i + 1}`),
    );
  });
  const table = el(
    "details",
    { class: "table" },
    el("summary", {}, "Counts as a table"),
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "From"), shown.map((g) => el("th", { scope: "col" }, groupTitle(g))))),
      el(
        "tbody",
        {},
        buckets
          .map((bucket, b) => [bucket, b])
          .filter(([, b]) => totals[b] > 0)
          .map(([bucket, b]) =>
            el("tr", {}, el("th", { scope: "row" }, when(bucket)), shown.map((g) => el("td", {}, count(series.get(g.key)[b] || 0)))),
          ),
      ),
    ),
  );
  return [image, el("figcaption", { id: "chart-caption", class: "muted" }, caption), table];
}

const sum = (values) => values.reduce((a, b) => a + (b || 0), 0);
const minutes = (seconds) => (seconds >= 3600 && seconds % 3600 === 0 ? `${seconds / 3600} h` : `${Math.round(seconds / 60)} min`);

function card(group, colour) {
  const conn = group.connection || {};
  const id = `group-${group.key}`;
  const state_ = conn.state || (conn.active === false ? "inactive" : conn.active ? "active" : null);
  const fixIn = group.fix_in;
  const result = el("div", { class: "result", role: "status", "aria-live": "polite" });
  const counts = el(
    "div",
    { class: "counts" },
    el("strong", {}, count(group.failed ?? 0)),
    " failed",
    group.retrying ? ` · ${count(group.retrying)} retrying` : null,
  );
  const node = el(
    "article",
    { class: "card", id, "aria-labelledby": `${id}-title`, "data-group": group.key, style: { "--stripe": colour } },
    el(
      "header",
      {},
      el("h3", { id: `${id}-title` }, groupTitle(group)),
      state_ ? el("span", { class: `pill ${conn.active === false ? "bad" : "good"}` }, state_) : null,
    ),
    el(
      "p",
      { class: "muted mono" },
      [group.outcome_code, group.http_status ? `HTTP ${group.http_status}` : null, group.event, `group ${group.key}`].filter(Boolean).join(" · "),
    ),
    el("p", { class: "cause" }, group.cause || ""),
    counts,
    el(
      "dl",
      { class: "facts" },
      el("dt", {}, "First seen"),
      el("dd", {}, `${when(group.first_seen)} (${ago(group.first_seen)})`),
      el("dt", {}, "Last seen"),
      el("dd", {}, `${when(group.last_seen)} (${ago(group.last_seen)})`),
    ),
    fixIn
      ? el("div", { class: "fix in" }, el("strong", {}, "Fix already in: "), text(fixIn.what ?? ""), fixIn.at ? ` (${when(fixIn.at)})` : null)
      : el(
          "div",
          { class: "fix" },
          el("strong", {}, "Fix: "),
          group.fix || "—",
          (group.calls || []).length ? el("ul", { "aria-label": "Calls that make the fix" }, group.calls.map((c) => el("li", {}, el("code", {}, c)))) : null,
        ),
    untrusted(group),
    // The server offers the group's retry (`then`) only when retry_failed is registered and can help.
    group.then
      ? el(
          "div",
          { class: "actions" },
          el("button", { type: "button", class: "dry-run", onclick: () => dryRun(group, result) }, "Dry run"),
          el("button", { type: "button", class: "primary retry", onclick: () => retry(group, node, counts, result) }, "Retry this group"),
        )
      : null,
    result,
    samples(group),
  );
  return node;
}

// Fields the server marks as coming from outside (payloads, a receiver's answer): shown as text, labelled.
function untrusted(item) {
  const keys = Object.keys(item).filter((k) => k.startsWith("untrusted_"));
  if (!keys.length) return null;
  return keys.map((key) =>
    el("div", { class: "untrusted" }, el("div", { class: "label" }, `${key.replace(/^untrusted_/, "").replaceAll("_", " ")} (from outside, shown as text)`), el("pre", {}, text(item[key]))),
  );
}

function samples(group) {
  const ids = group.samples || [];
  if (!ids.length) return null;
  return el(
    "div",
    { class: "samples" },
    el("span", { class: "muted" }, "Sample events:"),
    ids.map((eventId) => {
      const panel = el("div", { class: "diagnosis", hidden: true, id: `diag-${group.key}-${eventId}` });
      const button = el(
        "button",
        { type: "button", class: "link sample", "aria-expanded": "false", "aria-controls": panel.id, "data-event": eventId, "aria-label": `Diagnose event ${eventId}` },
        eventId.slice(0, 8),
      );
      button.addEventListener("click", () => toggleDiagnosis(eventId, button, panel));
      return el("span", {}, button, panel);
    }),
  );
}

async function toggleDiagnosis(eventId, button, panel) {
  const open = button.getAttribute("aria-expanded") === "true";
  button.setAttribute("aria-expanded", String(!open));
  panel.hidden = open;
  if (open || panel.dataset.loaded) return;
  fill(panel, el("p", { class: "muted" }, `Diagnosing ${eventId}…`));
  try {
    const diagnosis = await call("diagnose_event", { event_id: eventId });
    panel.dataset.loaded = "1";
    const payload = el("div", {});
    fill(panel, 
      el("p", { class: "mono" }, `event ${eventId}`),
      el("p", {}, diagnosis.summary || ""),
      el(
        "ul",
        {},
        (diagnosis.deliveries || []).map((d) =>
          el(
            "li",
            {},
            el("strong", {}, `${d.type || d.rule}: ${d.status}`),
            d.outcome_code ? ` (${d.outcome_code}${d.attempts ? `, ${plural(d.attempts, "attempt", "attempts")}` : ""})` : null,
            d.cause ? el("div", {}, d.cause) : null,
            d.fix ? el("div", { class: "muted" }, d.fix) : null,
            untrusted(d),
          ),
        ),
      ),
      untrusted(diagnosis),
      el("button", { type: "button", class: "show-payload", onclick: (e) => showPayload(eventId, e.currentTarget, payload) }, "Show payload"),
      payload,
    );
  } catch (error) {
    fill(panel, el("p", { class: "result error" }, error.message));
  }
}

async function showPayload(eventId, button, target) {
  button.disabled = true;
  try {
    const event = await call("get_event", { event_id: eventId, include_payload: true });
    fill(target, untrusted({ untrusted_payload: event.untrusted_payload ?? {} }));
    button.remove();
  } catch (error) {
    fill(target, el("p", { class: "result error" }, error.message));
    button.disabled = false;
  }
}

function retryArgs(group, extra) {
  const size = (group.failed ?? 0) + (group.retrying ?? 0);
  return { ...scope(), group: group.key, event: group.event, max_retries: Math.min(MAX_RETRIES, Math.max(1, size)), ...extra };
}

function busy(node, on) {
  for (const button of node.querySelectorAll(".actions button")) button.disabled = on;
}

async function dryRun(group, result) {
  const node = result.closest(".card");
  busy(node, true);
  result.className = "result";
  fill(result, el("span", { class: "muted" }, "Counting…"));
  try {
    const answer = await call("retry_failed", retryArgs(group, { dry_run: true }));
    fill(result, 
      `Dry run: would retry ${plural(answer.would_retry ?? answer.matched ?? 0, "delivery", "deliveries")}`,
      answer.skipped ? ` (${count(answer.skipped)} already completed or canceled, skipped)` : "",
      ". Nothing was sent.",
    );
  } catch (error) {
    result.className = "result error";
    fill(result, error.message);
  } finally {
    busy(node, false);
  }
}

async function retry(group, node, counts, result) {
  busy(node, true);
  result.className = "result";
  const bar = el("progress", { "aria-label": `Retrying ${groupTitle(group)}` });
  const line = el("div", { class: "muted" }, `Retrying ${groupTitle(group)}, then waiting up to ${WAIT_SECONDS} s for the outcomes…`);
  fill(result, bar, line);
  announce(`Retrying ${groupTitle(group)}`);
  try {
    const answer = await call("retry_failed", retryArgs(group, { wait_seconds: WAIT_SECONDS }), {
      onprogress: (p) => {
        if (typeof p.total === "number" && p.total > 0) {
          bar.max = p.total;
          bar.value = p.progress;
        }
        if (p.message) line.textContent = p.message;
      },
    });
    counts.replaceWith(outcome(answer));
    node.classList.add("retried");
    fill(result, answer.next ? el("span", { class: "muted" }, `Next: ${answer.next}`) : "");
    announce(`${groupTitle(group)}: retried ${count(answer.retried ?? 0)}`);
  } catch (error) {
    result.className = "result error";
    fill(result, error.message);
    announce(`${groupTitle(group)}: ${error.message}`);
  } finally {
    busy(node, false);
  }
}

function outcome(answer) {
  const settled = answer.outcome || {};
  const parts = [`Retried ${count(answer.retried ?? 0)}`];
  if (answer.already_due) parts.push(`${count(answer.already_due)} already due`);
  if (answer.skipped) parts.push(`${count(answer.skipped)} skipped`);
  if (answer.outcome) {
    parts.push(`${count(settled.delivered ?? 0)} delivered`);
    parts.push(`${count(settled.still_failing ?? 0)} still failing`);
    if (settled.in_progress) parts.push(`${count(settled.in_progress)} still in progress after ${settled.waited_s} s`);
  }
  const problems = [...(answer.failed_to_retry || []), ...(answer.unknown || [])].map((r) => `${r.reason} (${count(r.count)})`);
  return el(
    "div",
    { class: "counts outcome", role: "status" },
    el("strong", {}, "Outcome: "),
    parts.join(" · "),
    settled.top_cause ? el("div", {}, `Top cause now: ${settled.top_cause}`) : null,
    problems.length ? el("div", { class: "result error" }, `Not retried: ${problems.join("; ")}`) : null,
  );
}

function findingsSection(findings) {
  const known = new Set(["kind", "event", "count", "first_seen", "last_seen", "reason", "fix", "calls", "then"]);
  return el(
    "section",
    { "aria-labelledby": "findings-title" },
    el("h2", { id: "findings-title" }, `Silent findings (${findings.length})`),
    el(
      "ul",
      { class: "findings" },
      findings.map((f) =>
        el(
          "li",
          { class: "finding" },
          el("h3", {}, `${String(f.kind ?? "finding").replaceAll("_", " ")}${f.event ? `: ${f.event}` : ""}`),
          el("p", { class: "muted" }, [f.count !== undefined ? plural(f.count, "event", "events") : null, f.first_seen ? `first ${when(f.first_seen)}` : null, f.last_seen ? `last ${when(f.last_seen)}` : null].filter(Boolean).join(" · ")),
          f.reason ? el("p", {}, f.reason) : null,
          f.fix ? el("div", { class: "fix" }, el("strong", {}, "Fix: "), f.fix, (f.calls || []).length ? el("ul", {}, f.calls.map((c) => el("li", {}, el("code", {}, c)))) : null) : null,
          f.then ? el("p", {}, el("strong", {}, "Then: "), el("code", {}, text(f.then))) : null,
          untrusted(f),
          facts(Object.entries(f).filter(([k]) => !known.has(k) && !k.startsWith("untrusted_"))),
        ),
      ),
    ),
  );
}

function facts(entries) {
  if (!entries.length) return null;
  return el("dl", { class: "facts" }, entries.map(([k, v]) => [el("dt", {}, k.replaceAll("_", " ")), el("dd", {}, text(v))]));
}

async function refresh() {
  const button = document.getElementById("refresh");
  if (button) button.disabled = true;
  announce("Refreshing the triage");
  try {
    await show(await call("triage_failures", scope()));
    announce("Triage refreshed");
  } catch (error) {
    announce(error.message);
    const summary = document.getElementById("summary");
    if (summary) summary.textContent = `Refresh failed: ${error.message}`;
  } finally {
    const again = document.getElementById("refresh");
    if (again) again.disabled = false;
  }
}

// --- host ------------------------------------------------------------------------------------------

function applyContext(context) {
  if (!context) return;
  if (context.theme) {
    state.theme = context.theme === "dark" ? "dark" : "light";
    applyDocumentTheme(state.theme);
  }
  if (context.styles?.variables) applyHostStyleVariables(context.styles.variables);
  const width = context.containerDimensions?.maxWidth ?? context.containerDimensions?.width;
  if (typeof width === "number") document.documentElement.style.setProperty("--max-width", `${width}px`);
}

const app = new App({ name: "meshes-incident", version: "1" }, {}, { autoResize: true });
app.ontoolinput = (params) => {
  state.args = params.arguments || {};
};
app.ontoolresult = (result) => {
  if (result.isError) {
    const words = (result.content || []).map((c) => c.text || "").join("\n");
    fill(view, el("p", { class: "result error" }, words || "triage_failures failed"));
    return;
  }
  show(result.structuredContent || fromText(result) || {});
};

// A host that passes on only the text still hands over the whole result: the text is its JSON.
function fromText(result) {
  const words = (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join("");
  try {
    const parsed = JSON.parse(words);
    return parsed && typeof parsed === "object" ? parsed : null;
  } catch {
    return null;
  }
}
app.onhostcontextchanged = (context) => {
  applyContext(context);
  if (context.theme && state.result) recolour();
};

// A theme change keeps every card as it is (an outcome shown stays shown): only the colours follow.
function recolour() {
  const colours = colourOf(state.result);
  for (const node of view.querySelectorAll("article.card")) node.style.setProperty("--stripe", colours.get(node.dataset.group));
  renderTimeline();
}
app.connect().then(
  () => applyContext(app.getHostContext()),
  (error) => fill(view, el("p", { class: "result error" }, `Could not reach the host: ${error.message}`)),
);
