"""Settings shared by every service, read from the environment and validated at start.

A bad value stops the service with a message naming the variable, rather than failing later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from database.engine import async_url


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_prefix="", case_sensitive=False)

    database_url: str = Field(description="PostgreSQL URL (postgresql://user:pass@host:port/db)")
    storage_url: str = Field(
        # Absolute: a relative file URL would change meaning with the working directory.
        default_factory=lambda: (Path(".comfy-cloud") / "storage").resolve().as_uri(),
        description="file:///abs/dir for local files, gs://bucket/prefix for Google Cloud Storage",
    )
    broadcast_url: str | None = Field(
        default=None, description="unset: PostgreSQL LISTEN/NOTIFY; supabase: Supabase Realtime"
    )
    secret_key: str | None = Field(
        default=None, description="key that seals partner-node credentials (32+ characters)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        async_url(value)  # raises ValueError with a clear message
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str) -> str:
        if not value.startswith(("file://", "gs://")):
            raise ValueError("must start with file:// or gs://")
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("must be at least 32 characters")
        return value


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class ConfigError(SystemExit):
    """Raised at start with a readable list of the bad settings."""


def load_settings(cls: type[SettingsT], **overrides: object) -> SettingsT:
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [f"invalid configuration for {cls.__name__}:"]
        for error in exc.errors():
            name = ".".join(str(p) for p in error["loc"]).upper()
            lines.append(f"  {name}: {error['msg']}")
        raise ConfigError("\n".join(lines)) from None
