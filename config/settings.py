"""Settings of every WorkRate process: config/defaults.toml overlaid by WORKRATE_* environment variables.

Settings are loaded once at the entry point and passed explicitly to each part; nothing reads a
module-global configuration.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")
ENV_PREFIX = "WORKRATE_"
SECRET_KEY_FILE = "secret_key"


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./var")
    database_url: str = ""
    secret_key: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    base_url: str = ""
    reply_domain: str = "reply.localhost"
    mail_from: str = ""
    relay_url: str = ""
    notify_delay: float = 0
    max_message_size: int = 26214400
    max_line_length: int = 1048576
    smtp_processes: int = 1
    smtp_max_connections: int = 200
    smtp_timeout: float = 300
    smtp_processing_timeout: float = 60
    smtp_tls_cert: str = ""
    smtp_tls_key: str = ""
    trusted_authserv_id: str = ""
    dkim_key_file: str = ""
    dkim_selector: str = "workrate"
    dkim_domain: str = ""
    files_dir: str = ""
    web_threads: int = 256
    live_stream_seconds: float = 25
    login_link_minutes: int = 15
    login_attempts: int = 10
    session_idle_days: int = 14
    team_session_hours: int = 168
    client_session_days: int = 90
    email_link_days: int = 7
    invitation_days: int = 7
    proxy_hops: int = 0
    log_level: str = "INFO"
    extra: Mapping[str, str] = field(default_factory=dict, compare=False)

    # Derived values, so that every part resolves defaults the same way.
    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(Path(self.data_dir) / 'workrate.db').resolve()}"

    @property
    def effective_base_url(self) -> str:
        return (self.base_url or f"http://{self.web_host}:{self.web_port}").rstrip("/")

    @property
    def effective_mail_from(self) -> str:
        return self.mail_from or f"notifications@{self.reply_domain}"

    @property
    def effective_files_dir(self) -> Path:
        return Path(self.files_dir) if self.files_dir else Path(self.data_dir) / "files"

    @property
    def is_postgres(self) -> bool:
        return self.effective_database_url.startswith(("postgres://", "postgresql://"))

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)


def _load_defaults() -> dict[str, object]:
    with open(DEFAULTS_FILE, "rb") as f:
        return tomllib.load(f)


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Settings)}


def _convert(name: str, raw: str, default: object) -> object:
    var = ENV_PREFIX + name.upper()
    raw = raw.strip()
    kind = _FIELD_TYPES.get(name)
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{var} must be a number, not {raw!r}.") from None
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{var} must be true or false, not {raw!r}.")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{var} must be a whole number, not {raw!r}.") from None
    return raw


def _validate(values: dict[str, object]) -> None:
    for key in ("smtp_port", "web_port"):
        port = values[key]
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"{ENV_PREFIX}{key.upper()} must be a port number from 1 to 65535, not {port!r}.")
    for key in ("notify_delay", "smtp_timeout", "smtp_processing_timeout", "live_stream_seconds", "proxy_hops",
                "smtp_processes"):
        if values[key] < 0:  # type: ignore[operator]
            raise ConfigError(f"{ENV_PREFIX}{key.upper()} must not be negative, not {values[key]!r}.")
    for key in ("max_message_size", "max_line_length", "smtp_max_connections", "web_threads",
                "login_link_minutes", "login_attempts", "session_idle_days", "team_session_hours",
                "client_session_days", "email_link_days", "invitation_days"):
        if values[key] <= 0:  # type: ignore[operator]
            raise ConfigError(f"{ENV_PREFIX}{key.upper()} must be greater than zero, not {values[key]!r}.")
    db = str(values["database_url"])
    if db:
        scheme = urlsplit(db).scheme
        if scheme not in ("sqlite", "postgres", "postgresql"):
            raise ConfigError(
                f"WORKRATE_DATABASE_URL must start with sqlite:/// or postgresql://, not {db!r}.")
        if scheme.startswith("postgres") and not urlsplit(db).hostname and "host=" not in db:
            raise ConfigError(f"WORKRATE_DATABASE_URL has no host name: {db!r}.")
    relay = str(values["relay_url"])
    if relay:
        parts = urlsplit(relay)
        if parts.scheme not in ("smtp", "smtps", "smtp+starttls") or not parts.hostname:
            raise ConfigError(
                "WORKRATE_RELAY_URL must look like smtp://host:port, smtp+starttls://user:password@host:587 "
                f"or smtps://host:465, not {relay!r}.")
        try:
            _ = parts.port
        except ValueError:
            raise ConfigError(
                f"WORKRATE_RELAY_URL has a port that is not a number from 1 to 65535: {relay!r}.") from None
    base = str(values["base_url"])
    if base:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"WORKRATE_BASE_URL must be an http:// or https:// address, not {base!r}.")
    domain = str(values["reply_domain"])
    if not domain or "@" in domain or " " in domain or "." not in domain and domain != "localhost":
        raise ConfigError(f"WORKRATE_REPLY_DOMAIN must be a domain name such as reply.example.com, not {domain!r}.")
    if bool(values["smtp_tls_cert"]) != bool(values["smtp_tls_key"]):
        raise ConfigError("WORKRATE_SMTP_TLS_CERT and WORKRATE_SMTP_TLS_KEY must be set together.")
    if str(values["log_level"]).upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"WORKRATE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {values['log_level']!r}.")


def load_settings(environ: Mapping[str, str] | None = None, *, ensure_secret: bool = True) -> Settings:
    """Reads config/defaults.toml, overlays WORKRATE_* variables from environ, validates.

    Raises ConfigError with a sentence naming the variable when a value is unusable.
    """
    environ = os.environ if environ is None else environ
    values = _load_defaults()
    known = {f.name for f in dataclasses.fields(Settings)} - {"extra"}
    for key in list(values):
        if key not in known:
            raise ConfigError(f"config/defaults.toml has an unknown setting {key!r}.")
    for key, default in list(values.items()):
        var = ENV_PREFIX + key.upper()
        if var in environ:
            values[key] = _convert(key, environ[var], default)
    # tomllib reads 0 as int; the float settings must stay floats.
    for f in dataclasses.fields(Settings):
        if f.type == "float" and f.name in values:
            values[f.name] = float(values[f.name])  # type: ignore[arg-type]
    _validate(values)
    values["data_dir"] = Path(str(values["data_dir"]))
    values["log_level"] = str(values["log_level"]).upper()
    settings = Settings(**values)  # type: ignore[arg-type]
    if ensure_secret and not settings.secret_key:
        settings = settings.replace(secret_key=stored_secret_key(settings.data_dir))
    return settings


def stored_secret_key(data_dir: Path) -> str:
    """Returns the secret kept in DATA_DIR/secret_key, generating it (mode 0600) on first use."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
