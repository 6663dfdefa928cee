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
from typing import Literal

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
    bot_pace_capacity: int | None = Field(
        100_000,
        ge=2,
        description="shoppers whose pace an ingest follows at once (~230 B each; the least recently seen"
        " are let go in halves, so memory stays flat however long the file); None: every shopper",
    )
    ingest_batch_size: int = Field(20_000, ge=1)
    ingest_engine: Literal["batch", "rows"] = Field(
        "batch",
        description="events ingest: batch checks columns a chunk at a time; rows is the record-by-record"
        " reference (same results, slower)",
    )
    max_text_length: int = Field(20_000, ge=100, description="longer free-text fields are quarantined")
    annotate_items: bool = Field(
        True,
        description="at ingest, read product type, category, colour, material, size, pack size from titles",
    )
    prices_from_sales: bool = Field(
        True, description="at ingest, price an item without one at its latest sale"
    )
    log_level: str = "WARNING"
    log_json: bool = False
    # --- the store's faults ---
    store_connect_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=600,
        description="PostgreSQL: give up connecting (or waiting for a pooled connection) after this",
    )
    store_statement_timeout_ms: int = Field(
        5_000,
        ge=0,
        description="PostgreSQL, serving only: a statement that runs (or waits on a lock) longer is cancelled"
        " (0: no limit); batch commands (ingest, train, backup) run without it",
    )
    store_request_timeout_ms: int = Field(
        2_000,
        ge=1,
        description="how long a request waits for the store: an event write then goes to the local journal, "
        "a personalised search falls back to its anonymous answer",
    )
    # --- serving (shelfwise serve) ---
    models_dir: Path | None = Field(None, description="model registry root; default: var_dir/models")
    redis_url: str | None = Field(
        None, description="sessions, caches in Redis (e.g. redis://127.0.0.1:6379/0)"
    )
    redis_prefix: str = Field("shelfwise:", description="prefix of every Redis key shelfwise writes")
    api_key_hashes: list[str] = Field(
        default_factory=list,
        description="sha256 hex digests of admin API keys (admin implies every role; more keys with roles: "
        "`shelfwise keys create`); "
        "none: a key is created in var_dir/api.key",
    )
    access_dir: Path | None = Field(
        None,
        description="where the role keys (keys.json) and the shopper-token secret (token.key) live; "
        "default: var_dir. Replicas with their own var_dir should share one access_dir",
    )
    shopper_token_ttl_seconds: int = Field(
        3600, ge=60, le=7 * 86_400, description="how long a shopper token (POST /v1/tokens) is valid"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description='CIDRs of load balancers whose X-Forwarded-For is believed (e.g. ["127.0.0.1/32"]); '
        "anyone else is rate-limited by the address that connected",
    )
    pseudonym_cache_size: int = Field(
        100_000, ge=0, description="raw ids whose pseudonym the API keeps (LRU; ~0.3 kB each)"
    )
    rate_limit_per_second: float = Field(
        200.0, ge=0, description="per valid API key, shopper token or client address; 0: no limit"
    )
    rate_limit_burst: int = Field(400, ge=1)
    metrics_key_required: bool = Field(
        False,
        description="/metrics answers only an analyst (or admin) key in X-API-Key (a Prometheus 3 scrape "
        "sets it with http_headers); off: anyone who reaches the port reads the aggregate counters "
        "(no personal data), so keep the port behind the proxy",
    )
    max_request_bytes: int = Field(1_048_576, ge=1024, description="larger request bodies get 413")
    model_timeout_ms: int = Field(250, ge=1, description="a model slower than this falls back")
    cache_size: int = Field(50_000, ge=0, description="per-user result cache entries (0: no cache)")
    cache_ttl_seconds: int = Field(600, ge=1)
    merch_refresh_seconds: float = Field(
        0.5, ge=0, le=60, description="how often a worker checks the store for saved merchandising rules"
    )
    session_items: int = Field(50, ge=1, description="recent items kept per shopper for real-time recs")
    session_ttl_seconds: int = Field(86_400, ge=60)
    fold_in_ttl_seconds: float = Field(
        60.0,
        ge=0,
        description="a shopper's events since the served version's training window are read from the "
        "store and folded into their recommendations, re-read after this long (an event this worker "
        "accepts re-reads at once); 0: only the live session is folded in",
    )
    serve_model: str = Field(
        "auto",
        description="model trained on first start when none is active; auto: the best family whose "
        "estimated memory and time fit this catalogue on this machine (see shelfwise.recommend.sizing)",
    )
    serve_train_on_start_events: int = Field(
        100_000,
        ge=0,
        description="first start: a shop with at most this many events trains its model before "
        "the server listens; a bigger one is served its popularity at once while the model trains "
        "in a background process (the server switches to it when it is activated)",
    )
    memory_limit: str | None = Field(
        None,
        description="memory a model fit may plan to use (6GB, 512MiB, bytes); "
        "default: 80% of what the kernel reports available when the fit starts",
    )
    precompute_users: int = Field(
        20_000,
        ge=0,
        description="known users whose unfiltered top list is precomputed after a version is "
        "deployed (most active first; 0: none)",
    )
    precompute_k: int = Field(50, ge=1, le=1000, description="length of each precomputed list")
    warm_before_serving_seconds: float = Field(
        600.0,
        ge=0,
        description="at start, a worker waits at most this long for the active version's precomputed "
        "lists before it takes requests (a list not built yet sends its shopper to the model, and "
        "the build competes with the requests for the CPU); 0: serve at once, build in the background",
    )
    # --- the feedback loop: answer ids, impressions, attribution, online metrics, canary guard ---
    attribution_window_hours: float = Field(
        24.0, gt=0, le=24 * 90, description="events up to this long after an answer are credited to it"
    )
    impression_queue_size: int = Field(
        50_000, ge=1, description="served answers waiting to be logged; beyond it they are dropped (counted)"
    )
    impression_flush_ms: int = Field(200, ge=1, description="how often queued answers are written")
    online_metrics_days: int = Field(7, ge=1, description="the window /metrics reports online metrics over")
    online_metrics_ttl_seconds: float = Field(
        60.0, ge=0, description="how long /metrics reuses computed online metrics"
    )
    canary_window_seconds: float = Field(
        900.0, ge=0, description="the canary guardrail's evaluation window (0: no guardrail)"
    )
    canary_min_sessions: int = Field(
        200, ge=2, description="sessions per arm in a window before the canary guardrail reads it"
    )
    canary_placement: str | None = Field(
        None, description="the placement the canary guardrail compares on; default: all placements"
    )
    # --- web pages ---
    demo_users: list[str] = Field(
        default_factory=list,
        description="shop user ids the home page offers (the store keeps only pseudonyms)",
    )
    search_mode: Literal["auto", "bm25", "hybrid", "ltr"] = Field(
        "auto",
        description="the mode of the search index version `serve` builds when the catalogue has none "
        "(or changed): keyword only, keyword + sentence embeddings with adaptive fusion (loads "
        "all-MiniLM-L6-v2; item vectors cached under var/embeddings), or those plus a learned ranker "
        "(`shelfwise index build --mode ltr` with judgments); auto keeps the active version's mode "
        "and starts a shop on hybrid",
    )
    search_index_on_start: int = Field(
        50_000,
        ge=1,
        description="a catalogue with more items starts answering keyword searches over its first "
        "this-many available items while the whole catalogue is read and its index loaded (or "
        "built) in the background (the answers say so)",
    )
    search_embed_on_start: int = Field(
        2_000,
        ge=0,
        description="items a start may embed before it listens; a hybrid index needing more is built "
        "in a background thread while keyword search answers (the answers say so)",
    )
    shard_engine: Literal["threads", "ray"] = Field(
        "threads",
        description="where a sharded search index's shards are held: in each serving process, "
        "queried by a thread pool (threads), or one Ray actor per shard, shared by every API worker "
        "and replica on the cluster (ray: SHELFWISE_RAY_ADDRESS joins a cluster, otherwise this "
        "process starts a local one)",
    )
    dashboard_on_start: bool = Field(
        True, description="build the analytics dashboard's report when serving starts"
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: {cidr!r} is not an address or CIDR") from exc
        return value

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

    @property
    def access_root(self) -> Path:
        return self.access_dir or self.var_dir

    @property
    def store_request_timeout(self) -> float:
        """``store_request_timeout_ms`` in seconds: how long a request waits for the store."""
        return self.store_request_timeout_ms / 1000

    @property
    def models_root(self) -> Path:
        return self.models_dir or self.var_dir / "models"

    def resolved_pseudonym_key(self, *, create: bool = True) -> bytes:
        """The HMAC key; created once and kept in ``var_dir`` when none is configured. With
        ``create=False`` (erasure, verification: a new key would name nobody) a missing key is an error."""
        if self.pseudonym_key is not None:
            key = self.pseudonym_key.get_secret_value().encode()
            if len(key) < 16:
                raise ConfigError("SHELFWISE_PSEUDONYM_KEY is too short", hint="use at least 16 characters")
            return key
        path = self.var_dir / "pseudonym.key"
        if not path.exists() and not create:
            raise ConfigError(
                f"no pseudonym key: SHELFWISE_PSEUDONYM_KEY is not set and {path} does not exist",
                hint="use the key the store was ingested with: set SHELFWISE_PSEUDONYM_KEY, or "
                "SHELFWISE_VAR_DIR to the directory that holds pseudonym.key",
            )
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
