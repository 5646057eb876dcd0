"""Secret lookup for the entry script and the training command.

Every secret goes through ``get_secret``. Where it looks depends on ``AMLBATCH_KEY_VAULT_URL``:

- When it is set, the secret is read from that Azure Key Vault, and only from there, so a
  configured vault is never bypassed by a stale local copy. The job authenticates with
  ``azure.identity.DefaultAzureCredential``, which on Azure ML compute uses the compute's managed
  identity; ``AZURE_CLIENT_ID`` selects a user-assigned one.
- Otherwise these local sources are searched in order:

  1. The environment variable ``AMLBATCH_SECRET_<NAME>``, where ``<NAME>`` is the secret name
     upper-cased with '-' and '.' replaced by '_'.
  2. The local secrets file, a JSON object that maps names to values. Its path is
     ``AMLBATCH_SECRETS_FILE``, or ``.amlbatch/secrets.json`` relative to the current directory.

Two optional settings serve a local vault test double. ``AMLBATCH_KEY_VAULT_CA_BUNDLE`` names a
PEM file of certificates to trust for the vault, for a self-signed certificate.
``AMLBATCH_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE=false`` skips the SDK's check that the vault's
authentication challenge names the vault's own domain. Leave that check on for real vaults.

Secret values never appear in logs or error messages. Only names, variable names, vault URLs and
file paths do.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import stat
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

KEY_VAULT_URL_VARIABLE = "AMLBATCH_KEY_VAULT_URL"
KEY_VAULT_CA_BUNDLE_VARIABLE = "AMLBATCH_KEY_VAULT_CA_BUNDLE"
# Same name and meaning as the worker's setting, so one environment configures both sides.
KEY_VAULT_VERIFY_CHALLENGE_RESOURCE_VARIABLE = "AMLBATCH_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE"
SECRETS_FILE_VARIABLE = "AMLBATCH_SECRETS_FILE"
SECRET_VARIABLE_PREFIX = "AMLBATCH_SECRET_"
DEFAULT_SECRETS_FILE = Path(".amlbatch") / "secrets.json"

# Key Vault client limits. A vault that drops packets fails after about (1 + retries) connection
# timeouts plus the SDK's backoff, instead of waiting for azure-core's default of 300 s per attempt.
KEY_VAULT_CONNECTION_TIMEOUT_SECONDS = 10
KEY_VAULT_READ_TIMEOUT_SECONDS = 30
KEY_VAULT_RETRIES = 3

# Key Vault secret names allow letters, digits and '-'. The '.' and '_' are accepted too
# because the environment-variable form maps them to '_' anyway.
_SECRET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,126}$")


class SecretError(Exception):
    """Base class of the errors raised by this module. Messages never contain secret values."""


class SecretNotFoundError(SecretError, LookupError):
    """Raised by ``get_secret`` when no source contains the secret.

    ``searched`` lists each place that was searched and why it did not match.
    """

    def __init__(self, name: str, searched: list[str], message: str | None = None) -> None:
        self.secret_name = name
        self.searched = searched
        places = "; ".join(searched)
        super().__init__(
            message
            or f"Secret '{name}' not found. Searched: {places}. "
            f"Set {environment_variable_name(name)} or add '{name}' to the local secrets file."
        )


class KeyVaultError(SecretError):
    """Base class of the errors that reading a secret from Key Vault raises.

    ``secret_name`` and ``vault_url`` name what was read, and the message names the next step.
    """

    def __init__(self, message: str, *, secret_name: str, vault_url: str) -> None:
        self.secret_name = secret_name
        self.vault_url = vault_url
        super().__init__(message)


class KeyVaultSecretNotFoundError(SecretNotFoundError):
    """Raised by ``get_secret`` when the configured Key Vault has no secret of that name."""

    def __init__(self, name: str, vault_url: str) -> None:
        self.vault_url = vault_url
        super().__init__(
            name,
            [f"Key Vault {vault_url} (no secret '{name}')"],
            f"Secret '{name}' not found in Key Vault {vault_url}. Add it to the vault, or unset "
            f"{KEY_VAULT_URL_VARIABLE} to read {environment_variable_name(name)} or the local secrets "
            f"file, which are not searched while a vault is configured.",
        )


class KeyVaultSecretDisabledError(KeyVaultError):
    """Raised when the Key Vault secret exists but is disabled, so Key Vault refuses to return it."""


class KeyVaultPermissionError(KeyVaultError):
    """Raised when the job's identity authenticated but may not get secrets from the vault."""


