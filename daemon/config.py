"""The YAML config (contract: design.md "Config"), typed, with every problem reported at once."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import threading
from datetime import date
from pathlib import Path
from types import GenericAlias
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias
from urllib.parse import urlsplit

import msgspec
from redis.connection import parse_url

from gex_alertd import bounded_yaml, redaction, rule_files
from gex_alertd.notify.channel import ChannelBase, Severity
from gex_alertd.notify.registry import channel_config_union
from gex_alertd.ops.listen import bind_problem, parse_listen, token_problem
from gex_alertd.outcomes.horizons import DEFAULT_HORIZONS, parse_horizon
from gex_alertd.rules.duration import Duration
from gex_alertd.rules.registry import rule_config_union
from gex_alertd.typedconfig import Problems, convert, placed
from gex_alertd.urls import host_encodable, is_http_url, origin_refusal


class Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


# the upstream's symbol shape (flowgex-api.md): letters and digits, `.`, `-` or `^` inside, a
# leading `^` for an index; never `.`/`..` (a path segment of its own) or `/`
SYMBOL = re.compile(r"\^?[A-Za-z0-9](?:[A-Za-z0-9.^-]{0,14}[A-Za-z0-9])?")
# channel names travel in the outbox's channel list, metrics labels and log fields
CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def is_symbol(value: str) -> bool:
    return len(value) <= 16 and SYMBOL.fullmatch(value) is not None


class SimulatorOptions(Strict):
    seed: int = 7
    scenario: str | None = None  # path to a scenario YAML; relative to the config file
    speed: float = 1.0  # simulated seconds per wall second
    cache_s: float = 15.0  # the provider caches ~15 s; 0 serves a fresh snapshot per request
    symbols: list[str] = []  # extra symbols to serve beyond the watchlist
    rate_limit_per_min: int = 0  # simulated per-key limit (429 + Retry-After); 0 = none

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.rate_limit_per_min < 0:
            out.append(("rate_limit_per_min", f"must be >= 0, got {self.rate_limit_per_min}"))
        if self.speed <= 0:
            out.append(("speed", f"must be > 0, got {self.speed}"))
        if self.cache_s < 0:
            out.append(("cache_s", f"must be >= 0, got {self.cache_s}"))
        return out


MAX_CONCURRENCY = 1024  # requests in flight to one upstream; far beyond any plan's rate limit


class SourceConfig(Strict):
    kind: Literal["simulator", "flowgex"] = "simulator"
    base_url: str = "https://lab.flashalpha.com"
    api_key: str | None = None
    timeout_s: float = 10.0
    max_concurrency: int = 16
    requests_per_min: float = 120.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_body_bytes: int = 16 * 1024 * 1024  # a larger response is refused as malformed
    max_future_s: float = 300.0  # an as_of further ahead of this machine's clock is refused
    simulator: SimulatorOptions = msgspec.field(default_factory=SimulatorOptions)

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.kind == "flowgex" and not self.api_key:
            out.append(("api_key", "required when kind is flowgex (set FLASHALPHA_API_KEY)"))
        if not is_http_url(self.base_url):
            out.append(("base_url", f"expected an http(s) URL, got {self.base_url!r}"))
        elif (refused := origin_refusal(self.base_url)) is not None:
            out.append(("base_url", refused))
        elif not host_encodable(urlsplit(self.base_url).hostname or ""):
            out.append(("base_url", "host name cannot be looked up (a label over 63 chars?)"))
        for key in ("timeout_s", "requests_per_min", "backoff_base_s", "backoff_max_s"):
            if getattr(self, key) <= 0:
                out.append((key, f"must be > 0, got {getattr(self, key)}"))
        if self.max_body_bytes < 1024:
            out.append(("max_body_bytes", f"must be >= 1024, got {self.max_body_bytes}"))
        if not 0 <= self.max_future_s <= 86400:  # also refuses NaN
            out.append(("max_future_s", f"must be 0 to 86400, got {self.max_future_s}"))
        if not 1 <= self.max_concurrency <= MAX_CONCURRENCY:
            # twice this many poll workers start at once: 10**9 of them never finish starting
            out.append(
                (
                    "max_concurrency",
                    f"must be 1 to {MAX_CONCURRENCY}, got {self.max_concurrency}",
                )
            )
        return out


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")


def host_port_problem(value: str) -> str | None:
    """Why `value` is not a `host:port` node address, or None."""
    m = _HOST_PORT.fullmatch(value)
    if m is None:
        return f"expected host:port, got {value!r}"
    if not 0 < int(m["port"]) < 65536:
        return f"port out of range in {value!r}"
    return None


def split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class SentinelConfig(Strict):
    """A primary found through Sentinel: the sentinels' addresses and the primary's name."""

    master: str
    nodes: list[str]  # the sentinels, host:port
    db: int = 0
    username: str | None = None  # of the primary and its replicas
    password: str | None = None
    sentinel_password: str | None = None  # when the sentinels themselves require one

    def problems(self) -> list[tuple[str, str]]:
        out = [(f"nodes[{i}]", p) for i, n in enumerate(self.nodes) if (p := host_port_problem(n))]
        if not self.nodes:
            out.append(("nodes", "at least one sentinel is required"))
        if not self.master:
            out.append(("master", "the primary's name as the sentinels know it is required"))
        if self.db < 0:
            out.append(("db", f"must be >= 0, got {self.db}"))
        return out


class RedisConfig(Strict):
    """Exactly one of `url` (one node), `cluster` (Redis Cluster seed nodes) or `sentinel`."""

    url: str | None = None  # DEFAULT_REDIS_URL when neither cluster nor sentinel is given
    cluster: list[str] | None = None  # seed nodes, host:port; the client learns the rest
    sentinel: SentinelConfig | None = None
    username: str | None = None  # for cluster nodes (a url carries its own credentials)
    password: str | None = None
    retention: Duration | None = Duration(7 * 86400)  # time-based trim (XADD MINID ~)
    max_len: int | None = None  # length-based trim (XADD MAXLEN ~), instead of retention
    # WAIT after each commit batch: None = 1 on a cluster or Sentinel, 0 (off) on one node
    wait_replicas: int | None = None
    wait_timeout_ms: int = 1000  # below the client's 5 s socket timeout

    def __post_init__(self) -> None:
        if self.url is None and self.cluster is None and self.sentinel is None:
            self.url = DEFAULT_REDIS_URL

    def endpoint(self) -> tuple[object, ...]:
        """What the client connects to and as whom: a change needs a new client (a restart)."""
        return (self.url, self.cluster, self.sentinel, self.username, self.password)

    def with_url(self, url: str) -> RedisConfig:
        """This config pointed at one node instead (a command's `--redis` override)."""
        return msgspec.structs.replace(self, url=url, cluster=None, sentinel=None)

    @property
    def replicas_to_wait(self) -> int:
        if self.wait_replicas is not None:
            return self.wait_replicas
        return 0 if self.kind == "url" else 1

    @property
    def kind(self) -> Literal["url", "cluster", "sentinel"]:
        if self.cluster is not None:
            return "cluster"
        if self.sentinel is not None:
            return "sentinel"
        return "url"

    def problems(self) -> list[tuple[str, str]]:
        out = []
        given = [k for k in ("url", "cluster", "sentinel") if getattr(self, k) is not None]
        if len(given) > 1:
            out.append(("", f"give exactly one of url, cluster or sentinel, got {given}"))
        if self.url is not None and not re.match(r"^(redis|rediss|unix)://", self.url):
            out.append(("url", "expected redis://, rediss:// or unix:// URL"))
        elif self.url is not None:
            try:
                parse_url(self.url)  # what the client will do with it at start-up
            except ValueError as exc:
                out.append(("url", f"not a usable Redis URL: {exc}"))
        if self.cluster is not None:
            if not self.cluster:
                out.append(("cluster", "at least one seed node (host:port) is required"))
            for i, node in enumerate(self.cluster):
                if problem := host_port_problem(node):
                    out.append((f"cluster[{i}]", problem))
        if self.url is not None and (self.username or self.password):
            out.append(("password", "with url, put the credentials in the URL"))
        if self.max_len is not None and self.max_len < 1:
            out.append(("max_len", f"must be >= 1, got {self.max_len}"))
        if self.wait_replicas is not None and not 0 <= self.wait_replicas <= 16:
            out.append(("wait_replicas", f"must be 0 to 16, got {self.wait_replicas}"))
        if not 1 <= self.wait_timeout_ms <= 4000:
            out.append(
                ("wait_timeout_ms", f"must be 1 to 4000 (ms, under the 5 s socket timeout), "
                 f"got {self.wait_timeout_ms}")
            )  # fmt: skip
        return out


class WatchEntry(Strict):
    symbol: str
    expiry: date | None = None
    interval_s: float | None = None
    jitter_s: float | None = None


class WatchConfig(Strict):
    interval_s: float = 15.0
    jitter_s: float = 1.0
    market_hours: Literal["always", "nyse"] = "always"
    premarket: bool = False  # with nyse: also poll 04:00-09:30 ET
    postmarket: bool = False  # with nyse: also poll until 20:00 ET
    symbols: list[str | WatchEntry] = []

    def entries(self) -> list[WatchTarget]:
        out = []
        for item in self.symbols:
            if isinstance(item, str):
                out.append(WatchTarget(item.upper(), None, self.interval_s, self.jitter_s))
            else:
                out.append(
                    WatchTarget(
                        item.symbol.upper(),
                        item.expiry.isoformat() if item.expiry else None,
                        item.interval_s if item.interval_s is not None else self.interval_s,
                        item.jitter_s if item.jitter_s is not None else self.jitter_s,
                    )
                )
        return out

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.interval_s <= 0:
            out.append(("interval_s", f"must be > 0, got {self.interval_s}"))
        if self.jitter_s < 0:
            out.append(("jitter_s", f"must be >= 0, got {self.jitter_s}"))
        for flag in ("premarket", "postmarket"):
            if getattr(self, flag) and self.market_hours != "nyse":
                out.append((flag, "only means something with market_hours: nyse"))
        seen: set[tuple[str, str | None]] = set()
        for i, item in enumerate(self.symbols):
            sym = item if isinstance(item, str) else item.symbol
            path = f"symbols[{i}]"
            if not is_symbol(sym):
                out.append(
                    (
                        path,
                        f"not a ticker symbol: {sym!r} (letters and digits, with . - ^ inside;"
                        " at most 16)",
                    )
                )
            if isinstance(item, WatchEntry):
                if item.interval_s is not None and item.interval_s <= 0:
                    out.append((f"{path}.interval_s", f"must be > 0, got {item.interval_s}"))
                if item.jitter_s is not None and item.jitter_s < 0:
                    out.append((f"{path}.jitter_s", f"must be >= 0, got {item.jitter_s}"))
            key = (
                sym.upper(),
                None if isinstance(item, str) or not item.expiry else str(item.expiry),
            )
            if key in seen:
                out.append(
                    (path, f"duplicate watch entry {key[0]}" + (f" {key[1]}" if key[1] else ""))
                )
            seen.add(key)
        return out


class WatchTarget(msgspec.Struct, frozen=True):
    symbol: str
    expiry: str | None
    interval_s: float
    jitter_s: float

    @property
    def key(self) -> str:
        return f"{self.symbol}:{self.expiry}" if self.expiry else self.symbol


# --- channels ------------------------------------------------------------------------------


# Each channel type owns its config struct (notify/<type>.py); the union comes from the registry.
# A type checker sees the common base; msgspec resolves the annotation to the union at run time.
if TYPE_CHECKING:
    ChannelConfig: TypeAlias = ChannelBase
else:
    ChannelConfig = channel_config_union()


class OutboxConfig(Strict):
    claim_idle: Duration = Duration(30.0)  # XAUTOCLAIM entries stuck this long
    drain_timeout: Duration = Duration(10.0)  # on SIGTERM
    dedup_ttl: Duration = Duration(7 * 86400)  # per-(alert, channel) sent markers

    def problems(self) -> list[tuple[str, str]]:
        # 0 would reclaim every delivery in flight at once (a double send per alert), or keep
        # a sent marker 1 ms (a redelivery sent again)
        return [(k, "must be > 0") for k in ("claim_idle", "dedup_ttl") if getattr(self, k) <= 0]


class OutcomesConfig(Strict):
    """Live alert outcomes (README "Outcome statistics")."""

    enabled: bool = True
    horizons: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_HORIZONS))
    interval: Duration = Duration(30.0)  # how often the duty looks for elapsed horizons
    settle: Duration = Duration(900.0)  # a horizon the stream never reached: elapsed this late
    lookback: Duration = Duration(2 * 86400)  # alerts this old are picked up after a restart
    max_gap: Duration = Duration(600.0)  # a hole this long in a window makes the outcome a gap

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for i, text in enumerate(self.horizons):
            try:
                parse_horizon(text)
            except ValueError as exc:
                out.append((f"horizons[{i}]", str(exc)))
        if not self.horizons:
            out.append(("horizons", "at least one horizon"))
        for key in ("interval", "max_gap"):
            if getattr(self, key) <= 0:
                out.append((key, f"must be > 0, got {getattr(self, key)}"))
        return out


