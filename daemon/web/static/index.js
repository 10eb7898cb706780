// The index: one row per watched target, sortable by any column, updated live.
"use strict";

(() => {
  const rows = new Map(); // target key -> row object
  let sortKey = "symbol";
  let sortDir = 1;
  const body = document.querySelector("#symbols tbody");

  const keyOf = (r) => (r.expiry ? r.symbol + ":" + r.expiry : r.symbol);

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function compare(a, b) {
    const x = a[sortKey];
    const y = b[sortKey];
    const xNull = x === null || x === undefined;
    const yNull = y === null || y === undefined;
    if (xNull || yNull) return xNull === yNull ? 0 : xNull ? 1 : -1; // nulls last
    if (typeof x === "number") return sortDir * (x - y);
    return sortDir * String(x).localeCompare(String(y));
  }

  function render() {
    const sorted = [...rows.values()].sort(compare);
    body.replaceChildren(
      ...sorted.map((r) => {
        const tr = document.createElement("tr");
        tr.dataset.key = keyOf(r);
        const link = document.createElement("a");
        const q = new URLSearchParams({ symbol: r.symbol });
        if (r.expiry) q.set("expiry", r.expiry);
        link.href = "/view?" + q.toString();
        link.textContent = r.symbol;
        const sym = document.createElement("td");
        sym.append(link);
        tr.append(
          sym,
          cell(r.expiry || "all"),
          cell(r.regime || "–", "regime " + (r.regime || "")),
          cell(gex.money(r.net), "num"),
          cell(gex.price(r.spot), "num"),
          cell(gex.pct(r.flip_distance_pct), "num"),
          cell(r.t ? gex.day(r.t) + " " + gex.clock(r.t) : "–"),
          cell(r.health, "health " + r.health),
        );
        return tr;
      }),
    );
    for (const th of document.querySelectorAll("#symbols th")) {
      th.classList.toggle("asc", th.dataset.key === sortKey && sortDir === 1);
      th.classList.toggle("desc", th.dataset.key === sortKey && sortDir === -1);
    }
  }

  async function load() {
    const data = await gex.json("/api/symbols");
    rows.clear();
    for (const r of data.symbols) rows.set(keyOf(r), r);
    render();
  }

  for (const th of document.querySelectorAll("#symbols th")) {
    th.addEventListener("click", () => {
      if (sortKey === th.dataset.key) sortDir = -sortDir;
      else {
        sortKey = th.dataset.key;
        sortDir = 1;
      }
      render();
    });
  }

  load()
    .then(() => {
      gex.live("/api/live", {
        summary: (s) => {
          const r = rows.get(s.key);
          if (!r) return;
          Object.assign(r, s, { health: r.health === "failing" ? "failing" : "ok" });
          render();
        },
        alert: () => load(),
      }, load);
    })
    .catch((err) => gex.status(String(err), true));
})();