class KeyVaultAuthenticationError(KeyVaultError):
    """Raised when no token for Key Vault could be obtained, or the vault did not accept it."""


class KeyVaultUnreachableError(KeyVaultError):
    """Raised when the vault could not be reached: DNS, connection, TLS or timeout failures."""


class KeyVaultRequestError(KeyVaultError):
    """Raised for a Key Vault error response that no other KeyVaultError class covers."""


class KeyVaultConfigurationError(SecretError):
    """Raised when a Key Vault setting is invalid, such as a non-https URL or a missing CA bundle."""


class InvalidSecretError(SecretError):
    """Raised when a source contains the secret in an unusable form, such as an empty value."""


class InvalidSecretsFileError(SecretError):
    """Raised when the local secrets file is not a JSON object of string values."""


@dataclass(frozen=True)
class SecretLocation:
    """Source in which a secret was found, described without its value."""

    source: str
    detail: str

    def __str__(self) -> str:
        return f"{self.source} {self.detail}"


def environment_variable_name(name: str) -> str:
    """Return the name of the environment variable for secret ``name``."""
    validate_secret_name(name)
    return SECRET_VARIABLE_PREFIX + name.upper().replace("-", "_").replace(".", "_")


def secrets_file_path() -> Path:
    """Return the absolute path of the local secrets file, which may not exist."""
    configured = os.environ.get(SECRETS_FILE_VARIABLE)
    path = Path(configured) if configured else DEFAULT_SECRETS_FILE
    return path.absolute()


def validate_secret_name(name: str) -> None:
    """Raise ValueError unless ``name`` is a valid secret name."""
    if not isinstance(name, str) or not _SECRET_NAME_PATTERN.match(name):
        raise ValueError(
            f"Invalid secret name {name!r}: use 1 to 127 letters, digits, '-', '.' or '_', "
            f"starting with a letter or digit."
        )


def get_secret(name: str) -> str:
    """Return the value of secret ``name`` from the configured vault, else from the first local source.

    Raises SecretNotFoundError (KeyVaultSecretNotFoundError for a configured vault) when no
    source contains the secret, InvalidSecretError or InvalidSecretsFileError when a source
    contains an unusable value, KeyVaultConfigurationError for invalid Key Vault settings, and
    another KeyVaultError subclass when the vault cannot be read.
    """
    found = _find_secret(name)
    if found is None:
        raise _not_found_error(name)

    location, value = found
    logger.debug("Read secret %s from %s", name, location)
    return value


def secret_exists(name: str) -> bool:
    """Return whether some source contains secret ``name``, without returning its value."""
    return locate_secret(name) is not None


def locate_secret(name: str) -> SecretLocation | None:
    """Return the source that contains secret ``name``, or None when no source does.

    The value is read to check that it is usable, but it is not returned.
    """
    found = _find_secret(name)
    return None if found is None else found[0]


