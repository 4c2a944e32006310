"""Settings: environment and arguments, credentials, and what reaches faust.App."""

from __future__ import annotations

import ssl

import pydantic
import pytest

from agents.core.windows import DEFAULT_GRACE_MS
from streams.runtime.app import create_app, faust_broker_url
from streams.runtime.settings import CONTRACT_TOPICS, Settings


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BOOTSTRAP", "APP_ID", "WEB_HOST", "WEB_PORT", "DATA_DIR", "PARTITIONS"):
        monkeypatch.delenv(f"LIVEPULSE_{name}", raising=False)
    s = Settings()
    assert (s.bootstrap, s.app_id, s.web_host, s.web_port, s.partitions) == (
        "127.0.0.1:9092",
        "livepulse",
        "127.0.0.1",
        6066,
        4,
    )
    assert str(s.data_dir) == "data"
    assert s.source_topics == CONTRACT_TOPICS
    assert s.deadletter == "live.deadletter"


def test_environment_is_read_and_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEPULSE_WEB_PORT", "7001")
    monkeypatch.setenv("LIVEPULSE_BOOTSTRAP", "kafka-a:9092,kafka-b:9092")
    from_env = Settings()
    assert from_env.web_port == 7001
    assert from_env.bootstrap_servers == ["kafka-a:9092", "kafka-b:9092"]
    assert Settings(web_port=7002).web_port == 7002


def test_settings_are_frozen_and_validated() -> None:
    s = Settings()
    with pytest.raises(pydantic.ValidationError):
        s.web_port = 1  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        Settings(web_port=0)
    with pytest.raises(pydantic.ValidationError):
        Settings(app_id="has spaces")
    with pytest.raises(pydantic.ValidationError):
        Settings(unknown_option=1)  # type: ignore[call-arg]


def test_topic_prefix_applies_to_every_topic() -> None:
    s = Settings(topic_prefix="run-1.")
    assert s.source_topics == tuple(f"run-1.{name}" for name in CONTRACT_TOPICS)
    assert s.deadletter == "run-1.live.deadletter"
    assert s.topic("live.orders") == "run-1.live.orders"


def test_sasl_password_is_secret_and_reaches_the_client_kwargs() -> None:
    s = Settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="livepulse",
        sasl_password="hunter2",  # type: ignore[arg-type]
    )
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.model_dump())
    kwargs = s.kafka_client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_password"] == "hunter2"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


def test_inconsistent_security_settings_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="needs sasl_username"):
        Settings(security_protocol="SASL_PLAINTEXT")
    with pytest.raises(pydantic.ValidationError, match="needs a SASL protocol"):
        Settings(sasl_mechanism="PLAIN")
    assert "ssl_context" not in Settings().kafka_client_kwargs()


def test_the_faust_app_takes_its_configuration_from_settings_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # faust reads WEB_PORT, BROKER_URL, ... from the environment and lets them override its
    # arguments; create_app must not.
    monkeypatch.setenv("WEB_PORT", "9999")
    monkeypatch.setenv("BROKER_URL", "kafka://elsewhere:1")
    monkeypatch.setenv("APP_STORE", "rocksdb://")
    s = Settings(
        app_id="settings-test",
        bootstrap="h1:9092,h2:9093",
        web_port=6123,
        web_host="0.0.0.0",  # noqa: S104
        partitions=6,
    )
    conf = create_app(s).conf
    assert conf.id == "settings-test"
    assert conf.web_port == 6123
    assert conf.web_bind == "0.0.0.0"  # noqa: S104
    assert conf.topic_partitions == 6
    assert str(conf.store) == "memory:"
    assert [str(url) for url in conf.broker] == ["kafka://h1:9092", "kafka://h2:9093"]
    assert conf.processing_guarantee.value == "at_least_once"
    assert conf.autodiscover is False  # the worker wires itself (streams.runtime.worker)
    assert faust_broker_url(s) == "kafka://h1:9092;h2:9093"


def test_sasl_settings_become_faust_credentials() -> None:
    s = Settings(
        app_id="settings-sasl",
        security_protocol="SASL_PLAINTEXT",
        sasl_username="u",
        sasl_password="p",  # type: ignore[arg-type]
    )
    credentials = create_app(s).conf.broker_credentials
    assert credentials.username == "u"
    assert credentials.password == "p"
    assert credentials.protocol.value == "SASL_PLAINTEXT"


def test_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WINDOW_GRACE_S", "LABEL_TOP_N", "GPM_DENOMINATOR"):
        monkeypatch.delenv(f"LIVEPULSE_{name}", raising=False)
    s = Settings()
    assert (s.window_grace_ms, s.label_top_n, s.gpm_denominator) == (120_000, 20, "entries")
    # The default the analyzer's board and the truth files use.
    assert s.window_grace_ms == DEFAULT_GRACE_MS
    monkeypatch.setenv("LIVEPULSE_WINDOW_GRACE_S", "2.5")
    monkeypatch.setenv("LIVEPULSE_LABEL_TOP_N", "5")
    monkeypatch.setenv("LIVEPULSE_GPM_DENOMINATOR", "unique_viewers")
    s = Settings()
    assert (s.window_grace_ms, s.label_top_n, s.gpm_denominator) == (2_500, 5, "unique_viewers")
    with pytest.raises(pydantic.ValidationError):
        Settings(gpm_denominator="views")
    with pytest.raises(pydantic.ValidationError):
        Settings(window_grace_s=-1)
