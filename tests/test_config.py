"""Settings: defaults load, WORKRATE_* variables override them, bad values stop start-up with a sentence
naming the variable, and the generated secret key is kept private."""
from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path

import pytest

from config import ConfigError, Settings, load_settings
from config.settings import DEFAULTS, DEFAULTS_FILE, RULES, variable


def test_defaults_load_without_environment(tmp_path: Path) -> None:
    # With no variables set, every documented default applies.
    s = load_settings({"WORKRATE_DATA_DIR": str(tmp_path)})
    assert (s.smtp_host, s.smtp_port) == ("127.0.0.1", 2525)
    assert (s.web_host, s.web_port) == ("127.0.0.1", 8000)
    assert s.max_message_size == 25 * 1024 * 1024
    assert s.notify_delay is None and s.notify_unread_minutes == 5 and s.team_quiet_hours == ""
    assert s.effective_database_url == f"sqlite:///{(tmp_path / 'workrate.db').resolve()}"
    assert s.effective_base_url == "http://127.0.0.1:8000"
    assert s.effective_mail_from == "notifications@reply.localhost"
    assert not s.is_postgres


def test_environment_overrides_defaults(tmp_path: Path) -> None:
    # Each WORKRATE_* variable replaces the default of the same name, converted to the right type.
    s = load_settings({
        "WORKRATE_DATA_DIR": str(tmp_path), "WORKRATE_SMTP_PORT": "2626", "WORKRATE_NOTIFY_DELAY": "1.5",
        "WORKRATE_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x", "WORKRATE_REPLY_DOMAIN": "r.example.com",
        "WORKRATE_RELAY_URL": "smtps://u:p@mail.example.com:465", "WORKRATE_SECRET_KEY": "k" * 40,
    })
    assert s.smtp_port == 2626 and s.notify_delay == 1.5 and s.is_postgres
    assert s.reply_domain == "r.example.com" and s.secret_key == "k" * 40
    assert isinstance(s.notify_delay, float)


@pytest.mark.parametrize("var,value,needle", [
    ("WORKRATE_SMTP_PORT", "99999", "WORKRATE_SMTP_PORT"),
    ("WORKRATE_WEB_PORT", "eighty", "WORKRATE_WEB_PORT"),
    ("WORKRATE_DATABASE_URL", "mysql://x", "WORKRATE_DATABASE_URL"),
    ("WORKRATE_RELAY_URL", "http://relay", "WORKRATE_RELAY_URL"),
    ("WORKRATE_RELAY_URL", "smtp://relay:notaport", "WORKRATE_RELAY_URL"),
    ("WORKRATE_BASE_URL", "ftp://x", "WORKRATE_BASE_URL"),
    ("WORKRATE_REPLY_DOMAIN", "not a domain", "WORKRATE_REPLY_DOMAIN"),
    ("WORKRATE_NOTIFY_DELAY", "-1", "WORKRATE_NOTIFY_DELAY"),
    ("WORKRATE_MAX_MESSAGE_SIZE", "0", "WORKRATE_MAX_MESSAGE_SIZE"),
    ("WORKRATE_LOG_LEVEL", "LOUD", "WORKRATE_LOG_LEVEL"),
    ("WORKRATE_DATABASE_URL", "postgresql:///x", "has no host name"),
    ("WORKRATE_SMTP_PROCESSES", "-1", "must not be negative"),
    ("WORKRATE_WEB_THREADS", "0", "must be greater than zero"),
    ("WORKRATE_LOGIN_ATTEMPTS", "many", "must be a whole number"),
    ("WORKRATE_SMTP_TIMEOUT", "soon", "must be a number"),
    ("WORKRATE_REPLY_DOMAIN", "", "WORKRATE_REPLY_DOMAIN"),
    ("WORKRATE_REPLY_DOMAIN", "bob@example.com", "domain name"),
    ("WORKRATE_SMTP_TLS_CERT", "/etc/cert.pem", "WORKRATE_SMTP_TLS_KEY must be set together"),
    ("WORKRATE_TEAM_QUIET_HOURS", "8pm", "must look like 20:00-08:00"),
    ("WORKRATE_TEAM_QUIET_HOURS", "08:00-8:00", "two different times"),
    ("WORKRATE_NOTIFY_UNREAD_MINUTES", "0", "WORKRATE_NOTIFY_UNREAD_MINUTES"),
])
def test_bad_value_names_the_variable(tmp_path: Path, var: str, value: str, needle: str) -> None:
    # A value that cannot be used stops start-up with one sentence that names the variable.
    with pytest.raises(ConfigError) as err:
        load_settings({"WORKRATE_DATA_DIR": str(tmp_path), var: value})
    assert needle in str(err.value)
    assert str(err.value).endswith(".")


