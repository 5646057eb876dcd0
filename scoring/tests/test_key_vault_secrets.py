"""Reading secrets from Azure Key Vault: the real azure-keyvault-secrets client against the Key
Vault test double, authenticated by the managed identity of a simulated Azure ML compute."""

from __future__ import annotations

import json
import logging
import secrets
import socket
import traceback

import pytest

from amlbatch_scoring import secret_source
from amlbatch_scoring.secret_source import (
    KeyVaultAuthenticationError,
    KeyVaultConfigurationError,
    KeyVaultPermissionError,
    KeyVaultSecretDisabledError,
    KeyVaultSecretNotFoundError,
    KeyVaultUnreachableError,
    SecretNotFoundError,
    get_secret,
    locate_secret,
    secret_exists,
)

VAULT_VALUE = "value-in-key-vault-6e21"
DISABLED_VALUE = "value-of-disabled-secret-0d4c"
ENVIRONMENT_VALUE = "value-from-environment-9b37"
FILE_VALUE = "value-from-file-c5a0"


def unique_name(label: str) -> str:
    """Return a secret name no other test uses, because the vault lives for the whole session."""
    return f"{label}-{secrets.token_hex(4)}"


def formatted(error: BaseException) -> str:
    """Return the error with its whole chain of causes, as a traceback would show it."""
    return "".join(traceback.format_exception(error))


def closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_reads_secret_with_managed_identity(key_vault, caplog):
    name = unique_name("api-key")
    key_vault.set_secret(name, VAULT_VALUE)

    with caplog.at_level(logging.DEBUG):
        assert get_secret(name) == VAULT_VALUE

    assert f"Read secret {name} from Key Vault {key_vault.double.vault_url}" in caplog.text
    assert VAULT_VALUE not in caplog.text


def test_locate_names_the_vault(key_vault):
    name = unique_name("located")
    key_vault.set_secret(name, VAULT_VALUE)

    assert str(locate_secret(name)) == f"Key Vault {key_vault.double.vault_url}"
    assert secret_exists(name) is True


