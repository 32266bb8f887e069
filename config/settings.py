"""Settings of every WorkRate process: config/defaults.toml overlaid by WORKRATE_* environment variables.

config/defaults.toml is the one source of default values (and says what each setting is for); RULES says
what each setting's value may be. Settings are loaded once at the entry point and passed to each part.
"""
from __future__ import annotations

import dataclasses
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")
ENV_PREFIX = "WORKRATE_"
SECRET_KEY_FILE = "secret_key"
PATH_SETTINGS = ("files_dir", "dkim_key_file", "smtp_tls_cert", "smtp_tls_key")  # besides data_dir; "" = unset


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def variable(name: str) -> str:
    """The environment variable of a setting: data_dir -> WORKRATE_DATA_DIR."""
    return ENV_PREFIX + name.upper()


@dataclass(frozen=True)
class Rule:
    """What one setting's value may be. A value outside the rule stops start-up with the sentence
    "VARIABLE <must>, not <value>." (or the sentence `check` returns, for values with several ways to be wrong).
    """

    kind: type = str  # str, int, float or Path
    low: float | None = None  # the smallest value allowed
    above: float | None = None  # values must be greater than this
    high: float | None = None  # the largest value allowed
    choices: tuple[str, ...] = ()  # compared case-insensitively, kept in upper case
    must: str = ""  # the sentence, when the one made from the above would not say it well
    check: Callable[[Any], str | None] | None = None  # returns what is wrong, after the variable's name
    required: bool = False  # False: an empty value means "not set" and is not checked
    optional: bool = False  # for a number: an empty value means "not set" (None)

    def sentence(self) -> str:
        if self.must:
            return self.must
        if self.choices:
            return "must be " + ", ".join(self.choices[:-1]) + " or " + self.choices[-1]
        if self.above is not None:
            return "must be greater than " + ("zero" if self.above == 0 else f"{self.above:g}")
        if self.low is not None and self.high is not None:
            return f"must be from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return "must not be negative" if self.low == 0 else f"must be at least {self.low:g}"
        return f"must be at most {self.high:g}"

    def problem(self, value: Any) -> str | None:
        """What is wrong with an already converted value, or None."""
        if value is None and self.optional:
            return None
        if ((self.choices and str(value).upper() not in self.choices)
                or (self.low is not None and value < self.low) or (self.above is not None and value <= self.above)
                or (self.high is not None and value > self.high)):
            return f"{self.sentence()}, not {value!r}"
        return self.check(value) if self.check and (value or self.required) else None


def _database_url(url: str) -> str | None:
    scheme = urlsplit(url).scheme
    if scheme not in ("sqlite", "postgres", "postgresql"):
        return f"must start with sqlite:/// or postgresql://, not {url!r}"
    if scheme.startswith("postgres") and not urlsplit(url).hostname and "host=" not in url:
        return f"has no host name: {url!r}"
    return None


def _relay_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps", "smtp+starttls") or not parts.hostname:
        return ("must look like smtp://host:port, smtp+starttls://user:password@host:587 "
                f"or smtps://host:465, not {url!r}")
    try:
        _ = parts.port
    except ValueError:
        return f"has a port that is not a number from 1 to 65535: {url!r}"
    return None


def _base_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http:// or https:// address, not {url!r}"
    return None


def _domain(domain: str) -> str | None:
    if not domain or "@" in domain or " " in domain or ("." not in domain and domain != "localhost"):
        return f"must be a domain name such as reply.example.com, not {domain!r}"
    return None


def _quiet_hours(value: str) -> str | None:
    if not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d-([01]?\d|2[0-3]):[0-5]\d", value) or \
            value.split("-")[0].zfill(5) == value.split("-")[1].zfill(5):
        return f"must look like 20:00-08:00 (from-until, 24-hour clock, two different times), not {value!r}"
    return None


def _sender_checks(value: str) -> str | None:
    if value not in ("off", "dns"):  # kept in lower case: the gateway compares with "off" and "dns"
        return f"must be off or dns, not {value!r}"
    return None


_PORT = Rule(int, low=0, high=65535, must="must be a port number from 1 to 65535")  # 0: any free port (tests)
_NOT_NEGATIVE_INT = Rule(int, low=0)
_NOT_NEGATIVE = Rule(float, low=0)
_POSITIVE_INT = Rule(int, above=0)

