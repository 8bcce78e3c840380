// breakerchain dashboard: draws what the event stream (/events) says, and sends the page's
// controls through the dashboard's API (which goes through each service's chaos API).
"use strict";

const $ = (sel) => document.querySelector(sel);
const words = { success: "success", failure: "failed", timeout: "timed out", reject: "rejected", fallback: "fallback",
  open: "opened", halfOpen: "halfOpened", close: "closed", retry: "retrying", bulkheadFull: "bulkhead full", outOfTime: "out of time",
  retryBudget: "retry budget spent" };
const stateOf = { open: "open", halfOpen: "half-open", close: "closed" };

let state = null;          // the last state message
const tiles = new Map();   // "caller→target" → tile element
const events = [];         // breaker events seen by this page, oldest first (for the tour)

// ---- the stream ----
function connect() {
  const es = new EventSource("events");
  es.onopen = () => { $("#link").dataset.connected = "true"; $("#link").textContent = "live"; };
  es.onerror = () => { $("#link").dataset.connected = "false"; $("#link").textContent = "reconnecting…"; };
  es.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "state") onState(m);
    else if (m.type === "breaker") onBreaker(m.breaker);
    else if (m.type === "chaos") onChaos(m.chaos);
  };
}

function onState(s) {
  state = s;
  renderCircuits(s.circuits);
  renderServices(s.services, s.controls);
  $("#pending-orders").textContent = s.pending ? s.pending.orders : "unknown";
  $("#pending-oldest").textContent = s.pending && s.pending.orders ? s.pending.oldest_seconds.toFixed(1) + " s" : "–";
  $("#burst-form").hidden = !s.controls;
  renderTourButton(s);
}

// The tour plays on shipment's faults: where it cannot change them (no CHAOS=1 there), the button
// is disabled and says beside it what it needs.
let touring = false;
function renderTourButton(s) {
  const btn = $("#tour-start"), needs = $("#tour-needs");
  const target = s.services.find((x) => x.name === TARGET[1]);
  const why = !s.controls ? ""
    : !target ? `the tour waits for ${TARGET[1]} to answer`
    : !target.chaos.enabled ? `the tour needs chaos on ${TARGET[1]}: restart with CHAOS=1 go run ./cmd/breakerchain` : "";
  btn.hidden = !s.controls;
  if (!touring) btn.disabled = why !== "";
  btn.title = why;
  needs.hidden = why === "";
  needs.textContent = why;
}

function onBreaker(ev) {
  events.push({ ...ev, seen: Date.now() });
  if (events.length > 500) events.shift();
  const li = document.createElement("li");
  li.dataset.event = ev.event;
  const t = new Date(ev.time);
  li.innerHTML = `<time>${t.toLocaleTimeString()}</time>`;
  li.append(`${ev.service} → ${ev.target} status:: ${words[ev.event] || ev.event}` +
    (ev.count ? ` ×${ev.count}` : "") + (ev.reason ? ` (${ev.reason})` : ""));
  if (ev.trace_id) {
    // The call's trace: look it up in the tracing UI (its id, whole, is in the title and copied on a click).
    const tr = document.createElement("code");
    tr.className = "trace";
    tr.title = "trace " + ev.trace_id;
    tr.textContent = " trace " + ev.trace_id.slice(0, 8) + "…";
    tr.addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText(ev.trace_id));
    li.append(tr);
  }
  $("#timeline").prepend(li);
  while ($("#timeline").children.length > 200) $("#timeline").lastChild.remove();
  // A transition shows at once, before the next poll.
  const tile = tiles.get(ev.service + "→" + ev.target);
  if (tile && stateOf[ev.event]) setTileState(tile, stateOf[ev.event]);
}

function onChaos(ch) {
  const el = document.querySelector(`.service[data-service="${CSS.escape(ch.service)}"]`);
  if (el) { el.querySelector(".faults").textContent = faultsText(ch.faults); showFaults(el, ch.faults); }
}

// showFaults puts the faults in force in the controls' empty boxes, both alike: "0" and "0s"
// when there are none. A box left empty keeps its value.
function showFaults(el, f) {
  el.querySelector("input.rate").placeholder = String(Math.round(f.error_rate * 100));
  el.querySelector("input.latency").placeholder = f.latency;
}

// ---- circuits ----
function setTileState(tile, s) {
  if (tile.dataset.state !== s) {
    tile.dataset.state = s;
    tile.dataset.history = (tile.dataset.history ? tile.dataset.history + " " : "") + s;
  }
  tile.querySelector(".state").textContent = s;
}

