"""Signed model files: save a model with its HMAC signature, and load it only after verification.

The signature file ``<model file>.sig`` contains the HMAC-SHA256 of the model file's bytes as
lowercase hex. The HMAC key is the UTF-8 encoding of the signing-key secret exactly as
stored, so a hex key is used as text and not decoded.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import joblib

logger = logging.getLogger(__name__)

MODEL_FILE_NAME = "digits-model.joblib"
SIGNATURE_SUFFIX = ".sig"
DEFAULT_SIGNING_KEY_SECRET = "model-signing-key"
MIN_SIGNING_KEY_LENGTH = 32


class ModelSignatureError(Exception):
    """Raised by ``load_signed_model`` when a model file fails signature verification."""

    def __init__(self, model_path: Path, reason: str) -> None:
        self.model_path = model_path
        super().__init__(
            f"Model file {model_path} failed signature verification and is refused: {reason}. "
            f"Retrain it with 'python -m amlbatch_scoring.train', or make the signing-key secret "
            f"the same one the model was signed with."
        )


def signature_path(model_path: Path) -> Path:
    """Return the path of the signature file that belongs to ``model_path``."""
    return model_path.with_name(model_path.name + SIGNATURE_SUFFIX)


def compute_signature(data: bytes, signing_key: str) -> str:
    """Return the HMAC-SHA256 of ``data`` as lowercase hex."""
    return hmac.new(_key_bytes(signing_key), data, hashlib.sha256).hexdigest()


def save_signed_model(model: Any, output_dir: Path, signing_key: str) -> Path:
    """Write ``model`` with joblib into ``output_dir`` and sign it. Return the model file path.

    The model is serialized once in memory, so the signature covers exactly the bytes on disk.
    """
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    data = buffer.getvalue()

    output_dir.mkdir(parents=True, exist_ok=True)
    model_path = output_dir / MODEL_FILE_NAME
    write_file_atomically(model_path, data)
    write_file_atomically(signature_path(model_path), (compute_signature(data, signing_key) + "\n").encode("ascii"))

    logger.info("Saved signed model %s (%d bytes)", model_path, len(data))
    return model_path


def load_signed_model(model_path: Path, signing_key: str) -> Any:
    """Verify the signature of ``model_path``, then load the model from the verified bytes.

    The file is read once and those same bytes are verified and unpickled, so a file swapped
    after verification is never loaded. Raises ModelSignatureError when the signature file is
    missing, malformed or does not match, and FileNotFoundError when the model file is missing.
    """
    try:
        data = model_path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Model file {model_path} not found. Train it with 'python -m amlbatch_scoring.train "
            f"--output-dir {model_path.parent}', or pass the folder that contains "
            f"{MODEL_FILE_NAME} as --model_dir."
        ) from None

    expected = _read_signature(model_path)
    actual = compute_signature(data, signing_key)
    if not hmac.compare_digest(actual, expected):
        raise ModelSignatureError(model_path, f"its HMAC-SHA256 does not match {signature_path(model_path)}")

    # Unpickling runs code from the file, which is safe only now that the bytes are verified.
    model = joblib.load(io.BytesIO(data))
    logger.info("Loaded verified model %s (%d bytes)", model_path, len(data))
    return model


def write_file_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see either the old or the new content."""
    descriptor, temporary_name = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary_name, 0o644)
        os.replace(temporary_name, path)
    except BaseException:
        Path(temporary_name).unlink(missing_ok=True)
        raise


def _read_signature(model_path: Path) -> str:
    path = signature_path(model_path)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ModelSignatureError(model_path, f"signature file {path} not found") from None
    except UnicodeDecodeError:
        raise ModelSignatureError(model_path, f"signature file {path} is not ASCII hex") from None

    if len(text) != hashlib.sha256().digest_size * 2 or any(c not in "0123456789abcdef" for c in text):
        raise ModelSignatureError(model_path, f"signature file {path} is not a 64-digit lowercase hex HMAC-SHA256")
    return text


def validate_signing_key(signing_key: str) -> None:
    """Raise ValueError when the signing key is too short to be a safe HMAC key."""
    if len(signing_key) < MIN_SIGNING_KEY_LENGTH:
        raise ValueError(
            f"The signing key is shorter than {MIN_SIGNING_KEY_LENGTH} characters. Remove it from "
            f"its secret source and create a new one with 'python -m amlbatch_scoring.train --create-key'."
        )


def _key_bytes(signing_key: str) -> bytes:
    validate_signing_key(signing_key)
    return signing_key.encode("utf-8")