# Every setting, in the order of config/defaults.toml. An empty string means "not set" for text settings.
RULES: dict[str, Rule] = {
    "data_dir": Rule(Path),
    "database_url": Rule(check=_database_url),
    "secret_key": Rule(),
    "smtp_host": Rule(),
    "smtp_port": _PORT,
    "web_host": Rule(),
    "web_port": _PORT,
    "base_url": Rule(check=_base_url),
    "reply_domain": Rule(check=_domain, required=True),
    "mail_from": Rule(),
    "relay_url": Rule(check=_relay_url),
    "notify_delay": Rule(float, low=0, optional=True),
    "notify_unread_minutes": Rule(int, low=1, high=1440),
    "team_quiet_hours": Rule(check=_quiet_hours),
    "max_message_size": _POSITIVE_INT,
    "max_line_length": _POSITIVE_INT,
    "smtp_processes": _NOT_NEGATIVE_INT,
    "smtp_max_connections": _POSITIVE_INT,
    "smtp_connections_per_peer": _POSITIVE_INT,
    "smtp_timeout": _NOT_NEGATIVE,
    "smtp_idle_session_seconds": Rule(float, above=0),
    "smtp_commands_per_mail": _POSITIVE_INT,
    "smtp_processing_timeout": _NOT_NEGATIVE,
    "smtp_tls_cert": Rule(),
    "smtp_tls_key": Rule(),
    "trusted_authserv_id": Rule(),
    "dkim_key_file": Rule(),
    "dkim_selector": Rule(),
    "dkim_domain": Rule(),
    "files_dir": Rule(),
    "web_threads": _POSITIVE_INT,
    "web_header_timeout": Rule(float, above=0),
    "web_body_timeout": Rule(float, above=0),
    "live_stream_seconds": _NOT_NEGATIVE,
    "live_streams_per_person": _POSITIVE_INT,
    "live_max_streams": _POSITIVE_INT,
    "live_resume_limit": _NOT_NEGATIVE_INT,
    "live_poll_seconds": Rule(float, above=0),
    "login_link_minutes": _POSITIVE_INT,
    "proxy_hops": _NOT_NEGATIVE_INT,
    "session_idle_days": _POSITIVE_INT,
    "team_session_hours": _POSITIVE_INT,
    "client_session_days": _POSITIVE_INT,
    "email_link_days": _POSITIVE_INT,
    "email_episode_days": _NOT_NEGATIVE,
    "email_context_messages": _NOT_NEGATIVE_INT,
    "invitation_days": _POSITIVE_INT,
    "login_attempts": _POSITIVE_INT,
    "login_concurrency": _NOT_NEGATIVE_INT,
    "refused_mail_days": _NOT_NEGATIVE_INT,
    "reply_plain_per_hour": _POSITIVE_INT,
    "posts_per_minute": _POSITIVE_INT,
    "person_quota_mb": _NOT_NEGATIVE_INT,
    "workspace_quota_mb": _NOT_NEGATIVE_INT,
    "held_post_hours": Rule(float, above=0),
    "loop_posts": _POSITIVE_INT,
    "loop_minutes": Rule(float, above=0),
    "sender_checks": Rule(check=_sender_checks, required=True),
    "log_level": Rule(choices=("DEBUG", "INFO", "WARNING", "ERROR")),
}

# Settings that must be set together or not at all.
TOGETHER = [("smtp_tls_cert", "smtp_tls_key")]


def _convert(name: str, raw: str | float) -> Any:
    """The value of a setting as its rule's type, from a TOML value or an environment string."""
    rule = RULES[name]
    value = raw.strip() if isinstance(raw, str) else raw
    if rule.kind is int or rule.kind is float:
        if rule.optional and value == "":
            return None
        try:
            return rule.kind(value)
        except (TypeError, ValueError):
            what = "a whole number" if rule.kind is int else "a number"
            raise ConfigError(f"{variable(name)} must be {what}, not {raw!r}.") from None
    if rule.kind is Path:
        return Path(str(value))
    return str(value).upper() if rule.choices else str(value)


def _read_defaults() -> dict[str, Any]:
    with open(DEFAULTS_FILE, "rb") as f:
        values = tomllib.load(f)
    unknown = sorted(set(values) - set(RULES))
    missing = [name for name in RULES if name not in values]
    if unknown or missing:
        raise ConfigError(f"config/defaults.toml does not match the settings (unknown: {unknown}, "
                          f"missing: {missing}).")
    return {name: _convert(name, values[name]) for name in RULES}


DEFAULTS: Mapping[str, Any] = _read_defaults()  # read once, at import


def _default(name: str) -> Any:
    return DEFAULTS[name]


