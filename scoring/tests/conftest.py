"""Shared fixtures: an isolated secret environment, one trained model for the session, and a
Key Vault test double with the managed identity of a simulated Azure ML compute."""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from amlbatch_scoring import secret_source
from amlbatch_scoring.train import TrainingResult, train


class TrainedModel(NamedTuple):
    model_dir: Path
    sample_dir: Path
    signing_key: str
    result: TrainingResult


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    root = tmp_path_factory.mktemp("trained")
    signing_key = secrets.token_hex(32)
    result = train(root / "model", root / "samples", signing_key)
    return TrainedModel(root / "model", root / "samples", signing_key, result)


@pytest.fixture(autouse=True)
def isolated_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Clear every amlbatch secret variable and point the secrets file into tmp_path."""
    for variable in list(os.environ):
        if variable.startswith(secret_source.SECRET_VARIABLE_PREFIX):
            monkeypatch.delenv(variable)
    for variable in (
        secret_source.KEY_VAULT_URL_VARIABLE,
        secret_source.KEY_VAULT_CA_BUNDLE_VARIABLE,
        secret_source.KEY_VAULT_VERIFY_CHALLENGE_RESOURCE_VARIABLE,
    ):
        monkeypatch.delenv(variable, raising=False)
    secrets_file = tmp_path / "secrets" / "secrets.json"
    monkeypatch.setenv(secret_source.SECRETS_FILE_VARIABLE, str(secrets_file))
    return secrets_file


@pytest.fixture
def score_module(monkeypatch: pytest.MonkeyPatch):
    """Return the entry script module, with its init() state cleared after the test."""
    import score

    monkeypatch.setattr(score, "_state", None)
    return score


@pytest.fixture
def init_score(monkeypatch: pytest.MonkeyPatch, score_module, trained: TrainedModel):
    """Return a function that calls score.init() with the given arguments in sys.argv.

    The signing key is set in the environment, and the arguments are followed by flags of
    the kind that the Azure ML runtime adds, which init() must ignore.
    """
    monkeypatch.setenv("AMLBATCH_SECRET_MODEL_SIGNING_KEY", trained.signing_key)

    def call_init(*arguments: str) -> None:
        argv = ["score.py", *arguments, "--error_threshold", "-1", "--logging_level", "INFO"]
        monkeypatch.setattr(sys, "argv", argv)
        score_module.init()

    return call_init


PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY_VAULT_DOUBLE_PROGRAM = PROJECT_ROOT / "dist" / "test" / "support" / "key-vault-double" / "main.js"
KEY_VAULT_DOUBLE_SOURCES = PROJECT_ROOT / "test" / "support" / "key-vault-double"
KEY_VAULT_DOUBLE_START_TIMEOUT_SECONDS = 30

# Variables that make azure-identity pick a credential other than the simulated Azure ML
# managed identity, or trust other CAs, so the Key Vault tests remove them.
FOREIGN_IDENTITY_VARIABLES = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_TOKEN_CREDENTIALS",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


class KeyVaultDouble(NamedTuple):
    """Coordinates of the Key Vault test double (test/support/key-vault-double): no secrets."""

    vault_url: str
    ca_cert_path: str
    managed_identity_endpoint: str
    managed_identity_header: str
    reader_client_id: str
    administrator_client_id: str
    no_access_client_id: str


def _key_vault_double_from_environment() -> KeyVaultDouble | None:
    """Return the double that Jest's global setup published in AMLBATCH_TEST_*, if any."""
    if not os.environ.get("AMLBATCH_TEST_KEY_VAULT_URL"):
        return None
    return KeyVaultDouble(
        os.environ["AMLBATCH_TEST_KEY_VAULT_URL"],
        os.environ["AMLBATCH_TEST_KEY_VAULT_CA_FILE"],
        os.environ["AMLBATCH_TEST_MSI_ENDPOINT"],
        os.environ["AMLBATCH_TEST_MSI_SECRET"],
        os.environ["AMLBATCH_TEST_KEY_VAULT_READER_CLIENT_ID"],
        os.environ["AMLBATCH_TEST_KEY_VAULT_ADMIN_CLIENT_ID"],
        os.environ["AMLBATCH_TEST_KEY_VAULT_NO_ACCESS_CLIENT_ID"],
    )


