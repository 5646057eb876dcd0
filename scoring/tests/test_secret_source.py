"""Secret lookup order, error messages without values, and the local secrets file."""

from __future__ import annotations

import json
import logging
import os
import stat
import traceback

import pytest

from amlbatch_scoring import secret_source
from amlbatch_scoring.secret_source import (
    InvalidSecretError,
    InvalidSecretsFileError,
    SecretNotFoundError,
    get_secret,
    locate_secret,
    secret_exists,
    store_local_secret,
)

ENVIRONMENT_VALUE = "value-from-environment-3f9c"
FILE_VALUE = "value-from-file-81ab"
OTHER_VALUE = "value-of-another-secret-77d2"


def write_secrets_file(path, entries) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries), encoding="utf-8")
    path.chmod(0o600)


def test_environment_variable_name():
    assert secret_source.environment_variable_name("model-signing-key") == "AMLBATCH_SECRET_MODEL_SIGNING_KEY"
    assert secret_source.environment_variable_name("db.password-2") == "AMLBATCH_SECRET_DB_PASSWORD_2"


def test_environment_wins_over_file(isolated_secrets, monkeypatch):
    write_secrets_file(isolated_secrets, {"api-key": FILE_VALUE})
    monkeypatch.setenv("AMLBATCH_SECRET_API_KEY", ENVIRONMENT_VALUE)

    assert get_secret("api-key") == ENVIRONMENT_VALUE
    assert str(locate_secret("api-key")) == "environment variable AMLBATCH_SECRET_API_KEY"


def test_file_used_without_environment(isolated_secrets):
    write_secrets_file(isolated_secrets, {"api-key": FILE_VALUE})

    assert get_secret("api-key") == FILE_VALUE
    assert str(locate_secret("api-key")) == f"local secrets file {isolated_secrets}"


def test_default_file_is_relative_to_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(secret_source.SECRETS_FILE_VARIABLE)
    monkeypatch.chdir(tmp_path)
    write_secrets_file(tmp_path / ".amlbatch" / "secrets.json", {"api-key": FILE_VALUE})

    assert get_secret("api-key") == FILE_VALUE
    assert secret_source.secrets_file_path() == tmp_path / ".amlbatch" / "secrets.json"


def test_missing_secret_names_every_place(isolated_secrets, monkeypatch):
    write_secrets_file(isolated_secrets, {"other-secret": OTHER_VALUE})
    monkeypatch.setenv("AMLBATCH_SECRET_UNRELATED", ENVIRONMENT_VALUE)

    with pytest.raises(SecretNotFoundError) as error:
        get_secret("api-key")

    message = str(error.value)
    assert "Secret 'api-key' not found" in message
    assert "AMLBATCH_KEY_VAULT_URL is not set" in message
    assert "environment variable AMLBATCH_SECRET_API_KEY (not set)" in message
    assert f"local secrets file {isolated_secrets} (no entry 'api-key')" in message
    assert len(error.value.searched) == 3
    assert OTHER_VALUE not in message
    assert ENVIRONMENT_VALUE not in message


def test_missing_secrets_file_reported(isolated_secrets):
    with pytest.raises(SecretNotFoundError) as error:
        get_secret("api-key")

    assert f"local secrets file {isolated_secrets} (file not found)" in str(error.value)


def test_secret_exists_reports_presence(isolated_secrets, monkeypatch):
    write_secrets_file(isolated_secrets, {"in-file": FILE_VALUE})
    monkeypatch.setenv("AMLBATCH_SECRET_IN_ENVIRONMENT", ENVIRONMENT_VALUE)

    assert secret_exists("in-file") is True
    assert secret_exists("in-environment") is True
    assert secret_exists("absent") is False
    assert locate_secret("absent") is None


def test_empty_environment_value_rejected(monkeypatch):
    monkeypatch.setenv("AMLBATCH_SECRET_API_KEY", "")

    with pytest.raises(InvalidSecretError, match="AMLBATCH_SECRET_API_KEY for secret 'api-key' is set but empty"):
        get_secret("api-key")


def test_empty_file_value_rejected(isolated_secrets):
    write_secrets_file(isolated_secrets, {"api-key": ""})

    with pytest.raises(InvalidSecretError, match="is empty"):
        get_secret("api-key")