def test_app_service_identity_reads_secret(key_vault, monkeypatch):
    name = unique_name("app-service")
    key_vault.set_secret(name, VAULT_VALUE)
    monkeypatch.delenv("MSI_ENDPOINT")
    monkeypatch.delenv("MSI_SECRET")
    monkeypatch.setenv("IDENTITY_ENDPOINT", key_vault.double.managed_identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", key_vault.double.managed_identity_header)

    assert get_secret(name) == VAULT_VALUE


def test_vault_is_only_source(key_vault, isolated_secrets, monkeypatch):
    name = unique_name("local-only")
    monkeypatch.setenv(secret_source.environment_variable_name(name), ENVIRONMENT_VALUE)
    isolated_secrets.parent.mkdir(parents=True)
    isolated_secrets.write_text(json.dumps({name: FILE_VALUE}), encoding="utf-8")

    with pytest.raises(KeyVaultSecretNotFoundError) as error:
        get_secret(name)

    message = str(error.value)
    assert f"Secret '{name}' not found in Key Vault {key_vault.double.vault_url}" in message
    assert "not searched while a vault is configured" in message
    assert isinstance(error.value, SecretNotFoundError)
    assert ENVIRONMENT_VALUE not in formatted(error.value)
    assert FILE_VALUE not in formatted(error.value)
    assert secret_exists(name) is False


def test_check_command_reports_missing(key_vault, capsys):
    name = unique_name("absent")

    assert secret_source.main([name]) == 1

    assert f"Secret '{name}' not found in Key Vault {key_vault.double.vault_url}" in capsys.readouterr().err


def test_disabled_secret_raises_disabled(key_vault, caplog):
    name = unique_name("disabled")
    key_vault.set_secret(name, DISABLED_VALUE, enabled=False)

    with caplog.at_level(logging.DEBUG), pytest.raises(KeyVaultSecretDisabledError) as error:
        get_secret(name)

    message = str(error.value)
    assert f"Secret '{name}' in Key Vault {key_vault.double.vault_url} is disabled" in message
    assert f"set-attributes --enabled true --id {key_vault.double.vault_url}/secrets/{name}" in message
    assert (error.value.secret_name, error.value.vault_url) == (name, key_vault.double.vault_url)
    assert DISABLED_VALUE not in formatted(error.value)
    assert DISABLED_VALUE not in caplog.text


def test_disabled_secret_blocks_existence_check(key_vault):
    name = unique_name("disabled-check")
    key_vault.set_secret(name, DISABLED_VALUE, enabled=False)

    with pytest.raises(KeyVaultSecretDisabledError):
        secret_exists(name)


def test_identity_without_access_raises_permission(key_vault, monkeypatch):
    name = unique_name("forbidden")
    key_vault.set_secret(name, VAULT_VALUE)
    monkeypatch.setenv("AZURE_CLIENT_ID", key_vault.double.no_access_client_id)

    with pytest.raises(KeyVaultPermissionError) as error:
        get_secret(name)

    message = str(error.value)
    assert f"does not let the identity with client id {key_vault.double.no_access_client_id}" in message
    assert f"read secret '{name}'" in message
    assert "Key Vault Secrets User role" in message
    assert VAULT_VALUE not in formatted(error.value)


def test_unknown_identity_raises_authentication(key_vault, monkeypatch):
    name = unique_name("no-token")
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-4000-8000-00000000ffff")

    with pytest.raises(KeyVaultAuthenticationError) as error:
        get_secret(name)

    message = str(error.value)
    assert f"No token for Key Vault {key_vault.double.vault_url} could be obtained to read secret '{name}'" in message
    assert "Identity not found" in message
    assert "AZURE_CLIENT_ID" in message


def test_untrusted_certificate_names_ca_setting(key_vault, monkeypatch):
    monkeypatch.delenv(secret_source.KEY_VAULT_CA_BUNDLE_VARIABLE)
    monkeypatch.setattr(secret_source, "KEY_VAULT_RETRIES", 0)

    with pytest.raises(KeyVaultUnreachableError) as error:
        get_secret(unique_name("untrusted"))

    assert "CERTIFICATE_VERIFY_FAILED" in str(error.value)
    assert f"set {secret_source.KEY_VAULT_CA_BUNDLE_VARIABLE} to a PEM file" in str(error.value)


def test_closed_port_raises_unreachable(key_vault, monkeypatch):
    vault_url = f"https://127.0.0.1:{closed_loopback_port()}"
    monkeypatch.setenv(secret_source.KEY_VAULT_URL_VARIABLE, vault_url)
    monkeypatch.setattr(secret_source, "KEY_VAULT_RETRIES", 0)
    name = unique_name("unreachable")

    with pytest.raises(KeyVaultUnreachableError) as error:
        get_secret(name)

    assert f"Could not reach Key Vault {vault_url} to read secret '{name}'" in str(error.value)
    assert "Connection refused" in str(error.value)


def test_challenge_check_rejects_local_vault(key_vault, monkeypatch):
    monkeypatch.delenv(secret_source.KEY_VAULT_VERIFY_CHALLENGE_RESOURCE_VARIABLE)

    with pytest.raises(KeyVaultConfigurationError) as error:
        get_secret(unique_name("challenge"))

    assert f"{secret_source.KEY_VAULT_VERIFY_CHALLENGE_RESOURCE_VARIABLE}=false" in str(error.value)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AMLBATCH_KEY_VAULT_URL", "http://127.0.0.1:8443", "is invalid: use the vault's https URL"),
        ("AMLBATCH_KEY_VAULT_URL", "vault.azure.net", "is invalid: use the vault's https URL"),
        ("AMLBATCH_KEY_VAULT_CA_BUNDLE", "/nonexistent/ca.pem", "/nonexistent/ca.pem is not a file"),
        ("AMLBATCH_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE", "no", "=no is invalid: use true"),
    ],
)
def test_invalid_setting_rejected(key_vault, monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)

    with pytest.raises(KeyVaultConfigurationError, match=expected):
        get_secret("api-key")


def test_entry_script_key_from_vault(key_vault, init_score, score_module, trained, monkeypatch):
    name = unique_name("model-signing-key")
    key_vault.set_secret(name, trained.signing_key)
    # A wrong key in the environment proves that the vault, not the variable, supplied the key.
    monkeypatch.setenv(secret_source.environment_variable_name(name), "0" * 64)

    init_score("--input_root", str(trained.sample_dir), "--model_dir", str(trained.model_dir), "--signing_key_secret", name)

    rows = [json.loads(row) for row in score_module.run(sorted(str(path) for path in trained.sample_dir.rglob("*.png"))[:3])]
    assert [row["label"] is not None for row in rows] == [True, True, True]