def _check_key_vault_double_program() -> str:
    """Return the node executable, failing with the fix when node or the compiled double is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH; the Key Vault tests run the test double with Node.js 20. Install it, then run node scripts/setup.mjs.")
    if not KEY_VAULT_DOUBLE_PROGRAM.is_file():
        pytest.fail(f"{KEY_VAULT_DOUBLE_PROGRAM} is missing; run node scripts/setup.mjs to compile the Key Vault test double.")
    # Each source is compared with its own output, because an incremental build emits only the files that changed.
    for source in KEY_VAULT_DOUBLE_SOURCES.glob("*.ts"):
        compiled = KEY_VAULT_DOUBLE_PROGRAM.parent / f"{source.stem}.js"
        if not compiled.is_file() or source.stat().st_mtime > compiled.stat().st_mtime:
            pytest.fail(f"{compiled} is missing or older than {source}; run npm run build to compile the Key Vault test double again.")
    return node


@pytest.fixture(scope="session")
def key_vault_double(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyVaultDouble]:
    """Start the Key Vault test double for the session, or use the one in AMLBATCH_TEST_*."""
    published = _key_vault_double_from_environment()
    if published is not None:
        yield published
        return

    node = _check_key_vault_double_program()
    log_path = tmp_path_factory.mktemp("key-vault-double") / "key-vault-double.log"
    with open(log_path, "ab") as log:
        # stdin stays an open pipe, so the double exits when it closes, even if this process dies.
        process = subprocess.Popen(
            [node, str(KEY_VAULT_DOUBLE_PROGRAM)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
        )
    try:
        ready, _, _ = select.select([process.stdout], [], [], KEY_VAULT_DOUBLE_START_TIMEOUT_SECONDS)
        line = process.stdout.readline() if ready else b""
        if not line:
            pytest.fail(
                f"Key Vault test double printed no coordinates within {KEY_VAULT_DOUBLE_START_TIMEOUT_SECONDS} s; see {log_path}"
            )
        coordinates = json.loads(line)
        yield KeyVaultDouble(
            coordinates["vaultUrl"],
            coordinates["caCertPath"],
            coordinates["managedIdentityEndpoint"],
            coordinates["managedIdentityHeader"],
            coordinates["identities"]["reader"],
            coordinates["identities"]["administrator"],
            coordinates["identities"]["noAccess"],
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class KeyVaultUnderTest(NamedTuple):
    double: KeyVaultDouble

    def set_secret(self, name: str, value: str, *, enabled: bool = True) -> None:
        """Store a secret as the double's administrator identity, with the real Python SDK."""
        from azure.identity import ManagedIdentityCredential
        from azure.keyvault.secrets import SecretClient

        credential = ManagedIdentityCredential(client_id=self.double.administrator_client_id)
        client = SecretClient(
            self.double.vault_url,
            credential,
            connection_verify=self.double.ca_cert_path,
            verify_challenge_resource=False,
        )
        with client, credential:
            client.set_secret(name, value, enabled=enabled)


@pytest.fixture
def key_vault(monkeypatch: pytest.MonkeyPatch, key_vault_double: KeyVaultDouble) -> KeyVaultUnderTest:
    """Configure the secret helper for the test double, as the Azure backend configures a job.

    The environment is the one of a job on Azure ML compute with a system-assigned managed
    identity: MSI_ENDPOINT, MSI_SECRET and DEFAULT_IDENTITY_CLIENT_ID, plus the amlbatch Key
    Vault settings with the double's CA certificate.
    """
    for variable in FOREIGN_IDENTITY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MSI_ENDPOINT", key_vault_double.managed_identity_endpoint)
    monkeypatch.setenv("MSI_SECRET", key_vault_double.managed_identity_header)
    monkeypatch.setenv("DEFAULT_IDENTITY_CLIENT_ID", key_vault_double.reader_client_id)
    monkeypatch.setenv(secret_source.KEY_VAULT_URL_VARIABLE, key_vault_double.vault_url)
    monkeypatch.setenv(secret_source.KEY_VAULT_CA_BUNDLE_VARIABLE, key_vault_double.ca_cert_path)
    monkeypatch.setenv(secret_source.KEY_VAULT_VERIFY_CHALLENGE_RESOURCE_VARIABLE, "false")
    return KeyVaultUnderTest(key_vault_double)