class OpsConfig(Strict):
    listen: str | None = "127.0.0.1:9108"  # /healthz and /metrics; null disables
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # where operator rules (source_failing, stale_data) without channels report; when set and
    # no source_failing rule is configured, a default one reports here
    operator_channels: list[str] = []
    auth_token: str | None = None  # required when listen is not loopback (ops.auth)

    def problems(self) -> list[tuple[str, str]]:
        if self.listen is None:
            return []
        try:
            host, _port = parse_listen(self.listen)
        except ValueError as exc:
            return [("listen", str(exc).removeprefix("ops.listen: "))]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":  # a name would only fail at bind time, after `check`
                return [("listen", f"expected an IP address or localhost, got {host!r}")]
        problem = bind_problem(host, self.auth_token) or token_problem(self.auth_token)
        return [("auth_token", problem)] if problem else []


class HeartbeatConfig(Strict):
    """A dead-man's switch: an "alive" message to `channel` every `every`, one per daemon."""

    channel: str
    every: Duration = Duration(300.0)
    severity: Severity = "info"  # the channel's min_severity must let it through

    def problems(self) -> list[tuple[str, str]]:
        if self.every < 1:
            return [("every", f"must be at least 1s, got {self.every:g}s")]
        return []


class Config(Strict):
    source: SourceConfig = msgspec.field(default_factory=SourceConfig)
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)
    watch: WatchConfig = msgspec.field(default_factory=WatchConfig)
    channels: dict[str, ChannelConfig] = {}
    rules: list[Any] = []
    rule_files: list[str] = []  # globs relative to the config file, each file a list of rules
    outbox: OutboxConfig = msgspec.field(default_factory=OutboxConfig)
    outcomes: OutcomesConfig = msgspec.field(default_factory=OutcomesConfig)
    ops: OpsConfig = msgspec.field(default_factory=OpsConfig)
    heartbeat: HeartbeatConfig | None = None
    path: str | None = None  # where it was loaded from (set by `parse`, not a YAML key)

    NOT_YAML: ClassVar[frozenset[str]] = frozenset({"path"})  # typedconfig: unknown in a file