@dataclass(frozen=True)
class Settings:
    """Every setting; the defaults come from config/defaults.toml, which documents each one."""

    data_dir: Path = _default("data_dir")
    database_url: str = _default("database_url")
    secret_key: str = _default("secret_key")
    smtp_host: str = _default("smtp_host")
    smtp_port: int = _default("smtp_port")
    web_host: str = _default("web_host")
    web_port: int = _default("web_port")
    base_url: str = _default("base_url")
    reply_domain: str = _default("reply_domain")
    mail_from: str = _default("mail_from")
    relay_url: str = _default("relay_url")
    notify_delay: float | None = _default("notify_delay")
    notify_unread_minutes: int = _default("notify_unread_minutes")
    team_quiet_hours: str = _default("team_quiet_hours")
    max_message_size: int = _default("max_message_size")
    max_line_length: int = _default("max_line_length")
    smtp_processes: int = _default("smtp_processes")
    smtp_max_connections: int = _default("smtp_max_connections")
    smtp_connections_per_peer: int = _default("smtp_connections_per_peer")
    smtp_timeout: float = _default("smtp_timeout")
    smtp_idle_session_seconds: float = _default("smtp_idle_session_seconds")
    smtp_commands_per_mail: int = _default("smtp_commands_per_mail")
    smtp_processing_timeout: float = _default("smtp_processing_timeout")
    smtp_tls_cert: str = _default("smtp_tls_cert")
    smtp_tls_key: str = _default("smtp_tls_key")
    trusted_authserv_id: str = _default("trusted_authserv_id")
    dkim_key_file: str = _default("dkim_key_file")
    dkim_selector: str = _default("dkim_selector")
    dkim_domain: str = _default("dkim_domain")
    files_dir: str = _default("files_dir")
    web_threads: int = _default("web_threads")
    web_header_timeout: float = _default("web_header_timeout")
    web_body_timeout: float = _default("web_body_timeout")
    live_stream_seconds: float = _default("live_stream_seconds")
    live_streams_per_person: int = _default("live_streams_per_person")
    live_max_streams: int = _default("live_max_streams")
    live_resume_limit: int = _default("live_resume_limit")
    live_poll_seconds: float = _default("live_poll_seconds")
    login_link_minutes: int = _default("login_link_minutes")
    proxy_hops: int = _default("proxy_hops")
    session_idle_days: int = _default("session_idle_days")
    team_session_hours: int = _default("team_session_hours")
    client_session_days: int = _default("client_session_days")
    email_link_days: int = _default("email_link_days")
    email_episode_days: float = _default("email_episode_days")
    email_context_messages: int = _default("email_context_messages")
    invitation_days: int = _default("invitation_days")
    login_attempts: int = _default("login_attempts")
    login_concurrency: int = _default("login_concurrency")
    refused_mail_days: int = _default("refused_mail_days")
    reply_plain_per_hour: int = _default("reply_plain_per_hour")
    posts_per_minute: int = _default("posts_per_minute")
    person_quota_mb: int = _default("person_quota_mb")
    workspace_quota_mb: int = _default("workspace_quota_mb")
    held_post_hours: float = _default("held_post_hours")
    loop_posts: int = _default("loop_posts")
    loop_minutes: float = _default("loop_minutes")
    sender_checks: str = _default("sender_checks")
    log_level: str = _default("log_level")

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

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _validate(values: Mapping[str, Any]) -> None:
    for name, rule in RULES.items():
        problem = rule.problem(values[name])
        if problem:
            raise ConfigError(f"{variable(name)} {problem}.")
    for group in TOGETHER:
        if len({bool(values[name]) for name in group}) > 1:
            raise ConfigError(" and ".join(variable(name) for name in group) + " must be set together.")


def load_settings(environ: Mapping[str, str] | None = None, *, ensure_secret: bool = True) -> Settings:
    """Reads config/defaults.toml, overlays WORKRATE_* variables from environ, validates.

    Raises ConfigError with a sentence naming the variable when a value is unusable.
    """
    environ = os.environ if environ is None else environ
    values = dict(DEFAULTS)
    for name in RULES:
        if variable(name) in environ:
            values[name] = _convert(name, environ[variable(name)])
    _validate(values)
    # Paths become absolute once, here, against the folder the process started in: every part (and
    # Flask's send_file, which resolves relative paths against the app's package) then agrees on them.
    values["data_dir"] = Path(str(values["data_dir"])).resolve()
    for key in PATH_SETTINGS:
        if values[key]:
            values[key] = str(Path(str(values[key])).resolve())
    values["log_level"] = str(values["log_level"]).upper()
    settings = Settings(**values)
    if ensure_secret and not settings.secret_key:
        settings = settings.replace(secret_key=stored_secret_key(settings.data_dir))
    return settings


def stored_secret_key(data_dir: Path) -> str:
    """Returns the secret kept in DATA_DIR/secret_key, generating it (mode 0600) on first use."""
    data_dir = Path(data_dir)
    make_private_dir(data_dir)
    path = data_dir / SECRET_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def make_private_dir(path: Path) -> None:
    """Creates path (and missing parents) readable by this user only (0700): it holds the database, the
    secret key, stored files and outgoing mail."""
    Path(path).mkdir(mode=0o700, parents=True, exist_ok=True)


def create_private_file(path: Path) -> None:
    """Creates path empty with mode 0600 unless it exists, so that a program that opens it later (SQLite)
    does not create it readable by everyone."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
