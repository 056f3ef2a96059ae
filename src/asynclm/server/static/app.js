// asynclm live page: start sessions, follow their event streams, draw the timeline, send
// messages mid-generation. Vanilla JS, no external assets.
"use strict";

const $ = (id) => document.getElementById(id);
// The token comes in the URL's fragment (never sent to the server); it is kept in memory only,
// sent as a bearer header, and traded once for an HttpOnly cookie that opens event streams
// (EventSource cannot set headers, and a token in a URL would reach access logs).
const token = new URLSearchParams(location.hash.slice(1)).get("token");
let streamCookie = null;  // the pending or done POST /auth/cookie
function streamAuth(renew) {
  if (!token) return Promise.resolve();
  if (!streamCookie || renew) streamCookie = api("POST", "/auth/cookie").catch((e) => { streamCookie = null; throw e; });
  return streamCookie;
}
const state = { sessions: new Map(), current: null };

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new Error((data && data.error) || res.statusText);
  return data;
}

// -- one session's model -------------------------------------------------------------------
function newView(info) {
  return { info, events: [], text: [], calls: new Map(), decode: [], markers: [],
           end: 0, status: info.status, source: null, conv: [] };
}

function apply(v, e) {
  v.events.push(e);
  v.end = Math.max(v.end, e.t || 0);
  switch (e.type) {
    case "session.queued": v.conv.push({ who: "user", text: e.prompt }); break;
    case "session.started": v.status = "running"; v.decode.push([e.t, e.t]); break;
    case "text.delta": busy(v, e.t); pushText(assistant(v), e.text); break;
    case "trap": {  // sent when the wait ends: the model was idle for waited_s
      const last = v.decode[v.decode.length - 1];
      if (last) last[1] = Math.max(last[0], e.t - e.waited_s);
      v.decode.push([e.t, e.t]);
      break;
    }
    case "call.delta": {  // the call being written, shown as it streams
      busy(v, e.t);
      const parts = assistant(v).parts, p = parts[parts.length - 1];
      if (p && p.kind === "call writing") p.text += e.delta; else parts.push({ kind: "call writing", text: e.delta });
      break;
    }
    case "call.emitted": {
      busy(v, e.t);
      v.calls.set(e.call_id, { id: e.call_id, fn: e.fn, args: e.args || {}, start: null, end: null,
                               status: "emitted", partials: [], ticks: [] });
      const parts = assistant(v).parts;
      if (parts.length && parts[parts.length - 1].kind === "call writing") parts.pop();
      parts.push({ kind: "call", text: `${e.call_id} → ${e.fn}` });
      break;
    }
    case "call.started": { const c = v.calls.get(e.call_id); if (c) { c.start = e.t; c.status = "running"; } break; }
    case "call.progress": {  // progress of a running call (not shown to the model)
      const c = v.calls.get(e.call_id);
      if (c) { c.progress = e.message; c.ticks.push({ t: e.t, kind: "progress", label: e.message }); }
      break;
    }
    case "call.partial": {  // a partial result: goes to the model under the call's delivery mode
      const c = v.calls.get(e.call_id);
      if (c) { const n = c.partials.length + 1;  // the call's n-th partial result
               c.partials.push({ n, value: e.value, t: e.t });
               c.ticks.push({ t: e.t, kind: "partial", label: `partial ${n}: ${e.value}` }); }
      break;
    }
    case "call.completed": {
      const c = v.calls.get(e.call_id) || { id: e.call_id, fn: e.fn };
      c.start = e.started_at ?? c.start ?? e.t; c.end = e.t; c.status = e.status;
      c.value = e.value; c.error = e.error; c.partials = c.partials || []; c.ticks = c.ticks || [];
      v.calls.set(e.call_id, c);
      break;
    }
    case "interrupt.injected": {
      busy(v, e.t);
      const msgs = e.messages || [], partials = (e.partials || []).map((id) => "partial:" + id);
      v.markers.push({ t: e.t, kind: msgs.length ? "message" : "result", label: [...e.call_ids, ...msgs, ...partials].join(",") });
      assistant(v).parts.push({ kind: msgs.length ? "intr message" : "intr",
                                text: "⚡ " + [...e.call_ids, ...partials, ...msgs.map((m) => "msg:" + m)].join(", ") });
      break;
    }
    case "message.queued": v.conv.push({ who: e.sender, text: e.text }); v.conv.push(null); break;
    case "done": busy(v, e.t); v.status = "done"; break;
    case "session.end": v.status = e.status + (e.error ? ` (${e.error})` : "")
      + (e.stop_reason ? `, ${e.stop_reason}` : ""); v.ended = true; break;
  }
}

