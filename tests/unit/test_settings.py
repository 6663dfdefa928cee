from __future__ import annotations

import stat
from datetime import date
from pathlib import Path

import pytest

from shelfwise.core.errors import ConfigError
from shelfwise.core.settings import Settings


def test_defaults_then_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "shop.toml"
    config.write_text('shop_start = "2009-01-01"\nbot_actions_per_minute = 12\n')
    monkeypatch.setenv("SHELFWISE_CONFIG", str(config))
    monkeypatch.delenv("SHELFWISE_BOT_ACTIONS_PER_MINUTE", raising=False)
    assert Settings().future_tolerance_seconds == 300  # default
    assert Settings().shop_start == date(2009, 1, 1)  # file
    monkeypatch.setenv("SHELFWISE_BOT_ACTIONS_PER_MINUTE", "99")
    assert Settings().bot_actions_per_minute == 99  # environment beats the file


def test_unknown_setting_in_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "shop.toml"
    config.write_text("no_such_setting = 1\n")
    monkeypatch.setenv("SHELFWISE_CONFIG", str(config))
    with pytest.raises(ValueError, match="no_such_setting"):
        Settings()


def test_store_url_defaults_to_sqlite_under_var(tmp_path: Path) -> None:
    assert Settings(var_dir=tmp_path).store_url == f"sqlite:///{tmp_path / 'shelfwise.db'}"


def test_generated_pseudonym_key_is_private_and_stable(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    key = settings.resolved_pseudonym_key()
    assert key == Settings(var_dir=tmp_path).resolved_pseudonym_key()
    mode = stat.S_IMODE((tmp_path / "pseudonym.key").stat().st_mode)
    assert mode == 0o600
    assert len(key) >= 32


def test_short_configured_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too short"):
        Settings(var_dir=tmp_path, pseudonym_key="short").resolved_pseudonym_key()