class ConfigError(Exception):
    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = [redaction.redact(p) for p in problems]
        self.source = source
        super().__init__(
            f"{source}: {len(self.problems)} problem(s)\n  " + "\n  ".join(self.problems)
        )


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def lookup_var(name: str) -> str | None:
    """The variable from the environment, else from `$CREDENTIALS_DIRECTORY/NAME` (systemd
    LoadCredential); a credential file is read bounded and must be UTF-8 (YamlRefused)."""
    if name in os.environ:
        return os.environ[name]
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds:
        p = Path(creds) / name
        if p.is_file():
            return bounded_yaml.read_text(p).rstrip("\r\n")
    return None


def substitute(text: str, path: str, problems: Problems) -> str:
    """`${VAR}` and `${VAR:-default}` in one string. A default may hold references itself
    (`${A:-x${B}}`, as in a shell); a `${` that starts no valid reference is a problem, never
    left in the value as a literal."""
    out: list[str] = []
    i = 0
    while (start := text.find("${", i)) >= 0:
        out.append(text[i:start])
        name = _NAME.match(text, start + 2)
        after = name.end() if name else start + 2
        if name is None or after >= len(text) or text[after] not in "}:":
            problems.add(path, "invalid ${...}: expected ${NAME} or ${NAME:-default}")
            return "".join(out)
        if text[after] == "}":
            default, i = None, after + 1
        elif text.startswith(":-", after):
            close = _closing_brace(text, after + 2)
            if close < 0:
                problems.add(path, f"unterminated ${{{name.group()}:-...}}")
                return "".join(out)
            default, i = text[after + 2 : close], close + 1
        else:
            problems.add(path, f"invalid ${{{name.group()}...}}: only :- (a default) is supported")
            return "".join(out)
        try:
            value = lookup_var(name.group())
        except bounded_yaml.YamlRefused as exc:
            where = f"$CREDENTIALS_DIRECTORY/{name.group()}"
            problems.add(path, f"${{{name.group()}}} from {where}: {'; '.join(exc.problems)}")
            value = ""
        if value is None:
            if default is None:
                problems.add(
                    path,
                    f"${{{name.group()}}} is not set (environment or $CREDENTIALS_DIRECTORY)",
                )
                value = ""
            else:
                value = substitute(default, path, problems)
        out.append(value)
    out.append(text[i:])
    return "".join(out)


