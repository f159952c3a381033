/* hazardgw duty console: plain JS, no build step, no CDN.
 *
 * Data: one authenticated event stream (GET /api/events, read with fetch so the token
 * travels in the Authorization header, never in a URL): a snapshot on connect, then
 * alarm events immediately, readings at most once a second, status and heartbeats.
 * Trends are seeded from GET /api/tags?recent=N and extended from the stream.
 * The token is asked for once and kept in localStorage.
 *
 * Point table (issue 17), the second view beside the tiles: one row per tag with its source,
 * address, raw value, live value, quality, age, alarm, test and calibration state. Values,
 * quality and age come from the stream; the slower fields from GET /api/tags?raw=true, every
 * 5 s while the table is shown (never faster than the stream); the tags in test from
 * GET /api/tests every 15 s otherwise; the in-use rate from GET /api/online every minute.
 */
"use strict";
(() => {
  const TREND = 120;
  const WATCHDOG_MS = 15000;
  const OPEN = new Set(["UNACK", "ACKED", "RTNUN"]);
  const LS = window.localStorage;

  const S = {
    token: LS.getItem("hazardgw.token") || "",
    lang: LS.getItem("hazardgw.lang") || ((navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en"),
    muted: LS.getItem("hazardgw.muted") === "1",
    site: null,
    tz: undefined,
    tags: new Map(), // id -> tag info + value/ts/quality + trend
    hs: [], // hazard source statuses from the server
    points: new Map(), // alarm id -> static alarm point info
    alarms: new Map(), // alarm id -> alarm (open or suppressed)
    flood: false,
    connected: false,
    lastMsg: 0,
    abort: null,
    retry: 1000,
    streamToken: null,
    // flood handling (issue 19): filters and grouping of the alarm list, kept in this browser
    view: Object.assign({ group: "", prio: [1, 2, 3], state: "", hs: "", q: "" },
      JSON.parse(LS.getItem("hazardgw.view") || "{}")),
    expanded: new Set(), // COMM alarm ids whose suppressed children are shown
    // point table (issue 17)
    pt: new Map(), // tag id -> {source, source_type, where, raw, test, calibration, in_service, not_in_service}
    tests: new Map(), // tag id -> running test
    inuse: null, // GET /api/online in_use
    pview: Object.assign({ view: "tiles", q: "", source: "", hs: "", quality: "", state: "", sort: "id", dir: 1 },
      JSON.parse(LS.getItem("hazardgw.points") || "{}")),
  };
  window.hazardgw = { horns: 0, state: S };

  const $ = (id) => document.getElementById(id);
  const t = (key) => (window.I18N[S.lang] || window.I18N.en)[key] ?? key;
  const tt = (key, sub) => (t(key) || {})[sub] ?? sub;

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const svg = (tag, attrs) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    return el;
  };

  // ------------------------------------------------------------------ formatting
  function fmtValue(tag, v) {
    if (v === null || v === undefined) return "—";
    if (tag && tag.kind === "discrete") return v ? t("on") : t("off");
    const span = tag && tag.range ? Math.abs(tag.range[1] - tag.range[0]) : Math.abs(v) * 2;
    const digits = span <= 10 ? 2 : span <= 200 ? 1 : 0;
    return Number(v).toFixed(digits);
  }
  const fmtCache = {};
  function fmtTime(ns) {
    if (!ns) return "";
    const d = new Date(ns / 1e6);
    const key = S.lang + (S.tz || "");
    if (!fmtCache[key]) {
      const loc = S.lang === "zh" ? "zh-CN" : "en-GB";
      const opt = { timeZone: S.tz, hour12: false };
      fmtCache[key] = {
        time: new Intl.DateTimeFormat(loc, { ...opt, hour: "2-digit", minute: "2-digit", second: "2-digit" }),
        date: new Intl.DateTimeFormat(loc, { ...opt, month: "2-digit", day: "2-digit" }),
      };
    }
    const f = fmtCache[key];
    const today = f.date.format(new Date());
    const day = f.date.format(d);
    return (day === today ? "" : day + " ") + f.time.format(d);
  }

  // ------------------------------------------------------------------ i18n
  function applyLang() {
    document.documentElement.lang = S.lang === "zh" ? "zh-CN" : "en";
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
    for (const opt of [...$("shelve-duration").options, ...$("test-duration").options]) {
      const m = /^(\d+)([mh])$/.exec(opt.value);
      opt.textContent = m[1] + " " + (m[2] === "m" ? t("minutes") : t("hours"));
    }
    for (const opt of $("cal-interval").options) {
      if (opt.value) opt.textContent = opt.value.replace("d", "") + " " + t("days");
    }
    renderSound();
    setConnected(S.connected);
    renderAll();
  }

  // ------------------------------------------------------------------ sound
  let actx = null;
  let hornTimer = null;
  function ensureAudio() {
    if (!actx) {
      const C = window.AudioContext || window.webkitAudioContext;
      if (!C) return;
      actx = new C();
    }
    // The "sound blocked" banner goes once the sound is allowed, but only after the gesture
    // that allowed it is over: removed at once, it would move the page under the pointer
    // between press and release and the click would land on another row or button.
    const later = () => setTimeout(renderBanner, 400);
    if (actx.state === "suspended") actx.resume().then(later, () => {});
    later();
  }
  function beep() {
    if (!actx || S.muted || actx.state !== "running") return;
    const t0 = actx.currentTime;
    [[0, 880], [0.22, 660], [0.44, 880], [0.66, 660]].forEach(([dt, f]) => {
      const o = actx.createOscillator();
      const g = actx.createGain();
      o.type = "square";
      o.frequency.value = f;
      g.gain.setValueAtTime(0.0001, t0 + dt);
      g.gain.exponentialRampToValueAtTime(0.18, t0 + dt + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, t0 + dt + 0.2);
      o.connect(g).connect(actx.destination);
      o.start(t0 + dt);
      o.stop(t0 + dt + 0.21);
    });
  }
  function startHorn() {
    window.hazardgw.horns += 1;
    document.body.dataset.horn = "on";
    $("btn-silence").classList.remove("hidden");
    if (!hornTimer) {
      beep();
      hornTimer = setInterval(beep, 2500);
    }
    renderBanner();
  }
  function stopHorn() {
    if (hornTimer) clearInterval(hornTimer);
    hornTimer = null;
    document.body.dataset.horn = "off";
    $("btn-silence").classList.add("hidden");
    renderBanner();
  }
  // alarms whose sound the operator silenced (Silence): they stay quiet until raised again
  const silenced = new Set();
  function hornStillNeeded() {
    for (const a of S.alarms.values()) {
      if (a.priority === 1 && a.state === "UNACK" && !a.test && !a.suppressed && !a.shelved && !a.out_of_service
          && !silenced.has(a.id)) return true;
    }
    return false;
  }
  function silenceHorn() {
    for (const a of S.alarms.values()) if (a.priority === 1 && a.state === "UNACK") silenced.add(a.id);
    stopHorn();
  }
  function renderSound() {
    const b = $("btn-sound");
    b.classList.toggle("muted-on", S.muted);
    b.setAttribute("aria-pressed", S.muted ? "true" : "false");
    $("sound-text").textContent = S.muted ? t("soundOff") : t("soundOn");
  }

  // ------------------------------------------------------------------ banner, toast
  function renderBanner() {
    const b = $("banner");
    if (!S.connected && S.site) {
      b.className = "banner error";
      b.textContent = t("lostBanner");
    } else if (hornTimer && !S.muted && (!actx || actx.state !== "running")) {
      b.className = "banner info";
      b.textContent = t("soundBlocked");
    } else {
      b.className = "banner hidden";
    }
  }
  let toastTimer = null;
  function toast(msg, kind) {
    const el = $("toast");
    el.textContent = msg;
    el.className = "toast" + (kind ? " " + kind : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => el.classList.add("hidden"), 4000);
  }

  // ------------------------------------------------------------------ token
  let tokenRetry = null;
  function askToken(msgKey, retry) {
    tokenRetry = retry || null;
    $("token-msg").textContent = t(msgKey);
    const dlg = $("dlg-token");
    $("token-input").value = "";
    if (!dlg.open) dlg.showModal();
    $("token-input").focus();
  }
  function onTokenClose() {
    const dlg = $("dlg-token");
    const value = $("token-input").value.trim();
    if (dlg.returnValue !== "ok" || !value) return;
    S.token = value;
    LS.setItem("hazardgw.token", value);
    ensureAudio();
    const retry = tokenRetry;
    tokenRetry = null;
    if (retry) retry();
    if (S.streamToken !== S.token) restartStream();
  }

  // ------------------------------------------------------------------ API calls
  async function api(method, path, body) {
    const res = await fetch(path, {
      method,
      headers: { Authorization: "Bearer " + S.token, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    return { status: res.status, data };
  }
  // Why an action failed, in the console's language: a fetch that never got an answer
  // ("Failed to fetch", "NetworkError ...", "Load failed" depending on the browser) is a network
  // error; an HTTP answer is explained by its error code ({"error": code, "detail": ...}) or
  // status. The server's detail (English) is added only in English.
  const STATUS_CODES = { 400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    408: "timeout", 409: "conflict", 413: "too_large", 422: "invalid_request", 429: "rate_limited",
    500: "internal", 502: "unavailable", 503: "unavailable", 504: "timeout" };
  function errorText(status, data, exc) {
    const texts = t("errors") || {};
    if (exc) return exc.name === "AbortError" || exc.name === "TimeoutError" ? texts.timeout : texts.network;
    const code = data && typeof data.error === "string" ? data.error : null;
    let text = (code && texts[code]) || texts[STATUS_CODES[status]] || String(texts.http || "HTTP {status}");
    text = text.replace("{status}", String(status));
    if (S.lang !== "zh" && data && typeof data.detail === "string" && data.detail) text += " (" + data.detail + ")";
    return text;
  }
  window.hazardgw.errorText = errorText;
  async function action(kind, id, body) {
    let r;
    try {
      r = await api("POST", `/api/alarms/${encodeURIComponent(id)}/${kind}`, body || {});
    } catch (e) {
      toast(`${t("failed")}${S.lang === "zh" ? "：" : ": "}${errorText(0, null, e)}`, "error");
      return;
    }
    if (r.status === 200) {
      applyView(r.data.alarm);
      toast(`${t("done_" + kind)}: ${id}`);
      renderAlarms();
      renderTileAlarms();
      return;
    }
    if (r.status === 401) return askToken("invalidToken", () => action(kind, id, body));
    if (r.status === 403 && r.data && r.data.error === "forbidden") return askToken("needOperator", () => action(kind, id, body));
    toast(`${t("failed")}${S.lang === "zh" ? "：" : ": "}${errorText(r.status, r.data, null)}`, "error");
  }
  // Acknowledge a group: the ids of the rows the operator sees (never a server-side filter:
  // what is acknowledged is what was on the screen). One journal event per alarm, same user.
  async function groupAck(ids) {
    if (!ids.length) return;
    let r;
    try {
      r = await api("POST", "/api/alarms/ack", { ids });
    } catch (e) {
      toast(`${t("failed")}${S.lang === "zh" ? "：" : ": "}${errorText(0, null, e)}`, "error");
      return;
    }
    if (r.status === 200) {
      for (const v of r.data.alarms || []) applyView(v);
      const n = (r.data.acked || []).length;
      const skipped = (r.data.skipped || []).length;
      toast(t("doneGroup").replace("{n}", n) + (skipped ? " · " + t("skippedN").replace("{n}", skipped) : ""));
      renderAlarms();
      renderTileAlarms();
      renderSummary();
      if (hornTimer && !hornStillNeeded()) stopHorn();
      return;
    }
    if (r.status === 401) return askToken("invalidToken", () => groupAck(ids));
    if (r.status === 403 && r.data && r.data.error === "forbidden") return askToken("needOperator", () => groupAck(ids));
    toast(`${t("failed")}${S.lang === "zh" ? "：" : ": "}${errorText(r.status, r.data, null)}`, "error");
  }
  window.hazardgw.groupAck = groupAck;

  let shelveId = null;
  function askShelve(id) {
    shelveId = id;
    $("shelve-id").textContent = id;
    $("shelve-comment").value = "";
    $("dlg-shelve").showModal();
  }
  function onShelveClose() {
    if ($("dlg-shelve").returnValue !== "ok" || !shelveId) return;
    const body = { duration: $("shelve-duration").value };
    const c = $("shelve-comment").value.trim();
    if (c) body.comment = c;
    action("shelve", shelveId, body);
  }
  async function seedTrends() {
    try {
      const r = await api("GET", `/api/tags?recent=${TREND}`);
      if (r.status !== 200 || !Array.isArray(r.data)) return;
      mergeExtras(r.data);
      renderTileUpkeep();
      for (const d of r.data) {
        const tag = S.tags.get(d.id);
        if (tag && Array.isArray(d.recent)) {
          const merged = new Map(d.recent.map((p) => [p[0], p]));
          for (const p of tag.trend) merged.set(p[0], p);
          tag.trend = [...merged.values()].sort((a, b) => a[0] - b[0]);
          if (tag.trend.length > TREND) tag.trend.splice(0, tag.trend.length - TREND);
          renderTile(tag);
        }
      }
    } catch (e) { /* trends are a nicety */ }
    refreshInUse();
  }

  // ------------------------------------------------------------------ event stream
  function setConnected(on) {
    S.connected = on;
    const c = $("conn");
    c.className = "conn " + (on ? "on" : "off");
    $("conn-text").textContent = on ? t("live") : S.site ? t("disconnected") : t("connecting");
    renderBanner();
  }
  function restartStream() {
    if (S.abort) S.abort.abort();
    S.retry = 1000;
    stream();
  }
  async function stream() {
    if (!S.token) return askToken("needToken");
    const ctrl = new AbortController();
    S.abort = ctrl;
    S.streamToken = S.token;
    let res;
    try {
      res = await fetch("/api/events", {
        headers: { Authorization: "Bearer " + S.token, Accept: "text/event-stream" },
        cache: "no-store",
        signal: ctrl.signal,
      });
    } catch (e) {
      return reconnect(ctrl);
    }
    if (res.status === 401 || res.status === 403) {
      setConnected(false);
      return askToken(S.token ? "invalidToken" : "needToken");
    }
    if (!res.ok || !res.body) return reconnect(ctrl);
    S.lastMsg = Date.now();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          onBlock(block);
        }
      }
    } catch (e) { /* aborted or network error */ }
    reconnect(ctrl);
  }
  function reconnect(ctrl) {
    if (S.abort !== ctrl) return; // a newer stream replaced this one
    setConnected(false);
    // ±20 % jitter: phones that lost the gateway together (a restart) do not all come back in the same instant
    const wait = Math.round(S.retry * (0.8 + 0.4 * Math.random()));
    S.retry = Math.min(S.retry * 2, 10000);
    setTimeout(() => { if (S.abort === ctrl) stream(); }, wait);
  }
  setInterval(() => {
    if (S.connected && Date.now() - S.lastMsg > WATCHDOG_MS && S.abort) S.abort.abort();
  }, 2000);

  function onBlock(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    S.lastMsg = Date.now();
    if (!data.length) return; // keep-alive comment
    let msg;
    try { msg = JSON.parse(data.join("\n")); } catch (e) { return; }
    if (event === "snapshot") onSnapshot(msg);
    else if (event === "readings") onReadings(msg.readings || []);
    else if (event === "alarm") onAlarm(msg);
    else if (event === "status") { S.hs = msg.hazard_sources || S.hs; S.flood = !!msg.flood; renderSources(false); renderSummary(); }
  }

  function onSnapshot(m) {
    S.retry = 1000;
    S.site = m.site;
    S.tz = m.site.timezone;
    for (const k of Object.keys(fmtCache)) delete fmtCache[k];
    const old = S.tags;
    S.tags = new Map();
    for (const d of m.tags) {
      const prev = old.get(d.id);
      d.trend = prev ? prev.trend : [];
      if (d.ts && d.value !== null && (!d.trend.length || d.trend[d.trend.length - 1][0] !== d.ts)) d.trend.push([d.ts, d.value]);
      S.tags.set(d.id, d);
    }
    S.points = new Map(m.points.map((p) => [p.id, p]));
    S.alarms = new Map();
    for (const a of m.alarms.concat(m.suppressed)) S.alarms.set(a.id, a);
    S.hs = m.hazard_sources;
    S.flood = !!m.flood;
    setConnected(true);
    $("site-name").textContent = m.site.name;
    document.title = `${m.site.name} · hazardgw`;
    renderAll();
    // a console opened (or reconnected) while a priority-1 alarm is unacknowledged sounds too
    if (hornStillNeeded()) startHorn();
    else stopHorn();
    seedTrends();
    if (S.pview.view === "points") refreshPoints();
  }

  function onReadings(list) {
    for (const r of list) {
      const tag = S.tags.get(r.tag);
      if (!tag) continue;
      tag.value = r.value;
      tag.ts = r.ts;
      tag.quality = r.quality;
      const tr = tag.trend;
      if (!tr.length || tr[tr.length - 1][0] !== r.ts) {
        tr.push([r.ts, r.quality === "good" || r.quality === "uncertain" ? r.value : null]);
        if (tr.length > TREND) tr.shift();
      }
      renderTile(tag);
      if (S.pview.view === "points") updatePointRow(tag);
    }
  }

  function applyView(v) {
    if (!v) return;
    if (OPEN.has(v.state) || v.shelved || v.suppressed || v.out_of_service) S.alarms.set(v.id, v);
    else S.alarms.delete(v.id);
  }

  function onAlarm(ev) {
    const pt = S.points.get(ev.alarm) || {};
    const a = S.alarms.get(ev.alarm) || {
      id: ev.alarm, tag: ev.tag, condition: ev.condition, hs: ev.hs, latch: !!pt.latch,
      suppressible: !!pt.suppressible, message: pt.message || null, shelved: false, suppressed: false,
      out_of_service: false, raised_ts: null, acked_by: null, source: ev.source || null, parent: null,
      hazard_sources: ev.hs ? [ev.hs] : [], comm: null,
    };
    if (ev.source) a.source = ev.source;
    const comm = ev.data && ev.data.comm;
    if (comm) { a.comm = comm; a.hazard_sources = comm.hazard_sources || a.hazard_sources; }
    a.priority = ev.priority;
    a.state = ev.state;
    a.active = ev.active;
    if (ev.value !== null) a.value = ev.value;
    if (ev.limit !== null) a.limit = ev.limit;
    if (ev.message) a.message = ev.message;
    a.occurrence = ev.occurrence;
    a.test = !!ev.test;
    switch (ev.event) {
      case "raised": a.raised_ts = ev.ts; a.acked_by = null; break;
      case "acked": a.acked_by = ev.user; a.acked_wall = ev.wall; break;
      case "shelved": a.shelved = true; a.shelved_until = ev.data && ev.data.until; break;
      case "unshelved": a.shelved = false; a.shelved_until = null; break;
      case "suppressed": a.suppressed = true; a.parent = (ev.data && ev.data.parent) || null; break;
      case "unsuppressed": a.suppressed = false; a.parent = null; break;
      case "out_of_service": a.out_of_service = true; break;
      case "in_service": a.out_of_service = false; break;
      default: break;
    }
    if (ev.event !== "disposed") applyView(a);
    // a test alarm (test mode: a bump test) is shown, marked TEST, but does not sound the horn
    if ((ev.event === "raised" || ev.event === "realarmed") && ev.priority === 1 && !ev.test) {
      silenced.delete(a.id);
      startHorn();
    }
    else if (hornTimer && !hornStillNeeded()) stopHorn();
    renderAlarms();
    renderTileAlarms();
    renderSummary();
    if (S.pview.view === "points") { const tag = S.tags.get(ev.tag); if (tag) updatePointRow(tag); }
  }

  // ------------------------------------------------------------------ rendering
  function renderAll() {
    if (!S.site) return;
    renderFilters();
    renderSummary();
    renderAlarms();
    renderSources(true);
    renderView();
  }

  function renderSummary() {
    const all = [...S.alarms.values()].filter((a) => OPEN.has(a.state));
    const open = all.filter((a) => !a.test);
    const tests = all.length - open.length;
    const el = $("summary");
    el.replaceChildren();
    for (const p of [1, 2, 3]) {
      const n = open.filter((a) => a.priority === p).length;
      el.append(h("span", { class: `chip p${p}${n ? "" : " zero"}`, "data-priority": p }, `P${p} ${tt("priority", p)} ${n}`));
    }
    const un = open.filter((a) => a.state === "UNACK" || a.state === "RTNUN").length;
    el.append(h("span", { class: "chip" + (un ? "" : " zero") }, `${t("unacked")} ${un}`));
    if (tests) el.append(h("span", { class: "chip test", "data-test-alarms": tests }, `${t("testMark")} ${tests}`));
    if (S.flood) el.append(h("span", { class: "chip flood" }, t("flood")));
  }

  function sortAlarms(list) {
    return list.sort((a, b) => a.priority - b.priority || (b.raised_ts || 0) - (a.raised_ts || 0) || (a.id < b.id ? -1 : 1));
  }

  // ------------------------------------------------------------------ alarm list: filters, groups
  const ACKABLE = (a) => a.state === "UNACK" || a.state === "RTNUN" || (a.state === "ACKED" && !a.active && a.latch);
  function hsName(code) {
    const s = S.hs.find((x) => x.code === code);
    return s ? s.name : code;
  }
  function commText(c) {
    if (!c) return "";
    const zh = S.lang === "zh";
    const det = c.detectors, n = c.tags;
    let what = det === n ? t("nDetectors").replace("{n}", det)
      : det ? t("nTagsDet").replace("{n}", n).replace("{d}", det) : t("nTags").replace("{n}", n);
    if (c.units && c.units.length) what = t("nDevices").replace("{n}", c.units.length) + (zh ? "，" : ", ") + what;
    const hss = (c.hazard_sources || []).join(zh ? "、" : ", ");
    return hss ? what + (zh ? "，" : ", ") + t("hsList").replace("{h}", hss) : what;
  }
  function saveView() { LS.setItem("hazardgw.view", JSON.stringify(S.view)); }
  function passes(a) {
    const v = S.view;
    if (!v.prio.includes(a.priority)) return false;
    if (v.hs && a.hs !== v.hs && !(a.hazard_sources || []).includes(v.hs)) return false;
    if (v.state === "unack" && !(a.state === "UNACK" || a.state === "RTNUN")) return false;
    if (v.state === "acked" && a.state !== "ACKED") return false;
    if (v.q) {
      const tag = S.tags.get(a.tag);
      const text = [a.id, tag && tag.name, a.message, a.comm && a.comm.name, a.source, a.hs].filter(Boolean).join(" ");
      if (!text.toLowerCase().includes(v.q.toLowerCase())) return false;
    }
    return true;
  }
  function groupKey(a) {
    const g = S.view.group;
    if (g === "hs") return a.hs || "";
    if (g === "source") return a.source || "";
    if (g === "condition") return a.condition;
    return "";
  }
  function groupName(key) {
    const g = S.view.group;
    if (!key) return g === "hs" ? t("otherTags") : "—";
    if (g === "hs") return `${key} ${hsName(key)}`;
    if (g === "condition") return `${key.toUpperCase()} ${tt("cond", key)}`;
    return key;
  }
  // every alarm suppressed under ``id`` (a COMM alarm), children of children included
  function descendants(id, kids, out) {
    for (const c of kids.get(id) || []) { out.push(c); descendants(c.id, kids, out); }
    return out;
  }

  function alarmRow(a, suppressedList, kids) {
    const tag = S.tags.get(a.tag);
    const unit = tag ? tag.unit : "";
    const st = a.state;
    const cls = `alarm p${a.priority} ${st.toLowerCase()}${st === "UNACK" ? " unack" : ""}${a.test ? " test" : ""}`;
    const actions = h("div", { class: "actions" });
    if (!suppressedList) {
      if (st === "UNACK" || st === "RTNUN" || (st === "ACKED" && !a.active && a.latch)) {
        const label = st === "ACKED" ? t("reset") : t("ack");
        actions.append(h("button", { class: "btn ack", type: "button", "data-action": "ack", onclick: () => action("ack", a.id) }, label));
      }
      if (a.suppressible) {
        actions.append(h("button", { class: "btn", type: "button", "data-action": "shelve", onclick: () => askShelve(a.id) }, t("shelve")));
      }
    } else if (a.shelved) {
      actions.append(h("button", { class: "btn", type: "button", "data-action": "unshelve", onclick: () => action("unshelve", a.id) }, t("unshelve")));
    }
    const cond = a.condition;
    const desc = a.comm ? [a.comm.name !== a.tag ? a.comm.name : null, commText(a.comm)].filter(Boolean).join(" · ")
      : [tag && tag.name, a.message].filter(Boolean).join(" · ");
    const where = h("div", { class: "where" },
      a.hs ? h("span", { title: hsName(a.hs) }, h("b", {}, a.hs), " ", hsName(a.hs)) : null,
      a.hs && a.source ? " · " : null,
      a.source ? h("span", { class: "src" }, `${t("source")} ${a.source}`) : null);
    const under = kids ? descendants(a.id, kids, []) : [];
    let value = "";
    if (cond === "vote") {
      if (a.value !== null && a.value !== undefined) value = `${Math.round(a.value)} ${t("tripped")} (k=${a.limit})`;
    } else if (a.value !== null && a.value !== undefined && cond !== "stale" && cond !== "bad" && cond !== "comm") {
      value = `${fmtValue(tag, a.value)} ${unit}`;
      if (a.limit !== null && a.limit !== undefined && ["hh", "h", "l", "ll", "roc"].includes(cond)) {
        value += ` / ${t("limit")} ${fmtValue(tag, a.limit)}`;
      }
    }
    let stateText = tt("state", st);
    if (a.shelved && a.shelved_until) stateText += ` ${t("until")} ${fmtTime(a.shelved_until)}`;
    const row = h(
      "div",
      { class: cls + (cond === "comm" ? " comm" : ""), role: "listitem", "data-alarm": a.id, "data-state": st,
        "data-test": a.test ? "1" : null },
      h("div", { class: "prio" }, h("b", {}, `P${a.priority}`), h("span", {}, tt("priority", a.priority))),
      h("div", { class: "body" },
        h("div", { class: "l1" },
          h("span", { class: "tag" }, a.tag),
          h("span", { class: "cond" }, `${cond.toUpperCase()} ${tt("cond", cond)}`),
          a.test ? h("span", { class: "chip test", title: t("testAlarmHelp") }, t("testMark")) : null,
          a.chattering ? h("span", { class: "chip" }, t("chattering")) : null,
          h("span", { class: "time" }, fmtTime(a.raised_ts))),
        desc ? h("div", { class: "desc", title: desc }, desc) : null,
        (a.hs || a.source) ? where : null,
        h("div", { class: "l3" },
          h("span", { class: "state" }, stateText),
          value ? h("span", { class: "value" }, value) : null,
          a.acked_by ? h("span", { class: "by" }, `${t("ackedBy")} ${a.acked_by}`) : null,
          under.length ? h("button", {
            class: "kids-toggle", type: "button", "data-kids": a.id, "aria-expanded": S.expanded.has(a.id) ? "true" : "false",
            onclick: () => { if (S.expanded.has(a.id)) S.expanded.delete(a.id); else S.expanded.add(a.id); renderAlarms(); },
          }, `${t("suppressedN").replace("{n}", under.length)} ${S.expanded.has(a.id) ? "▾" : "▸"}`) : null)),
      actions,
    );
    if (!under.length || !S.expanded.has(a.id)) return row;
    const box = h("div", { class: "kids", "data-kids-of": a.id }, sortAlarms(under).map((c) => alarmRow(c, true, null)));
    return h("div", { class: "with-kids" }, row, box);
  }

  function renderAlarms() {
    const all = [...S.alarms.values()];
    // alarms suppressed under a COMM alarm are collapsed under it (the lost source explains them)
    const kids = new Map();
    for (const a of all) {
      if (a.parent && !OPEN.has(a.state) && S.alarms.has(a.parent)) {
        if (!kids.has(a.parent)) kids.set(a.parent, []);
        kids.get(a.parent).push(a);
      }
    }
    const allOpen = all.filter((a) => OPEN.has(a.state));
    const open = sortAlarms(allOpen.filter(passes));
    const collapsed = new Set();
    for (const a of allOpen) for (const c of descendants(a.id, kids, [])) collapsed.add(c.id);
    const sup = sortAlarms(all.filter((a) => !OPEN.has(a.state) && !collapsed.has(a.id) && passes(a)));
    const list = $("alarm-list");
    if (!S.view.group) {
      list.replaceChildren(...open.map((a) => alarmRow(a, false, kids)));
    } else {
      const groups = new Map();
      for (const a of open) {
        const k = groupKey(a);
        if (!groups.has(k)) groups.set(k, []);
        groups.get(k).push(a);
      }
      const ordered = [...groups.entries()].sort((x, y) =>
        Math.min(...x[1].map((a) => a.priority)) - Math.min(...y[1].map((a) => a.priority)) ||
        y[1].length - x[1].length || (x[0] < y[0] ? -1 : 1));
      list.replaceChildren(...ordered.map(([k, rows]) => groupBox(k, rows, kids)));
    }
    $("alarm-empty").classList.toggle("hidden", open.length > 0);
    $("alarm-count").textContent = String(allOpen.length);
    $("alarm-shown").textContent = open.length === allOpen.length ? "" : t("shownOf").replace("{n}", open.length).replace("{m}", allOpen.length);
    $("suppressed-list").replaceChildren(...sup.map((a) => alarmRow(a, true, null)));
    $("sup-count").textContent = String(sup.length);
    $("suppressed-box").classList.toggle("hidden", sup.length === 0);
  }

  function groupBox(key, rows, kids) {
    const unack = rows.filter((a) => a.state === "UNACK" || a.state === "RTNUN").length;
    const ackable = rows.filter(ACKABLE).map((a) => a.id);
    const prios = [1, 2, 3].map((p) => [p, rows.filter((a) => a.priority === p).length]).filter(([, n]) => n);
    const head = h("div", { class: "group-head" },
      h("span", { class: "g-name", title: groupName(key) }, groupName(key)),
      h("span", { class: "g-count" }, t("groupCount").replace("{n}", rows.length).replace("{u}", unack)),
      ...prios.map(([p, n]) => h("span", { class: `chip p${p}` }, `P${p} ${n}`)),
      h("div", { class: "actions" }, ackable.length ? h("button", {
        class: "btn ack", type: "button", "data-action": "ack-group",
        onclick: () => groupAck(ackable),
      }, t("ackGroup").replace("{n}", ackable.length)) : null));
    return h("section", { class: "group", "data-group": key, role: "group" }, head,
      h("div", { class: "alarm-list" }, rows.map((a) => alarmRow(a, false, kids))));
  }

  function renderFilters() {
    const sel = $("f-hs");
    const cur = S.view.hs;
    sel.replaceChildren(h("option", { value: "" }, t("allHs")),
      ...S.hs.map((s) => h("option", { value: s.code }, `${s.code} ${s.name}`)));
    sel.value = S.hs.some((s) => s.code === cur) ? cur : "";
    $("f-state").value = S.view.state;
    $("f-group").value = S.view.group;
    $("f-text").value = S.view.q;
    for (const b of document.querySelectorAll("[data-prio]")) {
      b.setAttribute("aria-pressed", S.view.prio.includes(Number(b.dataset.prio)) ? "true" : "false");
    }
  }

  // the hazard-source status strip in the sticky top bar (stays in view on a phone)
  function renderHsStrip() {
    $("hs-strip").replaceChildren(...S.hs.map((s) => {
      const n = s.counts.reduce((x, y) => x + y, 0);
      return h("span", { class: `hs-chip ${s.status}`, "data-hs-chip": s.code, title: `${s.name} · ${tt("statusLong", s.status)}` },
        s.code, h("span", {}, tt("status", s.status)), n ? h("span", { class: "n" }, String(n)) : null);
    }));
  }

  function tileId(tag) { return "tile-" + tag.id; }

  function renderSources(rebuild) {
    renderHsStrip();
    const box = $("sources");
    const byCode = new Map(S.hs.map((s) => [s.code, s]));
    if (rebuild) {
      const groups = new Map(S.hs.map((s) => [s.code, []]));
      const other = [];
      for (const tag of S.tags.values()) (groups.get(tag.hs) || other).push(tag);
      const sections = [];
      for (const [code, tags] of groups) sections.push(hsSection(code, byCode.get(code), tags));
      if (other.length) sections.push(hsSection(null, null, other));
      box.replaceChildren(...sections);
      for (const tag of S.tags.values()) renderTile(tag);
      renderTileAlarms();
      renderTileUpkeep();
    }
    renderInUse();
    for (const s of S.hs) {
      const sec = document.querySelector(`[data-hs="${CSS.escape(s.code)}"]`);
      if (!sec) continue;
      sec.className = "hs " + s.status;
      sec.querySelector(".hs-status").textContent = tt("status", s.status);
      sec.querySelector(".hs-status").title = tt("statusLong", s.status);
      const counts = sec.querySelector(".hs-counts");
      counts.replaceChildren(...[1, 2, 3].filter((p) => s.counts[p - 1]).map(
        (p) => h("span", { class: `chip p${p}` }, `P${p} ${s.counts[p - 1]}`)));
    }
  }

  function hsSection(code, s, tags) {
    const head = h("div", { class: "hs-head" },
      h("span", { class: "hs-status" }, s ? tt("status", s.status) : "—"),
      h("div", { class: "hs-title" },
        code ? h("span", { class: "code" }, code) : null,
        s ? s.name : t("otherTags"),
        s && s.grade ? h("div", { class: "hs-meta" }, tt("gradeNames", s.grade)) : null),
      code ? h("span", { class: "hs-inuse hidden", "data-inuse": code }) : null,
      h("div", { class: "hs-counts" }));
    const tiles = h("div", { class: "tiles" }, tags.map((tag) => tileSkeleton(tag)));
    return h("section", { class: "hs " + (s ? s.status : "blue"), "data-hs": code || "" }, head, tiles);
  }

  function tileSkeleton(tag) {
    const sp = svg("svg", { class: "spark", viewBox: "0 0 100 30", preserveAspectRatio: "none", "aria-hidden": "true" });
    return h("div", { class: "tile", id: tileId(tag), "data-tag": tag.id, title: tag.name || tag.id },
      h("div", { class: "t-head" }, h("span", { class: "t-id" }, tag.id),
        h("span", { class: "t-badges" }, h("span", { class: "t-test hidden" }), h("span", { class: "t-cal hidden" }),
          h("span", { class: "t-q hidden" }))),
      h("div", { class: "t-name" }, tag.name || "\u00a0"),
      h("div", { class: "t-val" }, h("span", { class: "v" }, "—"), h("span", { class: "u" }, tag.unit || "")),
      sp);
  }

  function renderTile(tag) {
    const el = document.getElementById(tileId(tag));
    if (!el) return;
    const q = tag.quality || "none";
    el.classList.remove("q-good", "q-bad", "q-uncertain", "q-stale", "q-comm", "q-none");
    el.classList.add("q-" + q);
    const shown = q === "good" || q === "uncertain" ? tag.value : null;
    el.querySelector(".v").textContent = fmtValue(tag, shown);
    const qb = el.querySelector(".t-q");
    qb.textContent = tt("quality", q);
    qb.classList.toggle("hidden", q === "good");
    el.dataset.quality = q;
    el.dataset.value = shown === null || shown === undefined ? "" : String(shown);
    drawSpark(el.querySelector("svg.spark"), tag);
  }

  function drawSpark(sp, tag) {
    const pts = tag.trend.filter((p) => p[1] !== null && p[1] !== undefined);
    sp.replaceChildren();
    if (tag.kind === "discrete" || pts.length < 2) return;
    let lo, hi;
    if (tag.range) { [lo, hi] = tag.range; } else {
      lo = Math.min(...pts.map((p) => p[1])); hi = Math.max(...pts.map((p) => p[1]));
    }
    // zoom in on the data but keep the nearest limits in view
    const vals = pts.map((p) => p[1]);
    let dlo = Math.min(...vals), dhi = Math.max(...vals);
    for (const v of Object.values(tag.limits || {})) { if (v >= lo && v <= hi) { dlo = Math.min(dlo, v); dhi = Math.max(dhi, v); } }
    const pad = (dhi - dlo) * 0.15 || Math.abs(hi - lo) * 0.05 || 1;
    lo = Math.max(lo, dlo - pad); hi = Math.min(hi, dhi + pad);
    if (hi <= lo) hi = lo + 1;
    const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
    const span = t1 - t0 || 1;
    const y = (v) => (30 - ((v - lo) / (hi - lo)) * 28 - 1).toFixed(2);
    for (const [name, v] of Object.entries(tag.limits || {})) {
      if (v < lo || v > hi) continue;
      sp.append(svg("line", { class: name, x1: 0, x2: 100, y1: y(v), y2: y(v) }));
    }
    const line = pts.map((p) => `${(((p[0] - t0) / span) * 100).toFixed(2)},${y(p[1])}`).join(" ");
    sp.append(svg("polyline", { points: line }));
  }

  function renderTileAlarms() {
    const worst = new Map();
    for (const a of S.alarms.values()) {
      if (!OPEN.has(a.state)) continue;
      const cur = worst.get(a.tag);
      const unack = a.state === "UNACK" || a.state === "RTNUN";
      if (!cur || a.priority < cur.p) worst.set(a.tag, { p: a.priority, unack: unack || (cur && cur.p === a.priority && cur.unack) });
      else if (a.priority === cur.p && unack) cur.unack = true;
    }
    // a tag whose alarm is suppressed under an open COMM alarm is shown in that alarm's colour
    for (const a of S.alarms.values()) {
      let root = a.parent ? S.alarms.get(a.parent) : null;
      for (let i = 0; root && root.parent && i < 4; i++) root = S.alarms.get(root.parent) || root;
      if (!root || !OPEN.has(root.state) || worst.has(a.tag)) continue;
      worst.set(a.tag, { p: root.priority, unack: root.state === "UNACK" || root.state === "RTNUN" });
    }
    for (const el of document.querySelectorAll(".tile")) {
      const w = worst.get(el.dataset.tag);
      el.classList.remove("a1", "a2", "a3", "unack");
      if (w) {
        el.classList.add("a" + w.p);
        if (w.unack) el.classList.add("unack");
      }
      el.dataset.alarm = w ? String(w.p) : "";
    }
  }

  // ------------------------------------------------------------------ point table, test mode, calibration (issue 17)
  const QUALITIES = ["good", "uncertain", "bad", "stale", "comm", "none"];
  const PSTATES = ["alarm", "test", "cal", "out"];
  const COLUMNS = [
    ["id", "colTag"], ["source", "colSource"], ["where", "colWhere"], ["raw", "colRaw"], ["value", "colValue"],
    ["quality", "colQuality"], ["age", "colAge"], ["alarm", "colAlarm"], ["upkeep", "colUpkeep"], [null, "colActions"],
  ];
  const QRANK = { good: 0, uncertain: 1, bad: 2, stale: 3, comm: 4, none: 5 };
  const rowEls = new Map(); // tag id -> <tr> of the table as last rendered

  function savePview() { LS.setItem("hazardgw.points", JSON.stringify(S.pview)); }

  function mergeExtras(list) {
    for (const d of list || []) {
      S.pt.set(d.id, {
        source: d.source || null, source_type: d.source_type || null, where: d.where || null,
        raw: d.raw || (S.pt.get(d.id) || {}).raw || null, test: d.test || null, calibration: d.calibration || null,
        in_service: d.in_service, not_in_service: d.not_in_service || null,
      });
      if (d.test) S.tests.set(d.id, d.test); else S.tests.delete(d.id);
    }
  }
  async function refreshPoints() {
    try {
      const r = await api("GET", "/api/tags?raw=true");
      if (r.status !== 200 || !Array.isArray(r.data)) return;
      mergeExtras(r.data);
      renderTileUpkeep();
      if (S.pview.view === "points") renderPoints();
    } catch (e) { /* next refresh */ }
  }
  async function refreshTests() {
    try {
      const r = await api("GET", `/api/tests?from=${encodeURIComponent(new Date().toISOString())}`);
      if (r.status !== 200 || !r.data) return;
      S.tests = new Map((r.data.running || []).map((x) => [x.tag, x]));
      for (const [id, p] of S.pt) p.test = S.tests.get(id) || null;
      renderTileUpkeep();
    } catch (e) { /* next refresh */ }
  }
  async function refreshInUse() {
    try {
      const r = await api("GET", "/api/online");
      if (r.status !== 200 || !r.data) return;
      S.inuse = r.data.in_use || null;
      renderInUse();
    } catch (e) { /* next refresh */ }
  }
  const pct = (v) => (v === null || v === undefined ? "—" : (v * 100).toFixed(1) + "%");
  function renderInUse() {
    const u = S.inuse;
    const site = $("inuse-site");
    if (!u || !u.site || !u.site.tags) { site.classList.add("hidden"); return; }
    site.classList.remove("hidden");
    site.textContent = `${t("inUse")} ${pct(u.site.hour)}`;
    site.title = `${t("inUseHelp")} · ${u.site.in_service ?? "—"}/${u.site.tags}`;
    site.classList.toggle("low", u.site.hour !== null && u.site.hour < 1);
    for (const el of document.querySelectorAll("[data-inuse]")) {
      const e = (u.hazard_sources || {})[el.dataset.inuse];
      if (!e || !e.tags) { el.classList.add("hidden"); continue; }
      el.classList.remove("hidden");
      el.textContent = `${t("inUse")} ${pct(e.hour)}`;
      el.title = `${t("inUseHelp")} · ${e.in_service ?? "—"}/${e.tags}`;
      el.classList.toggle("low", e.hour !== null && e.hour < 1);
    }
  }

  function renderTileUpkeep() {
    for (const el of document.querySelectorAll(".tile")) {
      const id = el.dataset.tag;
      const test = S.tests.get(id);
      const p = S.pt.get(id) || {};
      const cal = p.calibration;
      const tb = el.querySelector(".t-test");
      el.classList.toggle("in-test", !!test);
      tb.textContent = t("testMark");
      tb.title = test ? `${t("testUntil")} ${fmtTime(test.until)} · ${test.by}` : "";
      tb.classList.toggle("hidden", !test);
      const cb = el.querySelector(".t-cal");
      const show = cal && (cal.status === "overdue" || cal.status === "due");
      cb.classList.toggle("hidden", !show);
      if (show) {
        cb.textContent = tt("calShort", cal.status);
        cb.className = `t-cal ${cal.status}`;
        cb.title = `${t("calDue")} ${cal.due}`;
      }
      el.dataset.test = test ? "1" : "";
    }
  }

  function renderView() {
    const points = S.pview.view === "points";
    $("sources").classList.toggle("hidden", points);
    $("points-view").classList.toggle("hidden", !points);
    document.querySelector(".layout").classList.toggle("points-mode", points);
    for (const b of document.querySelectorAll(".view-switch .tab")) {
      b.setAttribute("aria-selected", b.dataset.view === S.pview.view ? "true" : "false");
    }
    if (points) { renderPointTools(); renderPoints(); }
  }
  function setPview(k, v) { S.pview[k] = v; savePview(); renderPointTools(); renderPoints(); }

  function renderPointTools() {
    const v = S.pview;
    const sources = [...new Set([...S.pt.values()].map((p) => p.source).filter(Boolean))].sort();
    const fill = (sel, all, items, cur) => {
      sel.replaceChildren(h("option", { value: "" }, all), ...items.map(([val, text]) => h("option", { value: val }, text)));
      sel.value = items.some(([val]) => val === cur) ? cur : "";
    };
    fill($("p-source"), t("allSources"), sources.map((x) => [x, x]), v.source);
    fill($("p-hs"), t("allHs"), S.hs.map((x) => [x.code, `${x.code} ${x.name}`]), v.hs);
    fill($("p-quality"), t("allQualities"), QUALITIES.map((q) => [q, tt("quality", q)]), v.quality);
    fill($("p-state"), t("allStates"), PSTATES.map((x) => [x, tt("pstate", x)]), v.state);
    if ($("p-text").value !== v.q) $("p-text").value = v.q;
    const b = $("p-test-source");
    b.classList.toggle("hidden", !v.source);
    if (v.source) {
      const any = [...S.pt.entries()].some(([id, p]) => p.source === v.source && S.tests.has(id));
      b.textContent = (any ? t("endTestSource") : t("testSource")).replace("{s}", v.source);
      b.dataset.mode = any ? "end" : "start";
    }
    const head = $("points-head");
    head.replaceChildren(...COLUMNS.map(([key, label]) => {
      const th = h("th", { scope: "col", "data-col": key || "actions" }, t(label));
      if (key) {
        th.classList.add("sortable");
        th.setAttribute("aria-sort", v.sort === key ? (v.dir > 0 ? "ascending" : "descending") : "none");
        th.addEventListener("click", () => { if (v.sort === key) v.dir = -v.dir; else { v.sort = key; v.dir = 1; } savePview(); renderPointTools(); renderPoints(); });
      }
      return th;
    }));
  }

  let worstCache = null; // tag -> worst open alarm, while a whole table is rendered
  function worstOf() {
    const m = new Map();
    for (const a of S.alarms.values()) {
      if (!OPEN.has(a.state)) continue;
      const w = m.get(a.tag);
      if (!w || a.priority < w.priority || (a.priority === w.priority && a.state === "UNACK")) m.set(a.tag, a);
    }
    return m;
  }
  function worstAlarm(tagId) {
    return (worstCache || worstOf()).get(tagId) || null;
  }
  function ageSeconds(tag) { return tag.ts ? Math.max(0, Math.round(Date.now() - tag.ts / 1e6) / 1000) : null; }
  function fmtAge(s) {
    if (s === null) return "—";
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    return `${Math.floor(s / 3600)} h`;
  }
  function upkeepRank(id) {
    const p = S.pt.get(id) || {};
    if (S.tests.has(id)) return 0;
    const c = p.calibration ? p.calibration.status : "none";
    return c === "overdue" ? 1 : c === "due" ? 2 : p.in_service === false ? 3 : 4;
  }
  function pointPasses(tag) {
    const v = S.pview;
    const p = S.pt.get(tag.id) || {};
    if (v.source && p.source !== v.source) return false;
    if (v.hs && tag.hs !== v.hs) return false;
    if (v.quality && (tag.quality || "none") !== v.quality) return false;
    if (v.state === "alarm" && !worstAlarm(tag.id)) return false;
    if (v.state === "test" && !S.tests.has(tag.id)) return false;
    if (v.state === "cal" && !(p.calibration && (p.calibration.status === "due" || p.calibration.status === "overdue"))) return false;
    if (v.state === "out" && p.in_service !== false) return false;
    if (v.q) {
      const text = [tag.id, tag.name, p.where, p.source].filter(Boolean).join(" ").toLowerCase();
      if (!text.includes(v.q.toLowerCase())) return false;
    }
    return true;
  }
  function pointKey(tag, key) {
    const p = S.pt.get(tag.id) || {};
    switch (key) {
      case "source": return p.source || "~";
      case "where": return p.where || "~";
      case "raw": return (p.raw && p.raw.text) || "~";
      case "value": return tag.value === null || tag.value === undefined ? Infinity : tag.value;
      case "quality": return QRANK[tag.quality || "none"];
      case "age": { const a = ageSeconds(tag); return a === null ? Infinity : a; }
      case "alarm": { const w = worstAlarm(tag.id); return w ? w.priority : 9; }
      case "upkeep": return upkeepRank(tag.id);
      default: return tag.id;
    }
  }

  function renderPoints() {
    if (!S.site) return;
    worstCache = worstOf();
    try { renderPointRows(); } finally { worstCache = null; }
  }
  function renderPointRows() {
    const v = S.pview;
    const all = [...S.tags.values()];
    const rows = all.filter(pointPasses);
    rows.sort((a, b) => {
      const x = pointKey(a, v.sort), y = pointKey(b, v.sort);
      return (x < y ? -1 : x > y ? 1 : 0) * v.dir || (a.id < b.id ? -1 : 1);
    });
    rowEls.clear();
    $("points-body").replaceChildren(...rows.map((tag) => {
      const tr = h("tr", { "data-point": tag.id });
      rowEls.set(tag.id, tr);
      fillPointRow(tr, tag);
      return tr;
    }));
    $("p-count").textContent = t("shownOf").replace("{n}", rows.length).replace("{m}", all.length);
  }
  function updatePointRow(tag) {
    const tr = rowEls.get(tag.id);
    if (tr) fillPointRow(tr, tag);
  }
  function cell(key, label, ...children) { return h("td", { "data-col": key, "data-label": t(label) }, ...children); }

  function fillPointRow(tr, tag) {
    const p = S.pt.get(tag.id) || {};
    const q = tag.quality || "none";
    const shown = q === "good" || q === "uncertain" ? tag.value : null;
    const w = worstAlarm(tag.id);
    const test = S.tests.get(tag.id);
    const cal = p.calibration;
    const upkeep = [];
    if (test) upkeep.push(h("span", { class: "chip test", title: `${test.by}${test.comment ? " · " + test.comment : ""}` },
      `${t("testMark")} ${t("testUntil")} ${fmtTime(test.until)}`));
    if (cal && cal.status !== "none") upkeep.push(h("span", { class: `cal ${cal.status}`, title: `${t("calLast")} ${cal.last}` },
      `${tt("calShort", cal.status)} ${cal.due}`));
    if (p.in_service === false && !test) upkeep.push(h("span", { class: "chip out", title: (p.not_in_service || []).map((x) => tt("reason", x)).join(", ") }, t("notInService")));
    const actions = h("div", { class: "actions" },
      test ? h("button", { class: "btn", type: "button", "data-action": "end-test", onclick: () => endTest(tag.id) }, t("endTest"))
        : h("button", { class: "btn", type: "button", "data-action": "test", onclick: () => askTest({ tag: tag.id }) }, t("test")),
      h("button", { class: "btn", type: "button", "data-action": "calibrate", onclick: () => askCal(tag.id) }, t("calibrated")));
    const age = ageSeconds(tag);
    tr.className = `q-${q}${w ? " a" + w.priority : ""}${test ? " in-test" : ""}`;
    tr.dataset.quality = q;
    tr.dataset.test = test ? "1" : "";
    tr.replaceChildren(
      cell("id", "colTag", h("b", {}, tag.id), tag.name ? h("div", { class: "muted name" }, tag.name) : null),
      cell("source", "colSource", p.source || "—"),
      cell("where", "colWhere", h("span", { class: "mono" }, p.where || "—")),
      cell("raw", "colRaw", h("span", { class: "mono" }, p.raw ? p.raw.text : "—")),
      cell("value", "colValue", h("b", {}, fmtValue(tag, shown)), " ", h("span", { class: "muted" }, tag.unit || "")),
      cell("quality", "colQuality", h("span", { class: `qchip q-${q}` }, tt("quality", q))),
      cell("age", "colAge", fmtAge(age)),
      cell("alarm", "colAlarm", w ? h("span", { class: `chip p${w.priority}${w.test ? " test" : ""}` },
        `P${w.priority} ${w.condition.toUpperCase()} ${tt("state", w.state)}${w.test ? " · " + t("testMark") : ""}`) : "—"),
      cell("upkeep", "colUpkeep", ...(upkeep.length ? upkeep : ["—"])),
      cell("actions", "colActions", actions),
    );
  }
  function tickAges() {
    if (S.pview.view !== "points") return;
    for (const [id, tr] of rowEls) {
      const tag = S.tags.get(id);
      const td = tr.querySelector('td[data-col="age"]');
      if (tag && td) td.textContent = fmtAge(ageSeconds(tag));
    }
  }

  // actions: test mode (one tag or a whole source) and calibration
  async function upkeep(method, path, body, done) {
    let r;
    try {
      r = await api(method, path, body);
    } catch (e) {
      toast(`${t("failed")}${S.lang === "zh" ? "：" : ": "}${errorText(0, null, e)}`, "error");
      return;
    }
    const retry = () => upkeep(method, path, body, done);
    if (r.status === 200) { done(r.data); refreshPoints(); return; }
    if (r.status === 401) return askToken("invalidToken", retry);
    if (r.status === 403 && r.data && r.data.error === "forbidden") return askToken("needOperator", retry);
    toast(`${t("failed")}${S.lang === "zh" ? "：" : ": "}${errorText(r.status, r.data, null)}`, "error");
  }
  let testTarget = null;
  function askTest(target) {
    testTarget = target;
    $("test-what").textContent = target.tag || `${t("source")} ${target.source}`;
    $("test-comment").value = "";
    $("dlg-test").showModal();
  }
  function onTestClose() {
    if ($("dlg-test").returnValue !== "ok" || !testTarget) return;
    const tg = testTarget;
    const body = { duration: $("test-duration").value };
    const c = $("test-comment").value.trim();
    if (c) body.comment = c;
    const path = tg.tag ? `/api/tags/${encodeURIComponent(tg.tag)}/test` : `/api/sources/${encodeURIComponent(tg.source)}/test`;
    upkeep("POST", path, body, (d) => {
      for (const x of d.started || []) S.tests.set(x.tag, x);
      renderTileUpkeep();
      toast(t("doneTest").replace("{n}", (d.started || []).length) + (d.skipped && d.skipped.length ? " · " + t("skippedN").replace("{n}", d.skipped.length) : ""));
    });
  }
  function endTest(tag) {
    upkeep("DELETE", `/api/tags/${encodeURIComponent(tag)}/test`, undefined, (d) => {
      for (const x of d.ended || []) S.tests.delete(x.tag);
      renderTileUpkeep();
      const rec = (d.ended || [])[0];
      toast(`${t("doneEndTest")}: ${tag}` + (rec ? ` · ${tt("result", rec.result)}` : ""));
    });
  }
  function endSourceTest(source) {
    upkeep("DELETE", `/api/sources/${encodeURIComponent(source)}/test`, undefined, (d) => {
      for (const x of d.ended || []) S.tests.delete(x.tag);
      renderTileUpkeep();
      toast(`${t("doneEndTest")}: ${(d.ended || []).length}`);
    });
  }
  let calTag = null;
  function askCal(tag) {
    calTag = tag;
    $("cal-tag").textContent = tag;
    const d = new Date();
    $("cal-date").value = new Intl.DateTimeFormat("en-CA", { timeZone: S.tz }).format(d);
    $("cal-interval").value = "";
    $("cal-comment").value = "";
    $("dlg-cal").showModal();
  }
  function onCalClose() {
    if ($("dlg-cal").returnValue !== "ok" || !calTag) return;
    const tag = calTag;
    const body = {};
    if ($("cal-date").value) body.date = $("cal-date").value;
    if ($("cal-interval").value) body.interval = $("cal-interval").value;
    const c = $("cal-comment").value.trim();
    if (c) body.comment = c;
    upkeep("POST", `/api/tags/${encodeURIComponent(tag)}/calibration`, body, (d) => {
      toast(`${t("doneCal")}: ${tag} · ${t("calDue")} ${d.due}`);
    });
  }
  window.hazardgw.refreshPoints = refreshPoints;

  function tickClock() {
    const now = Date.now() * 1e6;
    $("clock").textContent = S.tz ? fmtTime(now) : "";
    tickAges();
    if (!S.connected && S.site) {
      const age = Math.round((Date.now() - S.lastMsg) / 1000);
      $("conn-text").textContent = `${t("disconnected")} · ${t("lastUpdate")} ${age}${t("ago")}`;
    }
  }

  // ------------------------------------------------------------------ start
  function init() {
    $("btn-lang").addEventListener("click", () => {
      S.lang = S.lang === "zh" ? "en" : "zh";
      LS.setItem("hazardgw.lang", S.lang);
      for (const k of Object.keys(fmtCache)) delete fmtCache[k];
      applyLang();
    });
    $("btn-sound").addEventListener("click", () => {
      S.muted = !S.muted;
      LS.setItem("hazardgw.muted", S.muted ? "1" : "0");
      renderSound();
      renderBanner();
    });
    $("btn-silence").addEventListener("click", silenceHorn);
    $("btn-token").addEventListener("click", () => askToken("needToken"));
    $("dlg-token").addEventListener("close", onTokenClose);
    $("dlg-shelve").addEventListener("close", onShelveClose);
    $("dlg-test").addEventListener("close", onTestClose);
    $("dlg-cal").addEventListener("close", onCalClose);
    for (const b of document.querySelectorAll(".view-switch .tab")) {
      b.addEventListener("click", () => { S.pview.view = b.dataset.view; savePview(); renderView(); if (b.dataset.view === "points") refreshPoints(); });
    }
    $("p-text").addEventListener("input", (e) => { S.pview.q = e.target.value.trim(); savePview(); renderPoints(); });
    $("p-source").addEventListener("change", (e) => setPview("source", e.target.value));
    $("p-hs").addEventListener("change", (e) => setPview("hs", e.target.value));
    $("p-quality").addEventListener("change", (e) => setPview("quality", e.target.value));
    $("p-state").addEventListener("change", (e) => setPview("state", e.target.value));
    $("p-test-source").addEventListener("click", (e) => {
      if (e.currentTarget.dataset.mode === "end") endSourceTest(S.pview.source); else askTest({ source: S.pview.source });
    });
    // the slow fields: never faster than the stream (readings come at most once a second)
    setInterval(() => { if (S.connected && !document.hidden && S.pview.view === "points") refreshPoints(); }, 5000);
    setInterval(() => { if (S.connected && !document.hidden && S.pview.view !== "points") refreshTests(); }, 15000);
    setInterval(() => { if (S.connected && !document.hidden) refreshInUse(); }, 60000);
    const setView = (k, v) => { S.view[k] = v; saveView(); renderAlarms(); };
    $("f-text").addEventListener("input", (e) => setView("q", e.target.value.trim()));
    $("f-hs").addEventListener("change", (e) => setView("hs", e.target.value));
    $("f-state").addEventListener("change", (e) => setView("state", e.target.value));
    $("f-group").addEventListener("change", (e) => setView("group", e.target.value));
    for (const b of document.querySelectorAll("[data-prio]")) {
      b.addEventListener("click", () => {
        const p = Number(b.dataset.prio);
        const on = S.view.prio.includes(p);
        S.view.prio = on ? S.view.prio.filter((x) => x !== p) : [...S.view.prio, p].sort();
        b.setAttribute("aria-pressed", on ? "false" : "true");
        saveView();
        renderAlarms();
      });
    }
    document.addEventListener("pointerdown", ensureAudio);
    document.addEventListener("keydown", ensureAudio);
    $("banner").addEventListener("click", ensureAudio);
    applyLang();
    setConnected(false);
    setInterval(tickClock, 1000);
    stream();
  }
  init();
})();
