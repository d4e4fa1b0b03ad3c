"""Dispatcher settings: DISPATCHER_* variables (and the contract's DISPATCH_POLL_INTERVAL), validated."""

from __future__ import annotations

import pytest

from comfy_cloud.config import ConfigError, load_settings
from services.dispatcher.config import DispatcherSettings

URL = "postgresql://u@localhost/db"


def test_settings_come_from_dispatcher_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DISPATCHER_DEFAULT_USER_LIMIT", "7")
    monkeypatch.setenv("DISPATCHER_LEASE_SECONDS", "45")
    monkeypatch.setenv("DISPATCHER_QUEUE_TIMEOUT", "600")
    monkeypatch.setenv("DISPATCH_POLL_INTERVAL", "0.5")
    settings = load_settings(DispatcherSettings)
    assert settings.default_user_limit == 7 and settings.lease_seconds == 45
    assert settings.queue_timeout == 600 and settings.poll_interval == 0.5
    assert settings.execution_timeout == 1800 and settings.max_attempts is None


def test_inconsistent_settings_are_refused_with_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DISPATCHER_HEARTBEAT_INTERVAL", "40")
    with pytest.raises(ConfigError, match="DISPATCHER_HEARTBEAT_INTERVAL"):
        load_settings(DispatcherSettings)
    monkeypatch.setenv("DISPATCHER_HEARTBEAT_INTERVAL", "5")
    monkeypatch.setenv("DISPATCHER_DEFAULT_USER_LIMIT", "0")
    with pytest.raises(ConfigError, match="DEFAULT_USER_LIMIT"):
        load_settings(DispatcherSettings)
