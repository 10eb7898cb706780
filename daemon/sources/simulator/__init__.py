"""The embedded Flow GEX simulator: the provider's model and wire contract, offline.

Model (flowgex-api.md): per symbol a seeded GBM spot path, a chain of 0DTE/weekly/monthly
expiries on a ~200-strike grid with an IV smile, settled OI at the open, and intraday prints
against a simulated NBBO whose open/close is inferred from the aggressor side with a
confidence; effective OI = settled + inferred change (never negative). Black-Scholes gamma per
contract, per-strike GEX `gamma * OI * 100 * spot^2 * 0.01` (calls +, puts -), net = sum of
rows, label from its sign, flip where the cumulative profile crosses zero (nearest spot).

Modules: pricing (BS gamma), chain (expiries, strikes, smile, settled OI), flow (NBBO, prints,
inference, effective OI), market (one symbol's state and scripted events), snapshot (rows,
flip, wire structs), engine (Simulator: markets, snapshot timing, body cache, faults), clock,
scenario (YAML), server (aiohttp), embedded (builders), command (`gex-alertd simulate`).

API for the daemon and for tests:

    from gex_alertd.sources.simulator.embedded import start_embedded, make_app, make_simulator
    from gex_alertd.sources.simulator.clock import ManualClock

    sim = await start_embedded(options, ["SPY"], api_key)   # 127.0.0.1, free port
    sim.base_url; sim.simulator; await sim.close()

    clock = ManualClock()                     # sim time moves only on clock.advance(s)
    app = make_app(SimulatorOptions(cache_s=0), "key", scenario=YAML_TEXT_or_Scenario_or_path,
                   clock=clock, keys={"basic-key": "basic"})   # web.Application
    handle = await serve(app)                 # embedded.serve: real TCP site on a free port
    clock.advance(10)                         # scenario events at t <= 10 s apply on next poll

`start_embedded(options, symbols, api_key, base_dir=..., clock=...)`: `options.scenario` is
`demo` (packaged scenarios/demo.yaml), an absolute path, or a path relative to `base_dir`.

Endpoints: `GET /v1/flow/gex/{symbol}[?expiry=yyyy-MM-dd]` (effective OI) and
`GET /v1/exposure/gex/{symbol}[?expiration=...&min_oi=N]` (settled OI, SDK GexResponse names).
`X-Api-Key` required (401); keys map to plans, Flow GEX needs `alpha` (403 with
current_plan/required_plan); 400 malformed symbol/expiry; 404 for symbols starting with ZZ,
scenario `unknown_symbols`, or an expiry not listed; per-key fixed-window rate limit
(`rate_limit_per_min`, 429 + Retry-After + X-RateLimit-Limit/Remaining/Reset, Reset in
seconds). Bodies are computed once per snapshot tick (the cache quantum `max(cache_s, tick_s)`,
or `tick_s` when cache_s is 0) and served as cached bytes.

Determinism: the state advances tick by tick from (seed, scenario), independently per symbol,
so the same seed + scenario + start (scenario `start`, or ManualClock) gives byte-identical
bodies. Without a fixed start, as_of follows the wall clock (so restarts keep as_of moving
forward in Redis) and everything else is still identical.
"""
