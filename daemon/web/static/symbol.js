// One symbol (and expiry entry): the strike x time heatmap of net GEX with spot, flip and
// walls over the day, alerts as markers, the current profile with the settled overlay.
"use strict";

(() => {
  const params = new URLSearchParams(window.location.search);
  const symbol = (params.get("symbol") || "").toUpperCase();
  const expiry = params.get("expiry") || "";
  const windowPct = params.get("window_pct") || "";
  const query = new URLSearchParams();
  if (expiry) query.set("expiry", expiry);
  if (windowPct) query.set("window_pct", windowPct);
  document.getElementById("title").textContent = symbol + (expiry ? " " + expiry : "");
  document.title = "gex-alertd · " + symbol;

  const LEVELS = [
    { key: "spot", name: "spot", color: "#f2f2f2", type: "solid" },
    { key: "flip", name: "gamma flip", color: "#f2c14e", type: "dashed" },
    { key: "call_wall", name: "call wall", color: "#56c271", type: "solid" },
    { key: "put_wall", name: "put wall", color: "#e0607e", type: "solid" },
  ];
  const DIVERGING = ["#b2182b", "#d6604d", "#f4a582", "#2a2f36", "#92c5de", "#4393c3", "#2166ac"];

  const state = {
    strikes: [], times: [], net: [], // net: one array per time column (null = missing)
    lines: { spot: [], flip: [], call_wall: [], put_wall: [] },
    alerts: [], latest: null, settled: null, top: 1,
  };

  const heat = echarts.init(document.getElementById("heatmap"), "dark", { renderer: "canvas" });
  const prof = echarts.init(document.getElementById("profile"), "dark", { renderer: "canvas" });
  window.addEventListener("resize", () => { heat.resize(); prof.resize(); draw(); });

  // a price as a fractional row index of the strike grid (rows are equal height, strikes
  // need not be equally spaced); null outside the grid
  function row(priceValue) {
    const s = state.strikes;
    if (priceValue === null || priceValue === undefined || !s.length) return null;
    if (priceValue < s[0] || priceValue > s[s.length - 1]) return null;
    let lo = 0;
    let hi = s.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (s[mid] <= priceValue) lo = mid; else hi = mid;
    }
    if (s[hi] === s[lo]) return lo;
    return lo + (priceValue - s[lo]) / (s[hi] - s[lo]);
  }

  function nearestStrike(priceValue) {
    if (priceValue === null || priceValue === undefined || !state.strikes.length) return null;
    let best = state.strikes[0];
    for (const s of state.strikes) if (Math.abs(s - priceValue) < Math.abs(best - priceValue)) best = s;
    return best;
  }

  function loadFrame(frame) {
    state.strikes = frame.strikes;
    state.times = frame.t.slice();
    const k = frame.strikes.length;
    state.net = [];
    for (let i = 0; i < frame.t.length; i++) {
      const col = new Array(k);
      for (let j = 0; j < k; j++) {
        const q = frame.net_q[i * k + j];
        col[j] = q === frame.missing ? null : q * frame.scale;
      }
      state.net.push(col);
    }
    for (const lv of LEVELS) state.lines[lv.key] = frame[lv.key].slice();
    state.latest = frame.latest;
    state.settled = frame.settled;
    state.top = frame.scale * 32767 || 1;
  }

  function addSnapshot(snap) {
    const last = state.times.length ? state.times[state.times.length - 1] : -Infinity;
    if (snap.t <= last) return false;
    const byStrike = new Map();
    snap.strikes.forEach((s, i) => byStrike.set(s, snap.net_gex[i]));
    const col = state.strikes.map((s) => (byStrike.has(s) ? byStrike.get(s) : null));
    state.times.push(snap.t);
    state.net.push(col);
    for (const lv of LEVELS) state.lines[lv.key].push(snap[lv.key]);
    state.latest = snap;
    return true;
  }

  // The cells are painted into a canvas of their own and shown as one image under the
  // chart's axes, lines and markers: a day is 1,560 x 200 cells, and one chart element per
  // cell (ECharts' heatmap series) took seconds to render on every new snapshot.
  const GRID = { left: 70, right: 90, top: 36, bottom: 36 };
  const cells = document.createElement("canvas"); // one pixel per cell
  const image = document.createElement("canvas"); // the cells at the grid's size
  const palette = gradient(DIVERGING, 256);
  const grid = { columns: 0, rows: 0, painted: 0 };

  function gradient(stops, n) {
    const rgb = stops.map((c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)));
    const out = new Uint8ClampedArray(n * 4);
    for (let k = 0; k < n; k++) {
      const x = (k / (n - 1)) * (rgb.length - 1);
      const a = Math.min(Math.floor(x), rgb.length - 2);
      const f = x - a;
      for (let c = 0; c < 3; c++) out[k * 4 + c] = rgb[a][c] + f * (rgb[a + 1][c] - rgb[a][c]);
      out[k * 4 + 3] = 255;
    }
    return out;
  }

  function paint() {
    const n = state.net.length;
    const k = state.strikes.length;
    grid.columns = n;
    grid.rows = k;
    grid.painted = 0;
    if (!n || !k) return null;
    cells.width = n;
    cells.height = k;
    const ctx = cells.getContext("2d");
    const img = ctx.createImageData(n, k);
    const px = img.data;
    const top = state.top || 1;
    for (let i = 0; i < n; i++) {
      const col = state.net[i];
      for (let j = 0; j < k; j++) {
        const v = col[j];
        if (v === null || v === undefined) continue; // transparent: no value at this strike
        // square-root scale: the day's few large strikes would leave the rest one colour
        const x = Math.max(-1, Math.min(1, v / top));
        const t = Math.round(((Math.sign(x) * Math.sqrt(Math.abs(x)) + 1) / 2) * 255);
        const at = ((k - 1 - j) * n + i) * 4; // strikes go up the y axis
        px[at] = palette[t * 4];
        px[at + 1] = palette[t * 4 + 1];
        px[at + 2] = palette[t * 4 + 2];
        px[at + 3] = 255;
        grid.painted++;
      }
    }
    ctx.putImageData(img, 0, 0);
    const el = document.getElementById("heatmap");
    image.width = Math.max(1, el.clientWidth - GRID.left - GRID.right);
    image.height = Math.max(1, el.clientHeight - GRID.top - GRID.bottom);
    const big = image.getContext("2d");
    big.imageSmoothingEnabled = false; // hard cell edges
    big.clearRect(0, 0, image.width, image.height);
    big.drawImage(cells, 0, 0, image.width, image.height);
    return image;
  }

  function heatOption() {
    const k = state.strikes.length;
    const painted = paint();
    const lineSeries = LEVELS.map((lv) => ({
      id: "line-" + lv.key, name: lv.name, type: "line", yAxisIndex: 1, showSymbol: false,
      connectNulls: false, animation: false,
      lineStyle: { color: lv.color, width: 1.5, type: lv.type }, itemStyle: { color: lv.color },
      data: state.lines[lv.key].map((p, i) => [i, row(p), p]),
    }));
    const markers = state.alerts
      .map((a) => ({ a, x: column(a.t) }))
      .filter((m) => m.x !== null)
      .map((m) => ({
        value: [m.x, k - 0.5], summary: m.a.summary, rule: m.a.rule, severity: m.a.severity,
        as_of: m.a.as_of, status: m.a.status, outcome: m.a.outcome,
      }));
    return {
      backgroundColor: "transparent",
      animation: false,
      legend: { top: 4, textStyle: { color: "#d8dee6" } },
      grid: { ...GRID },
      tooltip: { trigger: "item", confine: true, formatter: tooltip },
      xAxis: {
        type: "category", data: state.times.map(gex.clock), axisLabel: { color: "#8a96a3" },
      },
      yAxis: [
        { type: "category", data: state.strikes.map(String), axisLabel: { color: "#8a96a3" } },
        { type: "value", min: -0.5, max: Math.max(k - 0.5, 0.5), show: false },
      ],
      visualMap: {
        type: "continuous", seriesIndex: 0, min: -state.top, max: state.top, calculable: false,
        text: [gex.money(state.top), gex.money(-state.top)],
        orient: "vertical", right: 8, top: "middle", inRange: { color: DIVERGING },
        textStyle: { color: "#8a96a3" }, formatter: (v) => gex.money(v),
      },
      graphic: painted ? [{
        type: "image", id: "cells", left: GRID.left, top: GRID.top, z: -10, silent: true,
        style: { image: painted, width: painted.width, height: painted.height },
      }] : [],
      series: [
        { id: "heat", name: "net GEX", type: "heatmap", data: [] }, // the legend's entry
        ...lineSeries,
        {
          id: "alerts", name: "alerts", type: "scatter", yAxisIndex: 1, symbol: "pin",
          symbolSize: 26, itemStyle: { color: "#ff9f1c" }, data: markers, z: 10,
        },
      ],
    };
  }

  // the value under the pointer: the cells are an image, so the chart cannot tell
  const celltip = document.getElementById("celltip");
  heat.getZr().on("mousemove", (e) => {
    const at = heat.convertFromPixel({ gridIndex: 0 }, [e.offsetX, e.offsetY]);
    const inside = heat.containPixel({ gridIndex: 0 }, [e.offsetX, e.offsetY]);
    const col = inside && at ? state.net[at[0]] : null;
    if (!col || e.target) {
      celltip.style.display = "none";
      return;
    }
    const v = col[at[1]];
    celltip.textContent = `${gex.clock(state.times[at[0]])} · strike ${state.strikes[at[1]]} · net GEX ${gex.money(v)}`;
    celltip.style.display = "block";
    celltip.style.left = e.offsetX + 14 + "px";
    celltip.style.top = e.offsetY + 14 + "px";
  });
  heat.getZr().on("globalout", () => { celltip.style.display = "none"; });

  // the time column an alert belongs to: its as_of, else the column just before it
  function column(t) {
    const ts = state.times;
    if (!ts.length || t < ts[0]) return null;
    let lo = 0;
    let hi = ts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (ts[mid] <= t) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  function tooltip(p) {
    if (p.seriesId === "alerts") {
      const d = p.data;
      return `<b>${esc(d.rule)}</b> (${esc(d.severity)}${d.status === "resolved" ? ", resolved" : ""})<br>` +
        `${esc(d.summary)}<br>${d.outcome ? `after: ${esc(d.outcome)}<br>` : ""}` +
        `<span style="color:#8a96a3">${esc(d.as_of)}</span>`;
    }
    const [i, , priceValue] = p.data;
    return `${gex.clock(state.times[i])} · ${esc(p.seriesName)} ${gex.price(priceValue)}`;
  }

  function esc(text) {
    return String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  function profileOption() {
    const live = state.latest;
    if (!live || !live.strikes.length) return { title: { text: "no snapshot yet" } };
    const lo = state.strikes.length ? state.strikes[0] : -Infinity;
    const hi = state.strikes.length ? state.strikes[state.strikes.length - 1] : Infinity;
    const idx = live.strikes.map((s, i) => i).filter((i) => live.strikes[i] >= lo && live.strikes[i] <= hi);
    const strikes = idx.map((i) => live.strikes[i]);
    const pick = (arr) => idx.map((i) => arr[i]);
    const series = [
      { id: "call", name: "call GEX", type: "bar", stack: "sides", data: pick(live.call_gex), itemStyle: { color: "#56c271" } },
      { id: "put", name: "put GEX", type: "bar", stack: "sides", data: pick(live.put_gex), itemStyle: { color: "#e0607e" } },
      { id: "net", name: "net GEX", type: "bar", data: pick(live.net_gex), itemStyle: { color: "#4393c3" },
        markLine: { symbol: "none", silent: true, data: levelMarks(live, strikes) } },
    ];
    const settled = state.settled;
    if (settled && settled.strikes.length) {
      const byStrike = new Map();
      settled.strikes.forEach((s, i) => byStrike.set(s, settled.net_gex[i]));
      const settledNet = strikes.map((s) => (byStrike.has(s) ? byStrike.get(s) : null));
      series.push(
        { id: "settled", name: "settled net GEX", type: "line", data: settledNet, showSymbol: false,
          lineStyle: { color: "#f2c14e", width: 1.5 }, itemStyle: { color: "#f2c14e" } },
        { id: "diff", name: "live − settled", type: "bar", data: pick(live.net_gex).map((v, i) =>
          (v === null || settledNet[i] === null ? null : v - settledNet[i])), itemStyle: { color: "#b48ead" } },
      );
    }
    return {
      backgroundColor: "transparent",
      animation: false,
      legend: { top: 4, textStyle: { color: "#d8dee6" } },
      grid: { left: 80, right: 30, top: 36, bottom: 40 },
      tooltip: { trigger: "axis", confine: true, valueFormatter: (v) => gex.money(v) },
      xAxis: { type: "category", data: strikes.map(String), axisLabel: { color: "#8a96a3" } },
      yAxis: { type: "value", axisLabel: { color: "#8a96a3", formatter: (v) => gex.money(v) } },
      series,
    };
  }

  function levelMarks(live, strikes) {
    const marks = [];
    // one label position per level, so labels of levels on neighbouring strikes do not overlap
    const positions = ["end", "insideEndTop", "insideMiddleTop", "insideStartTop"];
    for (const [n, lv] of LEVELS.entries()) {
      const value = live[lv.key];
      if (value === null || value === undefined) continue;
      let best = null;
      for (const s of strikes) if (best === null || Math.abs(s - value) < Math.abs(best - value)) best = s;
      if (best === null) continue;
      marks.push({
        xAxis: String(best), name: lv.name, lineStyle: { color: lv.color, type: lv.type },
        label: { formatter: `${lv.name} ${gex.price(value)}`, color: lv.color, position: positions[n] },
      });
    }
    return marks;
  }

  function header() {
    const s = state.latest;
    if (!s) return;
    const regime = document.getElementById("regime");
    regime.textContent = s.regime || "–";
    regime.className = "regime " + (s.regime || "");
    document.getElementById("net").textContent = gex.money(s.net);
    document.getElementById("spot").textContent = gex.price(s.spot);
    document.getElementById("flip").textContent = s.flip === null ? (s.flip_status || "–") : gex.price(s.flip);
    document.getElementById("distance").textContent = gex.pct(s.flip_distance_pct);
    document.getElementById("asof").textContent = s.as_of || "–";
  }

  function draw() {
    // merged, not replaced: a tooltip open under the pointer stays valid across updates
    heat.setOption(heatOption(), { replaceMerge: ["series", "graphic"] });
    prof.setOption(profileOption(), { replaceMerge: ["series"] });
    header();
    const n = state.times.length;
    document.getElementById("heatnote").textContent = n
      ? `${n} snapshots, ${state.strikes.length} strikes, ${gex.day(state.times[0])} ${gex.clock(state.times[0])} – ${gex.clock(state.times[n - 1])} New York`
      : "no snapshots stored yet for this trading day";
    document.getElementById("profilenote").textContent = state.settled
      ? "current profile with the day's settled profile and the live − settled difference"
      : "current profile (no settled profile stored for this day)";
  }

  async function load() {
    const q = query.toString();
    const [frame, alerts] = await Promise.all([
      gex.json(`/api/${encodeURIComponent(symbol)}/snapshots${q ? "?" + q : ""}`),
      gex.json(`/api/${encodeURIComponent(symbol)}/alerts${expiry ? "?expiry=" + expiry : ""}`),
    ]);
    loadFrame(frame);
    state.alerts = alerts.alerts;
    draw();
  }

  window.gexPage = { heat, prof, state, grid };

  load()
    .then(() => {
      const live = new URLSearchParams({ symbol });
      if (expiry) live.set("expiry", expiry);
      gex.live("/api/live?" + live.toString(), {
        snapshot: (snap) => { if (addSnapshot(snap)) draw(); },
        alert: (a) => {
          if ((a.expiry || "") !== expiry || state.alerts.some((x) => x.id === a.id)) return;
          state.alerts.push(a);
          draw();
        },
      }, () => load().catch((err) => gex.status(String(err), true)));
    })
    .catch((err) => gex.status(String(err), true));
})();
