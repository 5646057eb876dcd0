"""Secret lookup for the entry script and the training command.

Every secret goes through ``get_secret``, which searches these sources in order:

1. Azure Key Vault, when ``AMLBATCH_KEY_VAULT_URL`` is set. This version cannot read Key
   Vault yet, so a configured vault raises ``KeyVaultNotAvailableError``.
2. The environment variable ``AMLBATCH_SECRET_<NAME>``, where ``<NAME>`` is the secret name
   upper-cased with '-' and '.' replaced by '_'.
3. The local secrets file, a JSON object that maps names to values. Its path is
   ``AMLBATCH_SECRETS_FILE``, or ``.amlbatch/secrets.json`` relative to the current directory.

Secret values never appear in logs or error messages. Only names, variable names and file
paths do.
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
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

KEY_VAULT_URL_VARIABLE = "AMLBATCH_KEY_VAULT_URL"
SECRETS_FILE_VARIABLE = "AMLBATCH_SECRETS_FILE"
SECRET_VARIABLE_PREFIX = "AMLBATCH_SECRET_"
DEFAULT_SECRETS_FILE = Path(".amlbatch") / "secrets.json"

# Key Vault secret names allow letters, digits and '-'. The '.' and '_' are accepted too
# because the environment-variable form maps them to '_' anyway.
_SECRET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,126}$")


class SecretError(Exception):
    """Base class of the errors raised by this module. Messages never contain secret values."""


class SecretNotFoundError(SecretError, LookupError):
    """Raised by ``get_secret`` when no source contains the secret.

    ``searched`` lists each place that was searched and why it did not match.
    """

    def __init__(self, name: str, searched: list[str]) -> None:
        self.secret_name = name
        self.searched = searched
        places = "; ".join(searched)
        super().__init__(
            f"Secret '{name}' not found. Searched: {places}. "
            f"Set {environment_variable_name(name)} or add '{name}' to the local secrets file."
        )


class KeyVaultNotAvailableError(SecretError):
    """Raised when ``AMLBATCH_KEY_VAULT_URL`` is set, because this version cannot read Key Vault."""

    def __init__(self, vault_url: str) -> None:
        self.vault_url = vault_url
        super().__init__(
            f"Key Vault secret reading is not available in this version "
            f"({KEY_VAULT_URL_VARIABLE}={vault_url}). Unset {KEY_VAULT_URL_VARIABLE} to read "
            f"secrets from the environment ({SECRET_VARIABLE_PREFIX}<NAME>) or the local "
            f"secrets file. A later version reads them from Key Vault with the job's identity."
        )


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
    """Return the value of secret ``name`` from the first source that contains it.

    Raises KeyVaultNotAvailableError when a Key Vault is configured, InvalidSecretError or
    InvalidSecretsFileError when a source contains an unusable value, and
    SecretNotFoundError when no source contains the secret.
    """
    found = _find_secret(name)
    if found is None:
        raise SecretNotFoundError(name, _describe_search(name))

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

    # Key Vault comes first, so a configured vault is never bypassed silently.
    vault_url = os.environ.get(KEY_VAULT_URL_VARIABLE)
    if vault_url:
        raise KeyVaultNotAvailableError(vault_url)

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
        print(f"error: {SecretNotFoundError(arguments.name, _describe_search(arguments.name))}", file=sys.stderr)
        return 1
    print(f"Secret '{arguments.name}' found in {location}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
