"""Shared fixtures: an isolated secret environment and one trained model for the session."""

from __future__ import annotations

import os
import secrets
import sys
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
    monkeypatch.delenv(secret_source.KEY_VAULT_URL_VARIABLE, raising=False)
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
