// Shared by the index and the symbol page: formatting, fetch, the token in the URL.
"use strict";

const gex = (() => {
  // `?token=` has set the cookie by the time this runs; take it out of the address bar
  // (and so out of the history and of any link copied from it).
  const url = new URL(window.location.href);
  if (url.searchParams.has("token")) {
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  const NY = new Intl.DateTimeFormat("en-US", {
    timeZone: "America/New_York", hour: "2-digit", minute: "2-digit", second: "2-digit",
    hour12: false,
  });
  const NY_DAY = new Intl.DateTimeFormat("en-CA", {
    timeZone: "America/New_York", year: "numeric", month: "2-digit", day: "2-digit",
  });

  function money(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    const sign = v < 0 ? "−" : "+";
    if (a >= 1e9) return sign + (a / 1e9).toFixed(2) + "B";
    if (a >= 1e6) return sign + (a / 1e6).toFixed(1) + "M";
    if (a >= 1e3) return sign + (a / 1e3).toFixed(1) + "K";
    return sign + a.toFixed(0);
  }

  function pct(v) {
    if (v === null || v === undefined) return "–";
    return (v >= 0 ? "+" : "−") + Math.abs(v).toFixed(2) + "%";
  }

  function price(v) {
    return v === null || v === undefined ? "–" : Number(v).toFixed(2);
  }

  function clock(ms) {
    return ms === null || ms === undefined ? "–" : NY.format(new Date(ms));
  }

  function day(ms) {
    return NY_DAY.format(new Date(ms));
  }

  async function json(path) {
    const resp = await fetch(path, { credentials: "same-origin" });
    if (!resp.ok) throw new Error(path + ": " + resp.status + " " + (await resp.text()));
    return resp.json();
  }

  function status(text, bad) {
    const el = document.getElementById("status");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("bad", Boolean(bad));
  }

  // EventSource reconnects by itself; `onreopen` runs after a reconnect (the stream may
  // have been dropped for falling behind: the page reloads what it missed).
  function live(path, handlers, onreopen) {
    const source = new EventSource(path);
    let opened = false;
    source.onopen = () => {
      status("live");
      if (opened && onreopen) onreopen();
      opened = true;
    };
    source.onerror = () => status("reconnecting…", true);
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
    }
    return source;
  }

  return { money, pct, price, clock, day, json, status, live };
})();
