"""`redis:` names one node, a Redis Cluster or a Sentinel-watched primary: exactly one."""

from __future__ import annotations

from pathlib import Path

import pytest

from gex_alertd import config, redaction
from gex_alertd.config import ConfigError, RedisConfig, SentinelConfig


def load(tmp_path: Path, text: str) -> config.Config:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return config.load(p)


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    return "\n".join(err.value.problems)


def test_no_redis_section_is_one_local_node(tmp_path: Path) -> None:
    cfg = load(tmp_path, "watch: {symbols: [SPY]}\n")
    assert cfg.redis.kind == "url"
    assert cfg.redis.url == config.DEFAULT_REDIS_URL


def test_cluster_and_sentinel_parse(tmp_path: Path) -> None:
    cfg = load(tmp_path, "redis: {cluster: ['127.0.0.1:7000', 'redis-b:7001', '[::1]:7002']}\n")
    assert cfg.redis.kind == "cluster" and cfg.redis.url is None
    assert config.split_host_port("[::1]:7002") == ("::1", 7002)
    cfg = load(
        tmp_path,
        "redis: {sentinel: {master: gex, nodes: ['127.0.0.1:26379', 'h2:26379']}}\n",
    )
    assert cfg.redis.kind == "sentinel" and cfg.redis.sentinel is not None
    assert cfg.redis.sentinel.master == "gex"


def test_more_than_one_kind_is_refused(tmp_path: Path) -> None:
    text = problems(
        tmp_path,
        "redis: {url: 'redis://127.0.0.1:6379/0', cluster: ['127.0.0.1:7000']}\n",
    )
    assert "redis: give exactly one of url, cluster or sentinel" in text


def test_bad_nodes_are_named_by_path(tmp_path: Path) -> None:
    text = problems(
        tmp_path,
        "redis:\n  cluster: ['127.0.0.1', 'h:99999']\n",
    )
    assert "redis.cluster[0]: expected host:port, got '127.0.0.1'" in text
    assert "redis.cluster[1]: port out of range" in text
    text = problems(tmp_path, "redis: {sentinel: {master: '', nodes: [nope]}}\n")
    assert "redis.sentinel.nodes[0]: expected host:port" in text
    assert "redis.sentinel.master: the primary's name" in text
    assert "redis.sentinel.nodes: missing required key" in problems(
        tmp_path, "redis: {sentinel: {master: gex}}\n"
    )
    assert "redis.cluster: at least one seed node" in problems(tmp_path, "redis: {cluster: []}\n")


def test_passwords_are_registered_secrets(tmp_path: Path) -> None:
    load(
        tmp_path,
        "redis:\n  cluster: ['127.0.0.1:7000']\n  password: cluster-pw-81727\n",
    )
    load(
        tmp_path,
        "redis:\n  sentinel: {master: gex, nodes: ['127.0.0.1:26379'],"
        " password: primary-pw-52311, sentinel_password: sentinel-pw-99120}\n",
    )
    line = "auth cluster-pw-81727 primary-pw-52311 sentinel-pw-99120"
    redacted = redaction.redact(line)
    for pw in ("cluster-pw-81727", "primary-pw-52311", "sentinel-pw-99120"):
        assert pw not in redacted


def test_a_url_override_replaces_the_cluster(tmp_path: Path) -> None:
    cfg = load(tmp_path, "redis: {cluster: ['127.0.0.1:7000']}\n")
    one = cfg.redis.with_url("redis://127.0.0.1:6390/0")
    assert one.kind == "url" and one.cluster is None


def test_the_instance_name_tells_redis_deployments_apart() -> None:
    # a daemon's member name hashes its config path and where Redis is: two Sentinel sets (or
    # clusters) from one config path are two names, one URL stays the name it always was
    from gex_alertd.member import instance_id

    def named(rc: RedisConfig) -> str:
        return instance_id(config.Config(redis=rc, path="/etc/gex-alertd/config.yaml"))

    one = named(RedisConfig(sentinel=SentinelConfig(master="gex", nodes=["10.0.0.1:26379"])))
    two = named(RedisConfig(sentinel=SentinelConfig(master="gex", nodes=["10.0.0.2:26379"])))
    assert one != two
    assert named(RedisConfig(cluster=["h1:7000"])) != named(RedisConfig(cluster=["h2:7000"]))
    assert named(RedisConfig(url="redis://a:6379/0")) != named(RedisConfig(url="redis://b:6379/0"))


def test_the_endpoint_is_where_and_as_whom_not_how_much_is_kept() -> None:
    # a reload keeps the running client when only retention or WAIT settings change, and
    # refuses (until a restart) any change to where Redis is or the credentials
    base = RedisConfig(sentinel=SentinelConfig(master="gex", nodes=["10.0.0.1:26379"]))
    assert RedisConfig(url="redis://a:6379/0").endpoint() != base.endpoint()
    moved = RedisConfig(sentinel=SentinelConfig(master="gex", nodes=["10.0.0.2:26379"]))
    assert moved.endpoint() != base.endpoint()
    cluster = RedisConfig(cluster=["h1:7000"])
    assert RedisConfig(cluster=["h1:7000"], password="x").endpoint() != cluster.endpoint()
    kept = RedisConfig(cluster=["h1:7000"], retention=None, max_len=1000, wait_replicas=0)
    assert kept.endpoint() == cluster.endpoint()