function renderCircuits(circuits) {
  const box = $("#circuits");
  if (circuits.length && box.querySelector(".empty")) box.querySelector(".empty").remove();
  for (const c of circuits) {
    const key = c.caller + "→" + c.target;
    let tile = tiles.get(key);
    if (!tile) {
      tile = document.createElement("article");
      tile.className = "tile";
      tile.dataset.circuit = key;
      // Names come from the bus: they go in as text, never as HTML.
      tile.innerHTML = `<h3><span class="name"></span><span class="state"></span></h3>
        <div class="rate" title="failure rate over the window, against the threshold"><div class="fill"></div><div class="mark"></div></div>
        <div class="small rate-text"></div>
        <div class="calls" title="calls per second, over every instance of the caller, since the last poll"><span>success<b class="success">0/s</b></span><span>failure<b class="failure">0/s</b></span><span>timeout<b class="timeout">0/s</b></span><span>rejected<b class="rejected">0/s</b></span></div>
        <div class="small">latency of the last minute's calls: <span class="lat"></span></div>
        <svg class="spark" viewBox="0 0 60 48" preserveAspectRatio="none"><polyline class="p99" fill="none" stroke-width="1"/><polyline class="p50" fill="none" stroke-width="1"/></svg>
        <div class="small delay"></div><div class="small instances"></div>`;
      tile.querySelector(".name").textContent = `${c.caller} → ${c.target}`;
      tiles.set(key, tile);
      box.append(tile);
    }
    setTileState(tile, c.state);
    const pct = Math.round(c.failure_rate * 100);
    tile.querySelector(".fill").style.width = pct + "%";
    tile.querySelector(".mark").style.left = c.threshold + "%";
    tile.querySelector(".rate-text").textContent =
      `failure rate ${pct}% of ${c.executions} calls in ${c.window} · opens at ${c.threshold}% once ${c.min_calls} calls`;
    for (const k of ["success", "failure", "timeout", "rejected"]) tile.querySelector("." + k).textContent = fmt(c.per_second[k] || 0) + "/s";
    tile.querySelector(".lat").textContent = latencyText(c.p50_ms, c.p99_ms);
    drawSpark(tile.querySelector("svg"), c.history || []);
    tile.querySelector(".delay").textContent = c.state === "open"
      ? `open: ${c.remaining_delay || "0s"} left of ${c.delay} before a trial call` : `an open circuit waits ${c.delay}`;
    const inst = Object.entries(c.states).map(([s, n]) => `${n} ${s}`).join(", ");
    tile.querySelector(".instances").textContent = `instances of ${c.caller}: ${inst}`;
  }
}

function fmt(n) { return n >= 10 ? Math.round(n) : Math.round(n * 10) / 10; }

// latencyText is the last minute's p50 and p99: "none sent" when no call was (rejected calls
// are not sent); under a millisecond as "<1 ms", for the histogram cannot say better.
function latencyText(p50, p99) {
  if (!p50 && !p99) return "no calls sent";
  const ms = (v) => (v < 1 ? "<1" : fmt(v)) + " ms";
  return `p50 ${ms(p50)} · p99 ${ms(p99)}`;
}

// A small chart of p50 and p99 over the last minute, one point per poll: two SVG polylines.
function drawSpark(svg, hist) {
  const top = Math.max(1, ...hist.map((h) => h.p99));
  const pts = (k) => hist.map((h, i) => `${60 - hist.length + i},${(48 - (h[k] / top) * 44).toFixed(1)}`).join(" ");
  svg.querySelector(".p50").setAttribute("points", pts("p50"));
  svg.querySelector(".p99").setAttribute("points", pts("p99"));
}

// ---- services and controls ----
function faultsText(f) { return `error rate ${Math.round(f.error_rate * 100)}%, latency ${f.latency}`; }

// limiterText is one limit on the work a service takes: "admission: limit 48 of 64 · 12 in flight
// (3 re-drives) · 0 waiting · refused 2.5/s (limit), 0/s (backlog)".
function limiterText(l) {
  const refused = Object.entries(l.refused_per_second).sort().map(([why, n]) => `${fmt(n)}/s (${why})`).join(", ");
  return `${l.name}: ` + (l.max ? `limit ${l.limit} of ${l.max}` : "no limit") +
    ` · ${l.inflight} in flight${l.redriving ? ` (${l.redriving} re-drives)` : ""} · ${l.queued} waiting · refused ${refused || "0/s"}`;
}

