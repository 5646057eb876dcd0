"""Training command: signed model, sample folder, determinism and signing-key creation."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from amlbatch_scoring import train as train_module
from amlbatch_scoring.features import read_image_features
from amlbatch_scoring.model_store import MODEL_FILE_NAME, compute_signature, signature_path


def sample_files(sample_dir: Path) -> list[Path]:
    return sorted(sample_dir.rglob("*.png"))


def test_model_file_is_signed(trained):
    model_path = trained.model_dir / MODEL_FILE_NAME
    signature = signature_path(model_path).read_text(encoding="ascii").strip()

    assert trained.result.model_path == model_path
    assert signature == compute_signature(model_path.read_bytes(), trained.signing_key)


def test_sample_folder_is_held_out_split(trained):
    files = sample_files(trained.sample_dir)
    digits = load_digits()

    # 20% of the 1797 digits, rounded up by train_test_split.
    assert len(files) == 360
    assert trained.result.sample_count == 360
    assert sorted(path.name for path in trained.sample_dir.iterdir()) == [str(label) for label in range(10)]
    for path in files:
        assert int(path.parent.name) == digits.target[int(path.stem)]


def test_sample_images_are_grayscale_32px(trained):
    for path in sample_files(trained.sample_dir)[:20]:
        with Image.open(path) as image:
            assert image.mode == "L"
            assert image.size == (32, 32)


def test_sample_images_recover_features(trained):
    digits = load_digits()

    for path in sample_files(trained.sample_dir):
        features = read_image_features(path)
        # Half a gray level of the 0..255 range, in the 0..16 feature units.
        np.testing.assert_allclose(features, digits.data[int(path.stem)], atol=16 / 510 + 1e-9)


def test_held_out_accuracy_reported(trained):
    assert trained.result.held_out_accuracy >= 0.95


def test_rerun_writes_identical_files(trained, tmp_path):
    rerun = train_module.train(tmp_path / "model", tmp_path / "samples", trained.signing_key)

    assert rerun.model_path.read_bytes() == (trained.model_dir / MODEL_FILE_NAME).read_bytes()
    assert signature_path(rerun.model_path).read_bytes() == signature_path(trained.model_dir / MODEL_FILE_NAME).read_bytes()
    first_files = sample_files(trained.sample_dir)
    second_files = sample_files(tmp_path / "samples")
    assert [path.relative_to(trained.sample_dir) for path in first_files] == [
        path.relative_to(tmp_path / "samples") for path in second_files
    ]
    for first, second in zip(first_files, second_files):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_main_creates_key_privately(tmp_path, isolated_secrets, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    arguments = ["--output-dir", str(tmp_path / "model"), "--sample-dir", str(tmp_path / "samples"), "--create-key"]

    status = train_module.main(arguments)

    assert status == 0
    stored = json.loads(isolated_secrets.read_text(encoding="utf-8"))
    key = stored["model-signing-key"]
    assert len(key) == 64
    assert int(key, 16) >= 0
    assert stat.S_IMODE(isolated_secrets.stat().st_mode) == 0o600
    output = capsys.readouterr()
    assert key not in output.out
    assert key not in output.err
    assert key not in caplog.text
    model_path = tmp_path / "model" / MODEL_FILE_NAME
    assert signature_path(model_path).read_text(encoding="ascii").strip() == compute_signature(model_path.read_bytes(), key)


def test_main_keeps_existing_key(tmp_path, isolated_secrets):
    arguments = ["--output-dir", str(tmp_path / "model"), "--sample-dir", str(tmp_path / "samples"), "--create-key"]
    assert train_module.main(arguments) == 0
    first_key = json.loads(isolated_secrets.read_text(encoding="utf-8"))["model-signing-key"]

    assert train_module.main(arguments) == 0

    assert json.loads(isolated_secrets.read_text(encoding="utf-8")) == {"model-signing-key": first_key}


def test_create_key_skips_environment_key(tmp_path, isolated_secrets, monkeypatch, trained):
    monkeypatch.setenv("AMLBATCH_SECRET_MODEL_SIGNING_KEY", trained.signing_key)

    key = train_module.resolve_signing_key("model-signing-key", create_key=True)

    assert key == trained.signing_key
    assert not isolated_secrets.exists()


def test_main_without_key_fails(tmp_path, caplog):
    arguments = ["--output-dir", str(tmp_path / "model"), "--sample-dir", str(tmp_path / "samples")]

    status = train_module.main(arguments)

    assert status == 2
    assert "--create-key" in caplog.text
    assert not (tmp_path / "model").exists()


def test_main_rejects_short_key(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("AMLBATCH_SECRET_MODEL_SIGNING_KEY", "too-short")
    arguments = ["--output-dir", str(tmp_path / "model"), "--sample-dir", str(tmp_path / "samples")]

    status = train_module.main(arguments)

    assert status == 2
    assert "shorter than 32 characters" in caplog.text
    assert "too-short" not in caplog.text
