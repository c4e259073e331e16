"""Server settings: defaults < TOML file (LAZYREG_CONFIG) < environment (LAZYREG_*) < flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAZYREG_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(5000, ge=0, le=65535)
    data_dir: Path = Path("./lazyreg-data")
    database_url: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Seconds a failed upstream source is skipped before it is tried again.
    source_cooldown: float = 300.0
    # Seconds a lazy download may take in all (it goes on when its clients leave).
    detached_fetch_timeout: float = 3600.0
    # Seconds a download lease is valid before another process may take it over.
    lease_ttl: float = 30.0
    # Retries of a failed upstream request, and the first backoff (doubling, with jitter).
    upstream_retries: int = Field(4, ge=0, le=20)
    upstream_backoff: float = Field(0.5, ge=0)
    log_level: str = "info"
    # One line per request and per task: "text" or "json" (one JSON object a line).
    log_format: Literal["text", "json"] = "text"
    # Count every HTTP request by route and status for /metrics (off only to measure its cost).
    request_metrics: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("LAZYREG_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'lazyreg.db').resolve()}"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"