// The model decodes from its start to its end except while it waits in a trap.
function busy(v, t) {
  const last = v.decode[v.decode.length - 1];
  if (last) last[1] = Math.max(last[1], t); else v.decode.push([t, t]);
}

function assistant(v) {
  let last = v.conv[v.conv.length - 1];
  if (!last || last.who !== "assistant") { last = { who: "assistant", parts: [] }; v.conv.push(last); }
  return last;
}
function pushText(block, s) {
  const p = block.parts[block.parts.length - 1];
  if (p && p.kind === "text") p.text += s; else block.parts.push({ kind: "text", text: s });
}

// -- rendering -------------------------------------------------------------------------------
let dirty = false;
function redraw() { if (!dirty) { dirty = true; requestAnimationFrame(() => { dirty = false; render(); }); } }

function render() {
  renderList();
  const v = state.sessions.get(state.current);
  if (!v) return;
  $("status").textContent = `${v.info.id} · ${v.info.engine}${v.info.model ? " " + v.info.model : ""} · ${v.info.strategy} · ${v.status}`;
  $("cancel").disabled = !!v.ended;
  $("send").disabled = !!v.ended;
  $("stop-that").disabled = !!v.ended;
  renderConversation(v);
  renderCalls(v);
  renderTimeline(v);
}

// The clock of the session's stream: its last event's time plus what has passed since.
function nowOf(v) { return v.ended ? v.end : Math.max(v.end, (performance.now() - v.openedAt) / 1000 + v.offset); }

// One line per call: running ones with their elapsed time, last progress and last partial result.
function renderCalls(v) {
  const ul = $("calls"), now = nowOf(v);
  ul.textContent = "";
  for (const c of v.calls.values()) {
    const li = document.createElement("li");
    const running = c.end == null;
    li.className = "call " + (running ? (c.start == null ? "waiting" : "running") : c.status);
    li.dataset.call = c.id; li.dataset.status = running ? (c.start == null ? "waiting" : "running") : c.status;
    const args = Object.entries(c.args || {}).map(([k, a]) => `${k}=${a}`).join(", ");
    const head = document.createElement("b"); head.textContent = `${c.id} ${c.fn}(${args})`.slice(0, 80);
    li.appendChild(head);
    const st = document.createElement("span"); st.className = "state";
    const elapsed = c.start == null ? "" : ` ${((running ? now : c.end) - c.start).toFixed(1)} s`;
    st.textContent = (running ? (c.start == null ? "waiting" : "running") : c.status) + elapsed;
    li.appendChild(st);
    if (c.progress) { const p = document.createElement("span"); p.className = "progress"; p.textContent = "progress: " + c.progress; li.appendChild(p); }
    const last = c.partials && c.partials[c.partials.length - 1];
    if (last) { const p = document.createElement("span"); p.className = "partial"; p.textContent = `partial ${last.n}: ${last.value}`; li.appendChild(p); }
    if (!running && (c.value != null || c.error)) {
      const r = document.createElement("span"); r.className = "result"; r.textContent = "→ " + (c.error || c.value); li.appendChild(r);
    }
    ul.appendChild(li);
  }
}

