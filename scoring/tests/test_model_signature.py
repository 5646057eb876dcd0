"""Model signature verification: tampered files and wrong keys are rejected before unpickling."""

from __future__ import annotations

import os
import pickle
import secrets
import shutil
from pathlib import Path

import pytest

from amlbatch_scoring.model_store import (
    MODEL_FILE_NAME,
    ModelSignatureError,
    compute_signature,
    load_signed_model,
    signature_path,
)


@pytest.fixture
def model_copy(trained, tmp_path) -> Path:
    """Return a writable copy of the trained model folder."""
    model_dir = tmp_path / "model"
    shutil.copytree(trained.model_dir, model_dir)
    return model_dir


class CreateFolderOnLoad:
    """Pickle payload that creates a folder when unpickled, standing in for hostile code."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __reduce__(self):
        return (os.mkdir, (str(self.folder),))


def assert_rejected(error: pytest.ExceptionInfo, model_path: Path, signing_key: str) -> None:
    message = str(error.value)
    assert f"Model file {model_path} failed signature verification and is refused" in message
    assert signing_key not in message


def test_tampered_model_rejected_by_init(init_score, trained, model_copy):
    model_path = model_copy / MODEL_FILE_NAME
    data = bytearray(model_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_path.write_bytes(bytes(data))

    with pytest.raises(ModelSignatureError) as error:
        init_score("--model_dir", str(model_copy))

    assert_rejected(error, model_path, trained.signing_key)


def test_tampered_signature_rejected(init_score, trained, model_copy):
    model_path = model_copy / MODEL_FILE_NAME
    signature = signature_path(model_path).read_text(encoding="ascii").strip()
    replacement = "0" if signature[0] != "0" else "1"
    signature_path(model_path).write_text(replacement + signature[1:] + "\n", encoding="ascii")

    with pytest.raises(ModelSignatureError) as error:
        init_score("--model_dir", str(model_copy))

    assert_rejected(error, model_path, trained.signing_key)


@pytest.mark.parametrize("content", ["", "not hex at all", "ab" * 31, "AB" * 32])
def test_malformed_signature_rejected(init_score, trained, model_copy, content):
    model_path = model_copy / MODEL_FILE_NAME
    signature_path(model_path).write_text(content, encoding="ascii")

    with pytest.raises(ModelSignatureError, match="is not a 64-digit lowercase hex") as error:
        init_score("--model_dir", str(model_copy))

    assert_rejected(error, model_path, trained.signing_key)


def test_missing_signature_rejected(init_score, trained, model_copy):
    model_path = model_copy / MODEL_FILE_NAME
    signature_path(model_path).unlink()

    with pytest.raises(ModelSignatureError, match=r"signature file .*\.sig not found"):
        init_score("--model_dir", str(model_copy))


def test_wrong_key_rejected(init_score, trained, monkeypatch):
    wrong_key = secrets.token_hex(32)
    monkeypatch.setenv("AMLBATCH_SECRET_MODEL_SIGNING_KEY", wrong_key)

    with pytest.raises(ModelSignatureError) as error:
        init_score("--model_dir", str(trained.model_dir))

    assert_rejected(error, trained.model_dir / MODEL_FILE_NAME, wrong_key)
    assert trained.signing_key not in str(error.value)


def test_missing_model_file_named(init_score, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"Model file {tmp_path / MODEL_FILE_NAME} not found"):
        init_score("--model_dir", str(tmp_path))


def test_unsigned_payload_never_unpickled(trained, model_copy, tmp_path):
    model_path = model_copy / MODEL_FILE_NAME
    marker = tmp_path / "payload-ran"
    model_path.write_bytes(pickle.dumps(CreateFolderOnLoad(marker)))

    with pytest.raises(ModelSignatureError):
        load_signed_model(model_path, trained.signing_key)

    assert not marker.exists()


def test_signed_payload_does_run(trained, model_copy, tmp_path):
    # Control for the test above: the payload really runs when its signature is valid.
    model_path = model_copy / MODEL_FILE_NAME
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(CreateFolderOnLoad(marker))
    model_path.write_bytes(payload)
    signature_path(model_path).write_text(compute_signature(payload, trained.signing_key), encoding="ascii")

    load_signed_model(model_path, trained.signing_key)

    assert marker.is_dir()


def test_short_key_rejected(trained):
    with pytest.raises(ValueError, match="shorter than 32 characters") as error:
        load_signed_model(trained.model_dir / MODEL_FILE_NAME, "short-key")

    assert "short-key" not in str(error.value)
