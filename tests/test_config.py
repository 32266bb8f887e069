"""Settings: defaults load, WORKRATE_* variables override them, bad values stop start-up with a sentence
naming the variable, and the generated secret key is kept private."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from config import ConfigError, load_settings


def test_defaults_load_without_environment(tmp_path: Path) -> None:
    # With no variables set, every documented default applies.
    s = load_settings({"WORKRATE_DATA_DIR": str(tmp_path)})
    assert (s.smtp_host, s.smtp_port) == ("127.0.0.1", 2525)
    assert (s.web_host, s.web_port) == ("127.0.0.1", 8000)
    assert s.max_message_size == 25 * 1024 * 1024
    assert s.notify_delay == 0
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
])
def test_bad_value_names_the_variable(tmp_path: Path, var: str, value: str, needle: str) -> None:
    # A value that cannot be used stops start-up with one sentence that names the variable.
    with pytest.raises(ConfigError) as err:
        load_settings({"WORKRATE_DATA_DIR": str(tmp_path), var: value})
    assert needle in str(err.value)
    assert str(err.value).endswith(".")


def test_generated_secret_key_is_stored_once_with_mode_0600(tmp_path: Path) -> None:
    # Without WORKRATE_SECRET_KEY, a key is generated once, kept in the data folder, readable by its owner only.
    first = load_settings({"WORKRATE_DATA_DIR": str(tmp_path)})
    second = load_settings({"WORKRATE_DATA_DIR": str(tmp_path)})
    assert len(first.secret_key) >= 40 and first.secret_key == second.secret_key
    mode = stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode)
    assert mode == 0o600


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