def store_local_secret(name: str, value: str, *, overwrite: bool = False) -> Path:
    """Write secret ``name`` into the local secrets file and return the file's path.

    Other entries in the file are kept. The file is replaced atomically and gets mode 0600.
    A new parent folder gets mode 0700. Raises InvalidSecretError when the name already has
    an entry and ``overwrite`` is false.
    """
    validate_secret_name(name)
    if not isinstance(value, str) or value == "":
        raise InvalidSecretError(f"Cannot store secret '{name}': the value must be a non-empty string.")

    path = secrets_file_path()
    entries = _read_secrets_file(path) or {}
    if name in entries and not overwrite:
        raise InvalidSecretError(
            f"Secret '{name}' already exists in {path}. Remove the entry first to replace it."
        )
    entries[name] = value

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary_name = tempfile.mkstemp(prefix=".secrets-", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file with mode 0600, so the value is never readable by others.
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(entries, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(temporary_name, path)
    except BaseException:
        Path(temporary_name).unlink(missing_ok=True)
        raise

    logger.info("Stored secret %s in local secrets file %s", name, path)
    return path


def _find_secret(name: str) -> tuple[SecretLocation, str] | None:
    validate_secret_name(name)

    # A configured vault is the only source, so it is never bypassed silently.
    settings = _key_vault_settings()
    if settings is not None:
        value = _read_key_vault_secret(name, settings)
        if value is None:
            return None
        return SecretLocation("Key Vault", settings.vault_url), value

    variable = environment_variable_name(name)
    if variable in os.environ:
        value = os.environ[variable]
        if value == "":
            raise InvalidSecretError(
                f"Environment variable {variable} for secret '{name}' is set but empty. "
                f"Set it to the secret value or unset it."
            )
        return SecretLocation("environment variable", variable), value

    path = secrets_file_path()
    entries = _read_secrets_file(path)
    if entries is not None and name in entries:
        value = entries[name]
        if value == "":
            raise InvalidSecretError(
                f"Secret '{name}' in {path} is empty. Store a non-empty value or remove the entry."
            )
        return SecretLocation("local secrets file", str(path)), value

    return None


@dataclass(frozen=True)
class KeyVaultSettings:
    """Key Vault settings of this process, read from the environment."""

    vault_url: str
    ca_bundle: Path | None
    verify_challenge_resource: bool


def _key_vault_settings() -> KeyVaultSettings | None:
    """Return the Key Vault settings, or None when no vault is configured."""
    vault_url = os.environ.get(KEY_VAULT_URL_VARIABLE)
    if not vault_url:
        return None

    parsed = urllib.parse.urlsplit(vault_url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise KeyVaultConfigurationError(
            f"{KEY_VAULT_URL_VARIABLE}={vault_url} is invalid: use the vault's https URL, such as "
            f"https://<vault-name>.vault.azure.net."
        )

    ca_bundle = None
    configured_bundle = os.environ.get(KEY_VAULT_CA_BUNDLE_VARIABLE)
    if configured_bundle:
        ca_bundle = Path(configured_bundle)
        if not ca_bundle.is_file():
            raise KeyVaultConfigurationError(
                f"{KEY_VAULT_CA_BUNDLE_VARIABLE}={configured_bundle} is not a file. Point it to a PEM file "
                f"with the certificates to trust for the vault, or unset it to trust the system's CAs."
            )

    verify_setting = os.environ.get(KEY_VAULT_VERIFY_CHALLENGE_RESOURCE_VARIABLE, "true")
    if verify_setting.strip().lower() not in ("true", "false"):
        raise KeyVaultConfigurationError(
            f"{KEY_VAULT_VERIFY_CHALLENGE_RESOURCE_VARIABLE}={verify_setting} is invalid: use true (the default) "
            f"or false, which only a vault test double outside vault.azure.net needs."
        )
    return KeyVaultSettings(vault_url, ca_bundle, verify_setting.strip().lower() == "true")


def _read_key_vault_secret(name: str, settings: KeyVaultSettings) -> str | None:
    """Return the value of secret ``name`` in the configured vault, or None when it has none.

    Every other failure raises a KeyVaultError subclass, or KeyVaultConfigurationError when
    the challenge check rejects a vault outside vault.azure.net.
    """
    # Imported here, so that the local sources work where the Azure packages are not installed.
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    vault_url = settings.vault_url
    options: dict[str, Any] = {
        "connection_timeout": KEY_VAULT_CONNECTION_TIMEOUT_SECONDS,
        "read_timeout": KEY_VAULT_READ_TIMEOUT_SECONDS,
        "retry_total": KEY_VAULT_RETRIES,
    }
    if settings.ca_bundle is not None:
        options["connection_verify"] = str(settings.ca_bundle)
    if not settings.verify_challenge_resource:
        logger.warning(
            "Key Vault challenge resource verification is off (%s=false). Use this only with a local test vault",
            KEY_VAULT_VERIFY_CHALLENGE_RESOURCE_VARIABLE,
        )
        options["verify_challenge_resource"] = False

    logger.debug("Reading secret %s from Key Vault %s", name, vault_url)
    credential = DefaultAzureCredential()
    try:
        with SecretClient(vault_url, credential, **options) as client:
            secret = client.get_secret(name)
    except ResourceNotFoundError as error:
        if _error_code(error) == "SecretNotFound":
            return None
        raise _request_error(name, vault_url, error) from error
    except ClientAuthenticationError as error:
        raise _authentication_error(name, vault_url, error) from error
    except HttpResponseError as error:
        if error.status_code == 403 and _inner_error_code(error) == "SecretDisabled":
            raise KeyVaultSecretDisabledError(
                f"Secret '{name}' in Key Vault {vault_url} is disabled, so Key Vault does not return its "
                f"value. Enable it with `az keyvault secret set-attributes --enabled true --id "
                f"{vault_url.rstrip('/')}/secrets/{name}`, or configure the job with another secret.",
                secret_name=name,
                vault_url=vault_url,
            ) from error
        if error.status_code == 403:
            raise KeyVaultPermissionError(
                f"Key Vault {vault_url} does not let {_identity_description()} read secret '{name}': "
                f"{_service_message(error)} Grant the identity the Key Vault Secrets User role on the vault, or an "
                f"access policy with the secret get permission.",
                secret_name=name,
                vault_url=vault_url,
            ) from error
        raise _request_error(name, vault_url, error) from error
    except (ServiceRequestError, ServiceResponseError) as error:
        raise _unreachable_error(name, vault_url, error) from error
    except ValueError as error:
        # The SDK raises ValueError when the challenge names another domain than the vault's.
        if "challenge resource" not in str(error):
            raise
        raise KeyVaultConfigurationError(
            f"Key Vault {vault_url} is outside the domain its authentication challenge names, so the "
            f"SDK refused to send it a token. Use the vault's *.vault.azure.net URL. Only for a vault "
            f"test double on this machine, set {KEY_VAULT_VERIFY_CHALLENGE_RESOURCE_VARIABLE}=false."
        ) from error
    finally:
        credential.close()

    if not secret.value:
        raise InvalidSecretError(
            f"Secret '{name}' in Key Vault {vault_url} is empty. Store a non-empty value in the vault."
        )
    return secret.value


def _identity_description() -> str:
    client_id = os.environ.get("AZURE_CLIENT_ID")
    if client_id:
        return f"the identity with client id {client_id} (AZURE_CLIENT_ID)"
    return "the job's default identity (on Azure ML, the compute's system-assigned managed identity)"


def _service_message(error: Any) -> str:
    """Return the error's message as one sentence: Key Vault's own message when the body had one."""
    text = getattr(getattr(error, "error", None), "message", None) or getattr(error, "message", None) or str(error)
    text = " ".join(str(text).split())
    return text if text.endswith(".") else text + "."


def _error_code(error: Any) -> str | None:
    """Return Key Vault's ``error.code`` of an azure-core HttpResponseError, when the body had one."""
    return getattr(getattr(error, "error", None), "code", None)


def _inner_error_code(error: Any) -> str | None:
    """Return Key Vault's ``error.innererror.code``, which distinguishes a disabled secret from a denied one."""
    inner = getattr(getattr(error, "error", None), "innererror", None) or {}
    return inner.get("code") if isinstance(inner, dict) else None


def _authentication_error(name: str, vault_url: str, error: Any) -> KeyVaultAuthenticationError:
    response = getattr(error, "response", None)
    if response is not None and response.status_code == 401:
        message = (
            f"Key Vault {vault_url} rejected the token of {_identity_description()} when reading secret "
            f"'{name}': {_service_message(error)} Check that the identity belongs to the vault's Microsoft Entra tenant."
        )
    else:
        message = (
            f"No token for Key Vault {vault_url} could be obtained to read secret '{name}': {_service_message(error)} "
            f"On Azure ML, assign a managed identity to the compute, and set AZURE_CLIENT_ID to the client "
            f"id of a user-assigned one. Elsewhere, sign in with `az login` or set the AZURE_* variables "
            f"of a service principal."
        )
    return KeyVaultAuthenticationError(message, secret_name=name, vault_url=vault_url)


def _unreachable_error(name: str, vault_url: str, error: Exception) -> KeyVaultUnreachableError:
    reason = str(error)
    message = (
        f"Could not reach Key Vault {vault_url} to read secret '{name}': {reason}. Check the URL, and "
        f"that this machine can reach the vault through its firewall, private endpoint and DNS."
    )
    if "CERTIFICATE_VERIFY_FAILED" in reason or "SSLError" in reason:
        message += (
            f" The vault's TLS certificate is not trusted: for a vault with a self-signed certificate, set "
            f"{KEY_VAULT_CA_BUNDLE_VARIABLE} to a PEM file of its CA certificate."
        )
    return KeyVaultUnreachableError(message, secret_name=name, vault_url=vault_url)


def _request_error(name: str, vault_url: str, error: Any) -> KeyVaultRequestError:
    code = _error_code(error)
    return KeyVaultRequestError(
        f"Key Vault {vault_url} failed the request for secret '{name}' with HTTP {error.status_code}"
        f"{f' ({code})' if code else ''}: {_service_message(error)} The request was tried {1 + KEY_VAULT_RETRIES} "
        f"times; check the vault's state in the Azure portal and run the job again.",
        secret_name=name,
        vault_url=vault_url,
    )


def _not_found_error(name: str) -> SecretNotFoundError:
    vault_url = os.environ.get(KEY_VAULT_URL_VARIABLE)
    if vault_url:
        return KeyVaultSecretNotFoundError(name, vault_url)
    return SecretNotFoundError(name, _describe_search(name))


def _describe_search(name: str) -> list[str]:
    path = secrets_file_path()
    if path.is_file():
        file_state = f"no entry '{name}'"
    else:
        file_state = "file not found"
    return [
        f"Key Vault (not configured: {KEY_VAULT_URL_VARIABLE} is not set)",
        f"environment variable {environment_variable_name(name)} (not set)",
        f"local secrets file {path} ({file_state})",
    ]


def _read_secrets_file(path: Path) -> dict[str, str] | None:
    """Return the entries of the secrets file at ``path``, or None when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise InvalidSecretsFileError(
            f"Cannot read local secrets file {path}: {error.strerror}. Check its permissions."
        ) from error

    _warn_if_readable_by_others(path)

    # The decode error keeps the whole document, which may contain secret values, so it is
    # not chained into the traceback.
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidSecretsFileError(
            f"Local secrets file {path} is not valid JSON ({error.msg} at line {error.lineno}, "
            f"column {error.colno}). Fix it or delete it and store the secrets again."
        ) from None

    if not isinstance(entries, dict):
        raise InvalidSecretsFileError(
            f"Local secrets file {path} must contain a JSON object that maps secret names to "
            f"string values, not a JSON {type(entries).__name__}."
        )
    for key, value in entries.items():
        if not isinstance(value, str):
            raise InvalidSecretsFileError(
                f"Secret '{key}' in local secrets file {path} must be a JSON string, "
                f"not a JSON {type(value).__name__}."
            )
    return entries


def _warn_if_readable_by_others(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "Local secrets file %s has mode %o and is accessible to other users. Run chmod 600 on it.",
            path,
            stat.S_IMODE(mode),
        )


def main(argv: list[str] | None = None) -> int:
    """Check whether a secret exists and print where, never its value. Return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m amlbatch_scoring.secret_source",
        description="Check that a secret exists in one of the amlbatch secret sources without printing its value.",
    )
    parser.add_argument("name", help="secret name, for example model-signing-key")
    arguments = parser.parse_args(argv)

    try:
        location = locate_secret(arguments.name)
    except (SecretError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if location is None:
        print(f"error: {_not_found_error(arguments.name)}", file=sys.stderr)
        return 1
    print(f"Secret '{arguments.name}' found in {location}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