def test_invalid_json_hides_content(isolated_secrets):
    isolated_secrets.parent.mkdir(parents=True)
    isolated_secrets.write_text('{"api-key": "' + FILE_VALUE + '",,}', encoding="utf-8")

    with pytest.raises(InvalidSecretsFileError, match="is not valid JSON") as error:
        get_secret("api-key")

    formatted = "".join(traceback.format_exception(error.value))
    assert str(isolated_secrets) in formatted
    assert FILE_VALUE not in formatted


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('["api-key"]', "must contain a JSON object"),
        ('{"api-key": 12345}', "Secret 'api-key' in local secrets file .* must be a JSON string"),
    ],
)
def test_malformed_file_rejected(isolated_secrets, content, expected):
    isolated_secrets.parent.mkdir(parents=True)
    isolated_secrets.write_text(content, encoding="utf-8")

    with pytest.raises(InvalidSecretsFileError, match=expected) as error:
        get_secret("api-key")

    assert "12345" not in str(error.value)


@pytest.mark.parametrize("name", ["", "has space", "-leading-dash", "slash/name", "x" * 128])
def test_invalid_name_rejected(name):
    with pytest.raises(ValueError, match="Invalid secret name"):
        get_secret(name)


def test_store_creates_private_file(isolated_secrets):
    path = store_local_secret("api-key", FILE_VALUE)

    assert path == isolated_secrets
    assert stat.S_IMODE(isolated_secrets.stat().st_mode) == 0o600
    assert stat.S_IMODE(isolated_secrets.parent.stat().st_mode) == 0o700
    assert json.loads(isolated_secrets.read_text(encoding="utf-8")) == {"api-key": FILE_VALUE}
    assert [entry.name for entry in isolated_secrets.parent.iterdir()] == ["secrets.json"]


def test_store_keeps_other_entries(isolated_secrets):
    write_secrets_file(isolated_secrets, {"other-secret": OTHER_VALUE})

    store_local_secret("api-key", FILE_VALUE)

    assert json.loads(isolated_secrets.read_text(encoding="utf-8")) == {"other-secret": OTHER_VALUE, "api-key": FILE_VALUE}
    assert stat.S_IMODE(isolated_secrets.stat().st_mode) == 0o600


def test_store_refuses_overwrite(isolated_secrets):
    store_local_secret("api-key", FILE_VALUE)

    with pytest.raises(InvalidSecretError, match="already exists") as error:
        store_local_secret("api-key", OTHER_VALUE)

    assert FILE_VALUE not in str(error.value)
    assert OTHER_VALUE not in str(error.value)
    store_local_secret("api-key", OTHER_VALUE, overwrite=True)
    assert get_secret("api-key") == OTHER_VALUE


def test_readable_file_warns(isolated_secrets, caplog):
    write_secrets_file(isolated_secrets, {"api-key": FILE_VALUE})
    os.chmod(isolated_secrets, 0o644)

    with caplog.at_level(logging.WARNING):
        assert get_secret("api-key") == FILE_VALUE

    assert "accessible to other users" in caplog.text
    assert FILE_VALUE not in caplog.text


def test_lookup_never_logs_value(isolated_secrets, monkeypatch, caplog):
    write_secrets_file(isolated_secrets, {"api-key": FILE_VALUE})
    monkeypatch.setenv("AMLBATCH_SECRET_OTHER", ENVIRONMENT_VALUE)

    with caplog.at_level(logging.DEBUG):
        get_secret("api-key")
        get_secret("other")

    assert "api-key" in caplog.text
    assert FILE_VALUE not in caplog.text
    assert ENVIRONMENT_VALUE not in caplog.text


def test_check_command_prints_location_only(isolated_secrets, capsys):
    write_secrets_file(isolated_secrets, {"api-key": FILE_VALUE})

    assert secret_source.main(["api-key"]) == 0
    assert secret_source.main(["absent"]) == 1

    output = capsys.readouterr()
    assert f"Secret 'api-key' found in local secrets file {isolated_secrets}." in output.out
    assert "Secret 'absent' not found" in output.err
    assert FILE_VALUE not in output.out + output.err