function renderList() {
  const ul = $("sessions");
  ul.textContent = "";
  for (const [id, v] of state.sessions) {
    const li = document.createElement("li");
    li.className = id === state.current ? "active" : "";
    li.textContent = (v.info.agent ? v.info.agent + " · " : "") + id;
    const st = document.createElement("span"); st.className = "st"; st.textContent = v.ended ? "ended" : v.status;
    li.appendChild(st);
    li.onclick = () => { state.current = id; render(); };
    ul.appendChild(li);
  }
}

function renderConversation(v) {
  const box = $("conversation");
  const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 20;
  box.textContent = "";
  for (const m of v.conv) {
    if (!m) continue;
    const div = document.createElement("div");
    div.className = "msg " + (m.who === "assistant" ? "assistant" : "user");
    const who = document.createElement("span"); who.className = "who"; who.textContent = m.who;
    div.appendChild(who);
    if (m.parts) {
      for (const p of m.parts) {
        if (p.kind === "text") div.appendChild(document.createTextNode(p.text));
        else { const s = document.createElement("span"); s.className = "chip " + p.kind; s.textContent = p.text; div.appendChild(s); }
      }
    } else div.appendChild(document.createTextNode(m.text));
    box.appendChild(div);
  }
  if (atBottom) box.scrollTop = box.scrollHeight;
}

const NS = "http://www.w3.org/2000/svg";
function el(name, attrs, text) {
  const n = document.createElementNS(NS, name);
  for (const k in attrs) n.setAttribute(k, attrs[k]);
  if (text !== undefined) n.textContent = text;
  return n;
}

function renderTimeline(v) {
  const calls = [...v.calls.values()];
  const rowH = 18, left = 130, width = Math.max(600, $("timeline").clientWidth - 20);
  const height = (calls.length + 2) * rowH + 10;
  const now = nowOf(v);
  const span = Math.max(1, now);
  const x = (t) => left + (Math.max(0, t) / span) * (width - left - 10);
  const svg = el("svg", { width, height, role: "img", "aria-label": "timeline" });
  for (let s = 0; s <= span; s += Math.max(1, Math.round(span / 10))) {
    svg.appendChild(el("line", { x1: x(s), x2: x(s), y1: 0, y2: height - 14, class: "grid" }));
    svg.appendChild(el("text", { x: x(s) + 2, y: height - 2 }, s + "s"));
  }
  svg.appendChild(el("text", { x: 4, y: rowH - 5 }, "decode"));
  for (const [a, b] of v.decode) {
    svg.appendChild(el("rect", { x: x(a), y: 4, width: Math.max(1, x(b) - x(a)), height: rowH - 6, class: "bar decode" }));
  }
  calls.forEach((c, i) => {
    const y = (i + 1) * rowH + 4;
    svg.appendChild(el("text", { x: 4, y: y + rowH - 9 }, `${c.id} ${c.fn}`.slice(0, 18)));
    if (c.start == null) return;
    const end = c.end ?? now;
    const cls = "bar call " + (c.end == null ? "running" : c.status === "ok" ? "ok" : c.status === "cancelled" ? "cancelled" : "failed");
    const r = el("rect", { x: x(c.start), y, width: Math.max(2, x(end) - x(c.start)), height: rowH - 6,
                           class: cls, "data-call": c.id });
    r.appendChild(el("title", {}, `${c.id} ${c.fn}: ${c.status}` + (c.progress ? ` (${c.progress})` : "")));
    svg.appendChild(r);
    for (const k of c.ticks || []) {  // progress and partial results, on the call's bar
      const tick = el("line", { x1: x(k.t), x2: x(k.t), y1: y - 1, y2: y + rowH - 5, class: "tick " + k.kind, "data-call": c.id });
      tick.appendChild(el("title", {}, `${c.id} ${k.label} at ${k.t.toFixed(2)} s`));
      svg.appendChild(tick);
    }
  });
  for (const m of v.markers) {
    const line = el("line", { x1: x(m.t), x2: x(m.t), y1: 0, y2: height - 14, class: "marker " + m.kind,
                              "data-label": m.label });
    line.appendChild(el("title", {}, `${m.kind} injected: ${m.label} at ${m.t.toFixed(2)} s`));
    svg.appendChild(line);
  }
  $("timeline").replaceChildren(svg);
}

