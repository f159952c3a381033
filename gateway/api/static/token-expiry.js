/* hazardgw duty console: warns when the console's API token expires within 7 days.
 *
 * Self-contained (issue 25 item 2): reads the token the console keeps in localStorage,
 * asks GET /api/me (name, role, expiry) at load, when the token changes and every 30
 * minutes, and shows a yellow line under the top bar while the token expires within 7
 * days (or a red one once it has expired). Nothing else in the console depends on it.
 */
"use strict";
(() => {
  const LS = window.localStorage;
  const TEXT = {
    zh: { soon: (n, d) => `令牌“${n}”将于 ${d} 过期，请向管理员申请新令牌。`,
          expired: (n) => `令牌“${n}”已过期，请向管理员申请新令牌。` },
    en: { soon: (n, d) => `Token "${n}" expires on ${d}: ask an administrator for a new one.`,
          expired: (n) => `Token "${n}" has expired: ask an administrator for a new one.` },
  };
  let checked = null;

  function line() {
    let el = document.getElementById("token-expiry");
    if (!el) {
      el = document.createElement("div");
      el.id = "token-expiry";
      el.setAttribute("role", "status");
      const anchor = document.getElementById("banner");
      if (anchor) anchor.after(el);
      else document.body.prepend(el);
    }
    return el;
  }

  function show(kind, text) {
    const el = line();
    el.className = kind ? `banner ${kind}` : "banner hidden";
    el.textContent = text || "";
  }

  async function check() {
    const token = LS.getItem("hazardgw.token") || "";
    checked = token;
    if (!token) return show(null);
    let me;
    try {
      const r = await fetch("/api/me", { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
      if (r.status === 401) {
        const body = await r.json().catch(() => ({}));
        const m = /token .(.+). has expired/.exec(String(body.detail || ""));
        if (m) me = { expired: true, name: m[1] };
        else return show(null);
      } else if (!r.ok) return show(null);
      else me = await r.json();
    } catch (e) {
      return; // offline: the console shows the connection state itself
    }
    const lang = (LS.getItem("hazardgw.lang") || navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en";
    if (me.expired) return show("error", TEXT[lang].expired(me.name));
    if (!me.expires_soon || me.expires == null) return show(null);
    const day = new Date(me.expires / 1e6).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB",
      { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
    show("info", TEXT[lang].soon(me.name, day));
  }

  window.addEventListener("DOMContentLoaded", check);
  setInterval(() => { if ((LS.getItem("hazardgw.token") || "") !== checked) check(); }, 5000);
  setInterval(check, 30 * 60 * 1000);
})();