def _closing_brace(text: str, i: int) -> int:
    """Index of the `}` that closes a reference whose default starts at `i`, or -1."""
    depth = 0
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def expand(tree: Any, path: str, problems: Problems) -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string of the tree."""
    if isinstance(tree, dict):
        return {k: expand(v, f"{path}.{k}" if path else str(k), problems) for k, v in tree.items()}
    if isinstance(tree, list):
        return [expand(v, f"{path}[{i}]", problems) for i, v in enumerate(tree)]
    if isinstance(tree, str) and "${" in tree:
        return substitute(tree, path, problems)
    return tree


def _register_secrets(tree: Any, under_secret: bool = False) -> None:
    """Register every scalar under a secret-bearing key (numbers too, as written: a bare-number
    secret must not be echoed either) and every header value; a `url` only when it carries a
    secret (credentials, a hook path, a token or a query), and register() also picks the
    password out of a URL."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == "url" and not under_secret:
                if isinstance(v, str) and (
                    "@" in v or "/hooks" in v or "token" in v.lower() or "?" in v
                ):
                    redaction.register(v)
            else:
                _register_secrets(v, under_secret or k in redaction.SECRET_KEYS)
    elif isinstance(tree, list):
        for v in tree:
            _register_secrets(v, under_secret)
    elif under_secret and isinstance(tree, str | int | float) and not isinstance(tree, bool):
        redaction.register(str(tree))