function renderServices(services, controls) {
  const box = $("#services");
  for (const s of services) {
    let el = box.querySelector(`.service[data-service="${CSS.escape(s.name)}"]`);
    if (!el) {
      el = document.createElement("div");
      el.className = "service";
      el.dataset.service = s.name;
      el.innerHTML = `<h3><span class="name"></span> <span class="small instances"></span></h3><div class="small faults"></div><div class="small limiters"></div>
        <form hidden><label>error % <input class="rate" type="number" min="0" max="100" step="1" inputmode="numeric"></label>
        <label>latency <input class="latency" type="text" size="6"></label>
        <button class="apply" type="submit">Apply</button><span class="msg" role="status"></span></form>`;
      // Names come from the bus: as text and as ids, never as HTML.
      el.querySelector(".name").textContent = s.name;
      for (const part of ["rate", "latency", "apply", "msg"]) el.querySelector("." + part).id = `chaos-${s.name}-${part}`;
      el.querySelector("form").addEventListener("submit", (e) => { e.preventDefault(); applyChaos(s.name); });
      box.append(el);
    }
    el.querySelector(".instances").textContent = `${s.instances} instance${s.instances === 1 ? "" : "s"}`;
    el.querySelector(".faults").textContent = faultsText(s.chaos) + (s.chaos.enabled ? "" : " · chaos off (CHAOS=1 to change)");
    showFaults(el, s.chaos);
    el.querySelector(".limiters").textContent = (s.limiters || []).map(limiterText).join("\n");
    el.querySelector("form").hidden = !(controls && s.chaos.enabled);
  }
}

