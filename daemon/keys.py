"""Every Redis key name the daemon reads or writes (contract: design.md "Redis layout").

One place per key: no other module spells a `gex:` string. Per-symbol keys carry the `{SYM}`
hash tag so everything one commit touches stays in one Redis Cluster slot. This module only
builds names; it must never talk to Redis.
"""

from __future__ import annotations

# --- global keys ---------------------------------------------------------------------------
# the single outbox stream of releases before the per-symbol outboxes (`gex-alertd migrate`
# moves what it still holds; nothing writes it any more)
LEGACY_ALERTS = "gex:alerts"
# dead letters: an outbox entry, its channel and the redacted reason; also snapshots that can
# never commit (field `kind: snapshot`, commit.Committer.set_aside)
DEAD = "gex:dead"
MEMBERS = "gex:members"  # live daemons (sorted set, score = last heartbeat ms)
SILENCES = "gex:silences"  # operator silences, matched at delivery
SILENCES_VERSION = "gex:silences:version"  # bumped with every write: readers cache until it moves
SILENCED = "gex:silenced"  # alerts a silence kept from a channel (for `outbox list`)
# the NYSE session table exported from exchange_calendars (ops/calendar_load.py): a restart
# reads it here instead of running the export child again
CALENDAR_NYSE = "gex:calendar:nyse"

SNAP_PATTERN = "gex:{*}:snap*"  # SCAN match for every snapshot stream
OUTBOX_PATTERN = "gex:{*}:alerts"  # SCAN match for every outbox stream
# events about no one symbol (heartbeat, the whole source failing, a channel gone) are keyed
# under this pseudo-symbol: `*` is never a watchable symbol (config.SYMBOL refuses it)
OPS_SYMBOL = "*"


# --- per symbol ----------------------------------------------------------------------------
def symbol_key(symbol: str, kind: str, expiry: str | None = None) -> str:
    """`gex:{SYM}:<kind>[:<expiry>]`: the `{SYM}` hash tag keeps a symbol's keys in one slot."""
    base = f"gex:{{{symbol.upper()}}}:{kind}"
    return f"{base}:{expiry}" if expiry else base


def snap(symbol: str, expiry: str | None = None) -> str:
    """The snapshot stream of a symbol (and expiry filter)."""
    return symbol_key(symbol, "snap", expiry)


def state(symbol: str, expiry: str | None = None) -> str:
    """The rule state hash of a symbol (and expiry filter)."""
    return symbol_key(symbol, "state", expiry)


def settled(symbol: str, day: str, expiry: str | None = None) -> str:
    """`gex:{SYM}:settled:<yyyy-mm-dd>[:<expiry>]`: the day's settled profile (with a TTL)."""
    return symbol_key(symbol, f"settled:{day}", expiry)


def cooldown(symbol: str, rule: str, expiry: str | None) -> str:
    """`SET NX PX cooldown`: while it lives, the rule does not fire again for this stream."""
    return symbol_key(symbol, f"cooldown:{rule}", expiry)


def outcomes(symbol: str) -> str:
    """Stored alert outcomes of a symbol (hash: alert id -> outcome record, HSETNX once)."""
    return symbol_key(symbol, "outcomes")


def outbox(symbol: str) -> str:
    """`gex:{SYM}:alerts`: the symbol's outbox stream, one consumer group per channel. It shares
    the snapshot's slot, so a commit (snapshot + state + alerts) stays one single-slot script on
    Redis Cluster. Operator events go to `outbox(OPS_SYMBOL)`."""
    return symbol_key(symbol or OPS_SYMBOL, "alerts")


def symbol_of_outbox(key: str) -> str | None:
    """The symbol whose outbox `key` is, None when it is no outbox name."""
    if key.startswith("gex:{") and key.endswith("}:alerts"):
        return key[5:-8] or None
    return None


def alert_dedup(symbol: str, alert_id: str) -> str:
    """`SET NX PX`: an alert id is enqueued once, by the live path or by `replay --send`."""
    return symbol_key(symbol, f"alert:{alert_id}")


# --- delivery ------------------------------------------------------------------------------
NOTIFY_GROUP_PREFIX = "notify:"


def notify_group(channel: str) -> str:
    """The consumer group of a channel on the outbox stream."""
    return f"{NOTIFY_GROUP_PREFIX}{channel}"


def sent_marker(symbol: str, alert_id: str, channel: str) -> str:
    """Set with the XACK once the receiver accepted: a redelivery is acked without sending.
    In the slot of the outbox the alert sits in (`symbol` is the outbox's), so marker and XACK
    are one script on a cluster; no daemon's name is in it, so it survives an ownership move."""
    return symbol_key(symbol or OPS_SYMBOL, f"sent:{alert_id}:{channel}")


def attempts(symbol: str, alert_id: str, channel: str) -> str:
    """Failed attempts of one alert to one channel and the time of the first (a hash: `n`,
    `since_ms`), so neither the count nor the retry budget restarts with the daemon."""
    return symbol_key(symbol or OPS_SYMBOL, f"retry:{alert_id}:{channel}")


def legacy_sent_marker(alert_id: str, channel: str) -> str:
    """The sent marker of the single-outbox layout (read by `migrate` only)."""
    return f"gex:sent:{alert_id}:{channel}"


# the legacy outbox once `migrate` moved what it owed: kept a while (with a TTL), never deleted.
# The hash tag is the legacy name itself, so RENAME stays in one slot on Redis Cluster.
LEGACY_ALERTS_BACKUP = "{gex:alerts}:migrated"


def migrated(symbol: str, legacy_entry_id: str) -> str:
    """`SET NX`: a legacy outbox entry is moved onto the symbol's outbox once (in its slot)."""
    return symbol_key(symbol or OPS_SYMBOL, f"migrated:{legacy_entry_id}")


# --- operator rules and the heartbeat --------------------------------------------------------
def operator_state(symbol: str, expiry: str | None = None) -> str:
    """The operator rules' state hash of a target (one field per rule: its episode)."""
    return symbol_key(symbol, "opstate", expiry)


def heartbeat_sent(alert_id: str) -> str:
    """`SET NX PX`: a heartbeat id (instance + interval) is enqueued once; in the operator
    outbox's slot, so the enqueue script stays single-slot."""
    return symbol_key(OPS_SYMBOL, f"heartbeat:{alert_id}")