def parse(
    tree: Any,
    source: str = "config",
    base_dir: Path | None = None,
    lines: bounded_yaml.Lines | None = None,
) -> Config:
    """The typed config from a YAML tree; `rule_files` globs are relative to `base_dir` (the
    config file's folder; the working directory when the tree did not come from a file).
    `lines`: where the tree's keys are in its file; each problem then ends with its line (in
    the config file, or in the rule file it names)."""
    problems = Problems()
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(["top level: expected a mapping"], source)
    tree = expand(tree, "", problems)
    _register_secrets(tree)
    cfg = convert({k: v for k, v in tree.items() if k != "rules"}, Config, "", problems)
    # inline rules first, then each rule file; problems name the file (`rules.d/x.yaml[1].type`)
    groups: list[tuple[str, Any]] = [("rules", tree.get("rules", []))]
    files = rule_files.read(tree.get("rule_files"), base_dir or Path.cwd(), problems)
    for f in files:
        groups.append((f.label, expand(f.rules, f.label, problems)))
    rules: list[Any] = []
    # list[...] of a union built at run time, spelled so that a type checker reads it as a value
    rule_list = GenericAlias(list, rule_config_union())
    for label, raw in groups:
        if raw:
            rules.extend(convert(raw, rule_list, label, problems) or [])
    _cross_check(tree, groups, problems)
    if problems:
        raise ConfigError(_placed(problems, lines, files), source)
    assert cfg is not None
    return msgspec.structs.replace(cfg, rules=rules, path=source)


def _placed(
    problems: Problems, lines: bounded_yaml.Lines | None, files: list[rule_files.RuleFile]
) -> list[str]:
    """Each problem with the line of what it is about: in the rule file its path starts with
    (the longest label first: `rules.d/a.yaml` is not `rules.d/a.yaml.bak`'s), else in the
    config file when its lines are known."""
    by_label = sorted(files, key=lambda f: len(f.label), reverse=True)
    out = []
    for problem in problems:
        found = next(
            (p for f in by_label if (p := placed(problem, f.lines, f.label)) is not None), None
        )
        if (
            found is None
            and lines is not None
            and not any(problem.startswith(f.label) for f in by_label)
        ):
            found = placed(problem, lines)
        out.append(found or problem)
    return out