async function api(method, path, body) {
  const res = await fetch(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

async function applyChaos(name) {
  const id = (part) => document.getElementById(`chaos-${name}-${part}`);
  const msg = id("msg");
  const change = {};
  const rate = id("rate").value.trim();
  const latency = id("latency").value.trim();
  if (rate !== "") change.error_rate = Number(rate) / 100;
  if (latency !== "") change.latency = latency;
  try {
    const st = await api("PUT", `api/chaos/${encodeURIComponent(name)}`, change);
    msg.className = "msg"; msg.textContent = "applied: " + faultsText(st);
  } catch (e) {
    msg.className = "msg error"; msg.textContent = e.message;
  }
}

$("#burst-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const msg = $("#burst-msg");
  msg.textContent = "sending…";
  try {
    const r = await api("POST", "api/orders", { count: Number($("#burst-count").value) });
    msg.className = "msg";
    msg.textContent = Object.entries(r.statuses).map(([s, n]) => `${n}× ${s}`).join(", ");
  } catch (err) {
    msg.className = "msg error"; msg.textContent = err.message;
  }
});

// ---- the guided tour: the seed's eight cases on the live system ----
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ms = (d) => { const m = /^([\d.]+)(ms|s|m|h)$/.exec(d || ""); return m ? Number(m[1]) * { ms: 1, s: 1e3, m: 6e4, h: 36e5 }[m[2]] : 0; };

const CASES = [
  { seed: "For the first case (marked in green), if there is no error, the circuit remains closed with no changes.",
    here: "closed; the calls pass and are recorded as successes." },
  { seed: "The second case, beginning in yellow, when we find the first error in the request, the state will change to half and begin the timeout related to this state.",
    here: "closed; the failure is recorded and the rolling window counts it (failsafe-go has no 'half' on a first error)." },
  { seed: "In the third case, if subsequent requests result in success, it still will wait for the timeout to return to the “Closed” state.",
    here: "closed; the failure rate stays below the threshold." },
  { seed: "For the forth case, after the timeout has been reached, subsequent success requests will return the circuit to closed state.",
    here: "the window rolls over and the old failures are forgotten." },
  { seed: "However, in the fifth case, if consecutive errors happen within the timeout and we reach a defined error rate (or minimum error requests), the circuit will change to “Open State”.",
    here: "failure rate ≥ the threshold with at least the minimum calls: open." },
  { seed: "We are now in the red area in this state, for the sixth case, a new timeout will begin, that all subsequent request will be blocked so, they won't reach the target service.",
    here: "open: calls are rejected at once, nothing is sent to the target." },
  { seed: "After this timeout in the seventh case, if subsequent errors occur, the “open timeout” will start over, and block again.",
    here: "after the delay a trial call is let through (half-open); it fails: open again, the delay restarts." },
  { seed: "Finally, in the last case, if the subsequent request after the timeout resolves, is succesful, the state will change to half and it's own timeout will begin again.",
    here: "after the delay the trial succeeds: half-open, then closed." },
];

const TARGET = ["payment", "shipment"]; // the circuit the tour plays on: shipment's faults
const circuit = () => state && state.circuits.find((c) => c.caller === TARGET[0] && c.target === TARGET[1]);
// now is the circuit's state as the tile shows it: the last poll's, or a later transition's.
const now = () => { const t = tiles.get(TARGET.join("→")); return t ? t.dataset.state : ""; };
const sawSince = (t0, ev) => events.some((e) => e.seen >= t0 && e.service === TARGET[0] && e.target === TARGET[1] && e.event === ev);

async function waitFor(pred, timeout, what) {
  const end = Date.now() + timeout;
  while (Date.now() < end) { if (pred()) return true; await sleep(100); }
  throw new Error("not within " + Math.round(timeout / 1000) + " s: " + what);
}
async function setFaults(rate) { await api("PUT", `api/chaos/${TARGET[1]}`, { error_rate: rate, latency: "0s" }); }
async function send(n) { return api("POST", "api/orders", { count: n }); }
async function sendUntil(pred, max, what) {
  for (let i = 0; i < max && !pred(); i++) { await send(1); await sleep(150); }
  return waitFor(pred, 3000, what);
}

const STEPS = [
  async (t0, c) => { await setFaults(0); await waitFor(() => now() === "closed", ms(c.delay) + ms(c.window) + 5000, "closed");
    await send(2 * c.min_calls); await waitFor(() => sawSince(t0, "success") && now() === "closed", 5000, "successes, closed"); },
  async (t0) => { await setFaults(1); await send(1); await waitFor(() => sawSince(t0, "failure") && now() === "closed", 5000, "a failure, still closed"); },
  async (t0) => { await setFaults(0); await send(2); await waitFor(() => sawSince(t0, "success") && now() === "closed", 5000, "successes, still closed"); },
  // The window's counts roll over as calls come: wait it out, then a success finds them gone.
  async (t0, c) => { await sleep(ms(c.window) + 500); await send(1);
    await waitFor(() => circuit().failure_rate === 0 && now() === "closed", 5000, "the window to forget the failures"); },
  async (t0, c) => { await setFaults(1); await sendUntil(() => now() === "open", 4 * c.min_calls + 4, "open"); },
  async (t0) => { await send(2); await waitFor(() => sawSince(t0, "reject") && now() === "open", 5000, "rejected calls, open"); },
  async (t0, c) => { await waitFor(() => !circuit().remaining_delay, ms(c.delay) + 5000, "the open delay to pass");
    await sendUntil(() => sawSince(t0, "halfOpen") && sawSince(t0, "open"), 5, "half-open, then open again"); },
  async (t0, c) => { await setFaults(0); await waitFor(() => !circuit().remaining_delay, ms(c.delay) + 5000, "the open delay to pass");
    await sendUntil(() => sawSince(t0, "halfOpen") && sawSince(t0, "close"), 5, "half-open, then closed"); },
];

async function tour() {
  const panel = $("#tour"), results = $("#tour-results");
  touring = true;
  $("#tour-start").disabled = true;
  panel.hidden = false;
  panel.dataset.done = "false";
  results.innerHTML = "";
  const tile = tiles.get(TARGET.join("→"));
  if (tile) { tile.classList.add("focus"); tile.after(panel); }
  try {
    await play(panel, results);
  } finally {
    // Whatever happened, shipment is left healthy.
    await setFaults(0).catch(() => {});
    panel.dataset.done = "true";
    touring = false;
    $("#tour-start").disabled = false;
    if (tile) tile.classList.remove("focus");
  }
}

async function play(panel, results) {
  for (let i = 0; i < CASES.length; i++) {
    panel.dataset.step = String(i + 1);
    $("#tour-case").textContent = i + 1;
    $("#tour-seed").textContent = "“" + CASES[i].seed + "”";
    $("#tour-here").textContent = CASES[i].here;
    $("#tour-status").textContent = "playing…";
    const li = document.createElement("li");
    li.dataset.case = String(i + 1);
    li.textContent = CASES[i].here;
    results.append(li);
    try {
      await STEPS[i](Date.now(), circuit());
      li.dataset.reached = "true";
      $("#tour-status").textContent = "reached: " + now();
      await sleep(1200);
    } catch (e) {
      li.dataset.reached = "false";
      $("#tour-status").textContent = "not reached: " + e.message;
      return;
    }
  }
}
$("#tour-start").addEventListener("click", () => tour().catch((e) => { $("#tour-status").textContent = e.message; }));

connect();