def test_notify_delay_empty_means_personal_choices_and_zero_means_at_once(tmp_path: Path) -> None:
    # Unset, each person's own timing applies; set (0 included) it is the operator's override for everyone.
    base = {"WORKRATE_DATA_DIR": str(tmp_path)}
    assert load_settings({**base, "WORKRATE_NOTIFY_DELAY": ""}, ensure_secret=False).notify_delay is None
    assert load_settings({**base, "WORKRATE_NOTIFY_DELAY": "0"}, ensure_secret=False).notify_delay == 0.0
    assert load_settings({**base, "WORKRATE_TEAM_QUIET_HOURS": "22:30-7:00"},
                         ensure_secret=False).team_quiet_hours == "22:30-7:00"


def test_generated_secret_key_is_stored_once_with_mode_0600(tmp_path: Path) -> None:
    # Without WORKRATE_SECRET_KEY, a key is generated once, kept in the data folder, readable by its owner only.
    first = load_settings({"WORKRATE_DATA_DIR": str(tmp_path)})
    second = load_settings({"WORKRATE_DATA_DIR": str(tmp_path)})
    assert len(first.secret_key) >= 40 and first.secret_key == second.secret_key
    mode = stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode)
    assert mode == 0o600


def test_defaults_have_one_source() -> None:
    # config/defaults.toml holds every default; Settings() without arguments has exactly those values.
    fields = [f.name for f in dataclasses.fields(Settings)]
    assert fields == list(RULES) == list(DEFAULTS)
    for name in fields:
        assert getattr(Settings(), name) == DEFAULTS[name], name
    assert Settings().notify_delay is None and isinstance(Settings().data_dir, Path)


def test_every_setting_is_documented_in_defaults_toml() -> None:
    # Each key has a comment above it (keys of one group, like smtp_host and smtp_port, share theirs).
    lines = DEFAULTS_FILE.read_text().splitlines()
    documented = set()
    for i, line in enumerate(lines):
        key = re.match(r"([a-z_]+) = ", line)
        if key:
            above = lines[i - 1]
            assert above.startswith("#") or re.match(r"[a-z_]+ = ", above), f"{key.group(1)} has no sentence"
            documented.add(key.group(1))
    assert documented == set(RULES)


def test_every_default_is_itself_valid(tmp_path: Path) -> None:
    # The rules accept each default: loading with no variables set succeeds, and every variable set to
    # its own default's text gives the same settings.
    environ = {variable(name): "" if value is None else str(value) for name, value in DEFAULTS.items()}
    environ[variable("data_dir")] = str(tmp_path)
    assert load_settings(environ, ensure_secret=False) == Settings(data_dir=tmp_path)


def test_values_are_trimmed_and_log_level_is_case_insensitive(tmp_path: Path) -> None:
    s = load_settings({"WORKRATE_DATA_DIR": str(tmp_path), "WORKRATE_LOG_LEVEL": " debug ",
                       "WORKRATE_WEB_PORT": " 8080 "}, ensure_secret=False)
    assert s.log_level == "DEBUG" and s.web_port == 8080


@pytest.mark.parametrize("name", [n for n, r in RULES.items() if r.kind in (int, float)])
def test_every_number_setting_refuses_a_value_outside_its_rule(tmp_path: Path, name: str) -> None:
    # Just outside the table's range (or not a number at all): one sentence naming the variable.
    rule = RULES[name]
    outside = (rule.high + 1 if rule.high is not None else
               rule.above if rule.above is not None else (rule.low or 0) - 1)
    for value in (str(outside), "lots"):
        with pytest.raises(ConfigError) as err:
            load_settings({"WORKRATE_DATA_DIR": str(tmp_path), variable(name): value}, ensure_secret=False)
        assert str(err.value).startswith(variable(name) + " must ") and str(err.value).endswith(".")


def test_rule_sentences() -> None:
    from config.settings import Rule

    assert Rule(float, above=0).problem(0.0) == "must be greater than zero, not 0.0"
    assert Rule(int, low=2, high=5).problem(6) == "must be from 2 to 5, not 6"
    assert Rule(int, low=3).problem(2) == "must be at least 3, not 2"
    assert Rule(choices=("A", "B", "C")).problem("d") == "must be A, B or C, not 'd'"
    assert Rule(int, low=0).problem(0) is None and Rule(float, above=0).problem(0.1) is None


def test_paths_are_made_absolute_once_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Relative paths are taken from the folder the process starts in, once: later changes of the working
    # folder (or a library resolving against its own folder) cannot move them.
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"WORKRATE_DATA_DIR": "./var", "WORKRATE_FILES_DIR": "shared/files",
                              "WORKRATE_DKIM_KEY_FILE": "keys/dkim.pem"}, ensure_secret=False)
    assert settings.data_dir == tmp_path.resolve() / "var"
    assert settings.effective_files_dir == tmp_path.resolve() / "shared" / "files"
    assert settings.dkim_key_file == str(tmp_path.resolve() / "keys" / "dkim.pem")
    assert settings.effective_database_url == f"sqlite:///{tmp_path.resolve() / 'var' / 'workrate.db'}"
    assert load_settings({}, ensure_secret=False).smtp_tls_cert == ""  # unset stays unset