// -- streams and actions -------------------------------------------------------------------
const EVENT_TYPES = ["session.queued", "session.started", "text.delta", "call.emitted", "call.started",
  "call.completed", "call.progress", "call.partial", "interrupt.injected", "trap", "rollback", "done", "message.queued",
  "message.undelivered", "session.end"];

function follow(info) {
  const v = newView(info);
  v.openedAt = performance.now(); v.offset = 0;
  state.sessions.set(info.id, v);
  state.current = info.id;
  streamAuth(false).then(() => openStream(v, false), (e) => { $("status").textContent = "error: " + e.message; });
  redraw();
}

// Open (or reopen, after the browser gave up: an expired cookie) the session's event stream
// from the event after the last one seen.
function openStream(v, renewed) {
  const from = v.events.length ? v.events[v.events.length - 1].seq + 1 : 0;
  const src = new EventSource(`/sessions/${v.info.id}/events` + (from ? `?from=${from}` : ""));
  v.source = src;
  const handler = (msg) => {
    const e = JSON.parse(msg.data);
    if (v.events.length && e.seq <= v.events[v.events.length - 1].seq) return;  // resent after a reconnect
    apply(v, e);
    v.openedAt = performance.now(); v.offset = e.t;
    if (e.type === "session.end") src.close();
    redraw();
  };
  for (const type of EVENT_TYPES) src.addEventListener(type, handler);
  src.onopen = () => { renewed = false; };
  src.onerror = () => {
    if (src.readyState !== EventSource.CLOSED || v.ended || renewed) return;  // retrying itself
    streamAuth(true).then(() => openStream(v, true), () => {});
  };
}

$("start-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const engine = $("engine").value;
  const body = { prompt: $("prompt").value, engine, model: $("model").value, strategy: $("strategy").value,
                 tools: $("tools").value, max_tokens: Number($("max-tokens").value) };
  if (engine === "sim") body.sim = { tpot_ms: Number($("tpot").value) };
  if ($("system").value.trim()) body.system = $("system").value;
  try { follow(await api("POST", "/sessions", body)); } catch (e) { $("status").textContent = "error: " + e.message; }
});

$("agents").addEventListener("click", async () => {
  const engine = $("engine").value;
  try {
    const out = await api("POST", "/demos/agents", { engine, model: $("model").value,
      max_tokens: Number($("max-tokens").value), tpot_ms: Number($("tpot").value) });
    for (const info of Object.values(out.sessions)) follow(info);
  } catch (e) { $("status").textContent = "error: " + e.message; }
});

// The live demo: a slow research call (progress, partial results) while the model talks.
$("live").addEventListener("click", async () => {
  const engine = $("engine").value, body = { engine, model: $("model").value };
  if (engine === "sim") body.tpot_ms = Number($("tpot").value);  // its script sets its length
  else body.max_tokens = Number($("max-tokens").value);
  try { follow(await api("POST", "/demos/live", body)); } catch (e) { $("status").textContent = "error: " + e.message; }
});

async function send(text) {
  if (!text || !state.current) return false;
  try { await api("POST", `/sessions/${state.current}/messages`, { text }); return true; }
  catch (e) { $("status").textContent = "error: " + e.message; return false; }
}

$("message-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (await send($("message").value.trim())) $("message").value = "";
});

$("stop-that").addEventListener("click", () => { send("Stop that."); });

$("cancel").addEventListener("click", async () => {
  if (!state.current) return;
  try { await api("POST", `/sessions/${state.current}/cancel`); } catch (e) { $("status").textContent = "error: " + e.message; }
});

setInterval(() => { const v = state.sessions.get(state.current); if (v && !v.ended) redraw(); }, 250);
api("GET", "/health").then((h) => { $("health").textContent = `server ok · ${h.live_sessions} live`; })
  .catch(() => { $("health").textContent = "server unreachable"; });