def _cross_check(tree: dict[str, Any], groups: list[tuple[str, Any]], problems: Problems) -> None:
    """Checks across sections and rule files, on the raw trees so that a section with other
    errors is checked too. Rule names are unique across the config and every rule file."""
    raw_channels = tree.get("channels")
    channels = set(raw_channels) if isinstance(raw_channels, dict) else set()
    for name in channels:
        if not isinstance(name, str) or not CHANNEL_NAME.fullmatch(name):
            problems.add(
                f"channels.{name}",
                "a channel name is letters, digits, '_', '.' or '-', starting with a letter or"
                " digit, at most 64",
            )
    first_at: dict[str, str] = {}
    for label, raw_rules in groups:
        for i, rule in enumerate(raw_rules if isinstance(raw_rules, list) else []):
            if not isinstance(rule, dict):
                continue
            at = f"{label}[{i}]"
            name = rule.get("name")
            if isinstance(name, str):  # a non-string name is reported by the typed conversion
                if name in first_at:
                    problems.add(
                        f"{at}.name", f"duplicate rule name {name!r} (also at {first_at[name]})"
                    )
                else:
                    first_at[name] = at
            routed = rule.get("channels")
            for j, ch in enumerate(routed if isinstance(routed, list) else []):
                if isinstance(ch, str) and ch not in channels:
                    known = ", ".join(sorted(channels)) or "none defined"
                    problems.add(
                        f"{at}.channels[{j}]", f"unknown channel {ch!r} (channels: {known})"
                    )
    ops = tree.get("ops")
    op_channels = ops.get("operator_channels") if isinstance(ops, dict) else None
    for j, ch in enumerate(op_channels if isinstance(op_channels, list) else []):
        if isinstance(ch, str) and ch not in channels:
            problems.add(f"ops.operator_channels[{j}]", f"unknown channel {ch!r}")
    beat = tree.get("heartbeat")
    beat_channel = beat.get("channel") if isinstance(beat, dict) else None
    if isinstance(beat_channel, str) and beat_channel not in channels:
        known = ", ".join(sorted(channels)) or "none defined"
        problems.add("heartbeat.channel", f"unknown channel {beat_channel!r} (channels: {known})")


def load(path: str | os.PathLike[str]) -> Config:
    """The config file, read and parsed within bounds (`bounded_yaml`), then validated."""
    p = Path(path)
    lines: bounded_yaml.Lines = {}
    try:
        tree = bounded_yaml.load(p, lines=lines)
    except bounded_yaml.YamlRefused as exc:
        raise ConfigError(exc.problems, str(p)) from None
    return parse(tree, str(p), p.resolve().parent, lines)


RELOAD_TIMEOUT_S = 30.0


async def load_off_loop(
    path: str | os.PathLike[str], timeout_s: float = RELOAD_TIMEOUT_S
) -> Config:
    """`load` in a thread of its own, for SIGHUP: the event loop (polls, /healthz, the systemd
    watchdog) keeps running however long the file takes (a FIFO swapped in for the file, a
    slow disk, a file near the size cap), and a load that does not finish within `timeout_s`
    is a ConfigError (the old config keeps running).

    A daemon thread rather than `asyncio.to_thread`: a read that never returns must not also
    hold up the process's exit, which waits for the default executor's threads."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Config] = loop.create_future()

    def settle(result: Config | None, exc: BaseException | None) -> None:
        if done.done():  # given up on (timeout): nobody is waiting any more
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            assert result is not None
            done.set_result(result)

    def work() -> None:
        try:
            result, exc = load(path), None
        except BaseException as caught:  # handed to the awaiting task, re-raised there
            result, exc = None, caught
        try:
            loop.call_soon_threadsafe(settle, result, exc)
        except RuntimeError:  # the loop is closed: the daemon stopped meanwhile
            pass

    threading.Thread(target=work, name="config-load", daemon=True).start()
    try:
        return await asyncio.wait_for(done, timeout_s)
    except TimeoutError:
        raise ConfigError(
            [f"not loaded within {timeout_s:g} s (is it a pipe, or on a hung mount?)"], str(path)
        ) from None


def resolve_relative(cfg: Config, relpath: str) -> Path:
    """Paths inside the config are relative to the config file."""
    p = Path(relpath)
    if p.is_absolute() or cfg.path is None:
        return p
    return Path(cfg.path).resolve().parent / p
