"""Settings: defaults, then a TOML file, then ``SHELFWISE_*`` environment variables.

The file is ``./shelfwise.toml`` or the path in ``SHELFWISE_CONFIG``. Example::

    # shelfwise.toml
    db_url = "postgresql://127.0.0.1:5432/shop"
    shop_start = "2009-01-01"

    SHELFWISE_PSEUDONYM_KEY=... shelfwise ingest events orders.csv.gz --format online-retail
"""

from __future__ import annotations

import os
import secrets
from datetime import date
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from shelfwise.core.errors import ConfigError


def _config_file() -> Path:
    return Path(os.environ.get("SHELFWISE_CONFIG", "shelfwise.toml"))


class Settings(BaseSettings):
    """Everything shelfwise can be told. Field names map to ``SHELFWISE_<NAME>`` variables."""

    model_config = SettingsConfigDict(env_prefix="SHELFWISE_", extra="forbid", validate_default=True)

    var_dir: Path = Field(Path("var"), description="where the embedded store, keys and reports live")
    db_url: str | None = Field(None, description="store URL; default: sqlite file under var_dir")
    pseudonym_key: SecretStr | None = Field(
        None, description="HMAC key for user ids; default: a random key kept in var_dir/pseudonym.key"
    )
    shop_start: date = Field(date(1995, 1, 1), description="events before this date are quarantined")
    future_tolerance_seconds: int = Field(300, ge=0, description="clock skew allowed for event times")
    bot_actions_per_minute: int = Field(
        30, ge=1, description="distinct-second actions in any 60 s window above which a user is flagged"
    )
    ingest_batch_size: int = Field(20_000, ge=1)
    max_text_length: int = Field(20_000, ge=100, description="longer free-text fields are quarantined")
    log_level: str = "WARNING"
    log_json: bool = False

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log_level must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: explicit arguments, then the environment, then the file, then defaults.
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file())
        return (init_settings, env_settings, toml)

    @property
    def store_url(self) -> str:
        return self.db_url or f"sqlite:///{self.var_dir / 'shelfwise.db'}"

    def resolved_pseudonym_key(self) -> bytes:
        """The HMAC key; created once and kept in ``var_dir`` when none is configured."""
        if self.pseudonym_key is not None:
            key = self.pseudonym_key.get_secret_value().encode()
            if len(key) < 16:
                raise ConfigError("SHELFWISE_PSEUDONYM_KEY is too short", hint="use at least 16 characters")
            return key
        path = self.var_dir / "pseudonym.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path.read_text().strip().encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"invalid settings: {exc}".splitlines()[0], hint=str(_config_file())) from exc
