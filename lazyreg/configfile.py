"""The settings in force: defaults < TOML file < environment (LAZYREG_*) < flags.

`load` is what `lazyreg serve` and `lazyreg config show` use; `check_file` is
`lazyreg config check`. Every problem is a `ConfigError` whose message is one
line naming the key (and, for a value, where it came from), so that the CLI
prints it as is.

The known keys are the fields of `Settings`: a field added there is a key of
the file, a `LAZYREG_<NAME>` variable and known to the unknown-variable
warning, with nothing to change here. `CLIENT_VARIABLES` lists the LAZYREG_*
variables that are not server settings.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import EnvSettingsSource

from lazyreg.config import Settings
from lazyreg.redact import redact

PREFIX = "LAZYREG_"
# LAZYREG_* variables read by something other than the server's settings.
CLIENT_VARIABLES = frozenset({
    "LAZYREG_CONFIG",  # the config file, when --config is not given
    "LAZYREG_SERVER", "LAZYREG_TOKEN",  # the CLI's server and credential
    "LAZYREG_SHARED", "LAZYREG_TEST_IMAGE",  # the test rig (tests, benchmarks)
})
MAX_FILE_BYTES = 1024 * 1024  # a config file is a few KiB; anything bigger is a mistake
# Text values of keys named like this are never shown (nor is a SecretStr field, whatever
# its name): a secret added as a plain string is still hidden.
SECRET_NAME = re.compile(r"password|secret|private")


class ConfigError(Exception):
    """A setting that cannot be used; the message is one line naming it."""


@dataclass(frozen=True)
class Loaded:
    settings: Settings
    # Where each key not left at its default came from: "file", "env LAZYREG_X", "flag --x".
    origins: dict[str, str]
    file: Path | None


def known_keys() -> frozenset[str]:
    return frozenset(Settings.model_fields)


def env_name(key: str) -> str:
    return PREFIX + key.upper()


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """LAZYREG_* variables that nothing reads: a typo that would otherwise go unnoticed."""
    known = {env_name(k) for k in known_keys()} | CLIENT_VARIABLES
    return sorted(name for name in environ
                  if name.upper().startswith(PREFIX) and name.upper() not in known)


def read_file(path: Path) -> dict[str, Any]:
    """The file's keys and values; a key that is no setting is an error naming it."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES} bytes: not a config file")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _refuse_unknown(path, data)
    return data


def _refuse_unknown(path: Path, data: Mapping[str, Any]) -> None:
    known = known_keys()
    for key in data:
        if key not in known:
            import difflib  # only for this error: a server never loads it

            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{path}: unknown key '{key}'{hint}")


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """LAZYREG_* values as pydantic-settings reads them (the same parsing as before)."""
    source = EnvSettingsSource(Settings, case_sensitive=False, env_prefix=PREFIX)
    source.env_vars = {k.lower(): v for k, v in environ.items()}
    return {k: v for k, v in source().items() if k in known_keys()}


def _validate(values: Mapping[str, Any], origins: Mapping[str, str]) -> Settings:
    try:
        # model_validate runs the model's checks without reading the environment again.
        settings = Settings.model_validate(dict(values))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(map(str, first["loc"])) or "settings"
        origin = origins.get(str(first["loc"][0])) if first["loc"] else None
        where = f" (from {origin})" if origin else ""
        raise ConfigError(f"{key}{where}: {first['msg']}") from None
    if bool(settings.tls_cert) != bool(settings.tls_key):
        key = "tls_key" if settings.tls_cert else "tls_cert"
        raise ConfigError(f"{key}: tls_cert and tls_key go together (HTTPS needs both)")
    return settings


def load(flags: Mapping[str, Any], config_file: Path | None = None,
         environ: Mapping[str, str] | None = None) -> Loaded:
    """The settings in force: `flags` over the environment over the file.

    The file is `config_file`, else `$LAZYREG_CONFIG`, else none.
    """
    environ = os.environ if environ is None else environ
    path = config_file or (Path(environ["LAZYREG_CONFIG"]) if environ.get("LAZYREG_CONFIG")
                           else None)
    file_values = read_file(path) if path else {}
    env_values = _env_values(environ)
    origins: dict[str, str] = {k: "file" for k in file_values}
    origins.update({k: f"env {env_name(k)}" for k in env_values})
    origins.update({k: f"flag --{k.replace('_', '-')}" for k in flags})
    settings = _validate({**file_values, **env_values, **flags}, origins)
    return Loaded(settings, origins, path)


def from_environment(environ: Mapping[str, str] | None = None) -> Settings:
    """A server process's settings: its LAZYREG_* variables alone (`as_environment` wrote
    every one); ConfigError names a bad one, as at the command line."""
    values = _env_values(os.environ if environ is None else environ)
    return _validate(values, {k: f"env {env_name(k)}" for k in values})


def check_file(path: Path) -> Settings:
    """The settings the file alone gives (over the defaults); ConfigError if it has a fault."""
    values = read_file(path)
    return _validate(values, {k: str(path) for k in values})


def is_secret(key: str, value: Any) -> bool:
    return isinstance(value, SecretStr) or (isinstance(value, str)
                                            and bool(SECRET_NAME.search(key)))


def render(loaded: Loaded) -> Iterable[str]:
    """The settings as TOML that `config check` accepts, each with where it came from."""
    if loaded.file:
        yield f"# file: {loaded.file}"
    values = loaded.settings.model_dump()
    for key in Settings.model_fields:
        value = values[key]
        origin = loaded.origins.get(key, "default")
        if value is None:
            yield f"# {key} is unset  ({origin})"
        elif is_secret(key, value):
            yield f'{key} = "<redacted>"  # {origin}'
        else:
            yield f"{key} = {_toml_value(value)}  # {origin}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    # JSON's string escapes are TOML's basic string escapes.
    text = redact(str(value))
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def as_environment(settings: Settings) -> dict[str, str]:
    """The settings as LAZYREG_* variables, every one set (so that they win over a config
    file's): how `lazyreg serve` hands them to the server process it becomes, and a
    supervisor to its workers."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, list | tuple | dict | set):
            text = json.dumps(sorted(value) if isinstance(value, set) else value, default=str)
        else:
            text = str(value)
        env[f"LAZYREG_{name.upper()}"] = text
    return env
