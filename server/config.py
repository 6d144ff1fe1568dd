"""Server settings: MELO_* environment variables, optionally a TOML file (``--config``).

Embedded defaults need no configuration at all; settings that are only safe on loopback are refused
when the server binds a public address.
"""

import ipaddress
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from melo_protocol.wire import RegistrationMode

# the background jobs (server/jobs/scheduler.py), named in MELO_JOBS_PERIODS
JOB_NAMES = ("scheduled_messages", "disappearing", "retention", "cleanup", "key_rotation")


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("melo-server", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MELO_", extra="forbid", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None  # default: SQLite file in data_dir
    redis_url: str | None = None  # default: in-process bus and stores
    redis_prefix: str = "melo:"
    # base64 of 32 bytes; seals private keys in the database. Every host of a cluster sets the same.
    # Unset: secret.key in data_dir, made on first start.
    secret_key: SecretStr | None = None
    migrate_on_start: bool = True

    public_url: str = "http://127.0.0.1:8088"
    jwt_issuer: str = "melo"
    jwt_audience: str = "melo"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=900)
    # A rotated JWT signing key is in every worker's JWKS this long before any worker signs with it:
    # each worker reads its key ring again before signing or serving JWKS once it is older than this.
    # Every host of a cluster sets the same value, and their clocks differ by much less.
    jwt_key_propagation_s: float = Field(default=10.0, gt=0, le=3600)
    session_idle_days: int = Field(default=90, ge=1)

    registration_mode: RegistrationMode = RegistrationMode.OPEN
    # When binding a public address, open registration must be chosen on purpose.
    allow_open_registration_public: bool = False

    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    max_avatar_bytes: int = Field(default=1024 * 1024, ge=1024)

    # rate limits, in the `limits` notation ("N per period")
    rate_login_ip: str = "20/minute"
    rate_login_account: str = "10/minute"
    rate_register_ip: str = "10/hour"
    rate_user: str = "600/minute"

    rate_ws_commands: str = "120/10seconds"

    ws_queue_size: int = Field(default=1024, ge=8)
    ws_auth_timeout_s: float = Field(default=10.0, gt=0)
    ws_heartbeat_s: int = Field(default=25, ge=1)
    ws_idle_timeout_s: float = Field(default=75.0, gt=0)
    # more than ws_max_bad_frames invalid frames within ws_bad_frames_window_s seconds close a socket (4009)
    ws_max_bad_frames: int = Field(default=20, ge=1)
    ws_bad_frames_window_s: float = Field(default=60.0, gt=0)
    ws_maintenance_s: float = Field(default=30.0, gt=0)

    argon2_time_cost: int = Field(default=3, ge=2)
    argon2_memory_kib: int = Field(default=65536, ge=19456)
    argon2_parallelism: int = Field(default=1, ge=1)

    ice_stun_urls: list[str] = []
    ice_turn_urls: list[str] = []
    turn_secret: SecretStr | None = None  # coturn static-auth-secret: time-limited TURN credentials
    turn_ttl_seconds: int = Field(default=86400, ge=60)

    # web push (RFC 8030/8291/8292): VAPID subject (a mailto: or https: contact), retries, TTL
    push_vapid_subject: str = "mailto:admin@localhost"
    push_ttl_seconds: int = Field(default=86400, ge=0)
    push_max_attempts: int = Field(default=4, ge=1, le=10)
    push_backoff_s: float = Field(default=1.0, gt=0)
    push_timeout_s: float = Field(default=10.0, gt=0)
    push_queue_size: int = Field(default=10_000, ge=1)

    # background jobs (one leader across workers via a database lease)
    jobs_enabled: bool = True
    jobs_tick_s: float = Field(default=5.0, gt=0)
    jobs_lease_s: int = Field(default=30, ge=2)
    # a job's period in seconds, by job name, instead of its default (tick, tick, 3600, 3600, 86400):
    # MELO_JOBS_PERIODS='{"retention": 600}'
    jobs_periods: dict[str, float] = {}
    retention_days: int = Field(default=0, ge=0)  # server default; 0 keeps history forever
    key_rotation_days: int = Field(default=30, ge=1)  # JWT signing key and data key
    revoked_session_keep_days: int = Field(default=30, ge=0)

    trust_forwarded_for: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    @field_validator("jobs_periods")
    @classmethod
    def _known_jobs(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(JOB_NAMES))
        if unknown:
            raise ValueError(f"unknown job(s) {unknown}: the jobs are {', '.join(JOB_NAMES)}")
        if any(not period > 0 for period in value.values()):
            raise ValueError("a job's period must be a positive number of seconds")
        return value

    @model_validator(mode="after")
    def _refuse_insecure_public_defaults(self) -> "Settings":
        if not is_loopback(self.host):
            problems = []
            if self.registration_mode == RegistrationMode.OPEN and not self.allow_open_registration_public:
                problems.append(
                    "open registration on a public address: set MELO_REGISTRATION_MODE=token|closed, "
                    "or MELO_ALLOW_OPEN_REGISTRATION_PUBLIC=true to mean it"
                )
            if self.public_url.startswith("http://127.0.0.1") or self.public_url.startswith(
                "http://localhost"
            ):
                problems.append("MELO_PUBLIC_URL must name the address clients use")
            if problems:
                raise ValueError(f"refusing insecure settings for host {self.host}: {'; '.join(problems)}")
        if self.workers > 1 and not self.redis_url:
            raise ValueError(
                f"--workers {self.workers} needs Redis: set MELO_REDIS_URL (workers share fan-out, "
                "revocations and rate limits through it)"
            )
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return "sqlite+aiosqlite:///" + str(self.data_dir / "melo.sqlite3")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env_value(raw: str) -> Any:
    """Lists and tables (MELO_ICE_STUN_URLS='["stun:…"]') are JSON; everything else stays text."""
    if raw.lstrip().startswith(("[", "{")):
        try:
            return json.loads(raw)
        except ValueError:
            return raw  # let validation name the field
    return raw


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from, lowest first: the TOML file, MELO_* environment, explicit overrides."""
    values: dict[str, Any] = {}
    if config_file is not None:
        with open(config_file, "rb") as fh:
            raw = tomllib.load(fh)
        values.update(raw.get("melo", raw))
    for name in Settings.model_fields:
        env = os.environ.get("MELO_" + name.upper())
        if env:
            values[name] = _env_value(env)
    values.update({k: v for k, v in overrides.items() if v is not None})
    # model_validate skips BaseSettings' own sources, so the order above is the one that holds.
    return Settings.model_validate(values)


__all__ = ["Settings", "is_loopback", "load_settings"]
