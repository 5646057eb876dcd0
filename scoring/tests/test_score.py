"""Entry script: the init()/run() contract, row format, damaged files and file names."""

from __future__ import annotations

import json
import random
import shutil
import unicodedata
from pathlib import Path

import pytest


def sample_files(sample_dir: Path) -> list[Path]:
    return sorted(sample_dir.rglob("*.png"))


def test_sample_folder_accuracy(init_score, score_module, trained):
    init_score("--input_root", str(trained.sample_dir), "--model_dir", str(trained.model_dir))
    files = sample_files(trained.sample_dir)

    rows = []
    for start in range(0, len(files), 10):
        rows.extend(score_module.run([str(path) for path in files[start : start + 10]]))

    assert len(rows) == len(files) == 360
    correct = 0
    for path, line in zip(files, rows):
        row = json.loads(line)
        assert row["path"] == path.relative_to(trained.sample_dir).as_posix()
        assert set(row) == {"path", "label", "confidence"}
        assert isinstance(row["label"], int)
        assert 0.0 <= row["confidence"] <= 1.0
        correct += row["label"] == int(path.parent.name)
    accuracy = correct / len(files)
    assert accuracy >= 0.9, f"accuracy {accuracy:.4f} on {len(files)} sample images"


def test_rows_follow_input_order(init_score, score_module, trained):
    init_score("--input_root", str(trained.sample_dir), "--model_dir", str(trained.model_dir))
    files = sample_files(trained.sample_dir)[::7]
    random.Random(3).shuffle(files)
    files.append(files[0])

    rows = [json.loads(line) for line in score_module.run([str(path) for path in files])]

    assert [row["path"] for row in rows] == [path.relative_to(trained.sample_dir).as_posix() for path in files]


def test_empty_mini_batch(init_score, score_module, trained):
    init_score("--input_root", str(trained.sample_dir), "--model_dir", str(trained.model_dir))

    assert score_module.run([]) == []


def test_damaged_files_fail_own_rows(init_score, score_module, trained, tmp_path):
    good = sample_files(trained.sample_dir)[0]
    good_bytes = good.read_bytes()
    files = {
        "good-1.png": good_bytes,
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "not-an-image.png": b"plain text, not pixels\n",
        "good-2.png": good_bytes,
        "truncated.png": good_bytes[: len(good_bytes) // 2],
        "empty.png": b"",
        "good-3.png": good_bytes,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    init_score("--input_root", str(tmp_path), "--model_dir", str(trained.model_dir))

    rows = [json.loads(line) for line in score_module.run([str(tmp_path / name) for name in files])]

    assert [row["path"] for row in rows] == list(files)
    expected_label = int(good.parent.name)
    for row in rows:
        if row["path"].startswith("good-"):
            assert row["label"] == expected_label, row
            assert "error" not in row
        else:
            assert row["label"] is None, row
            assert row["confidence"] is None, row
            exception_type, _, message = row["error"].partition(": ")
            assert exception_type.isidentifier(), row
            assert message, row


def test_truncated_png_error_types(init_score, score_module, trained, tmp_path):
    data = sample_files(trained.sample_dir)[0].read_bytes()
    # The 4-byte chunk length comes just before the chunk type.
    pixel_data_start = data.index(b"IDAT") + 4
    pixel_data_length = int.from_bytes(data[pixel_data_start - 8 : pixel_data_start - 4], "big")
    (tmp_path / "cut-in-pixels.png").write_bytes(data[: pixel_data_start + pixel_data_length // 2])
    (tmp_path / "cut-in-header.png").write_bytes(data[:20])
    (tmp_path / "empty.png").write_bytes(b"")
    names = ["cut-in-pixels.png", "cut-in-header.png", "empty.png"]
    init_score("--input_root", str(tmp_path), "--model_dir", str(trained.model_dir))

    cut_in_pixels, cut_in_header, empty = (
        json.loads(line) for line in score_module.run([str(tmp_path / name) for name in names])
    )

    assert cut_in_pixels["error"].startswith("OSError: image file is truncated"), cut_in_pixels
    assert cut_in_header["error"].startswith("OSError: "), cut_in_header
    assert empty["error"].startswith("UnidentifiedImageError: cannot identify image file"), empty


def test_missing_file_fails_own_row(init_score, score_module, trained, tmp_path):
    good = tmp_path / "good.png"
    shutil.copyfile(sample_files(trained.sample_dir)[0], good)
    init_score("--input_root", str(tmp_path), "--model_dir", str(trained.model_dir))

    missing, found = (json.loads(line) for line in score_module.run([str(tmp_path / "gone.png"), str(good)]))

    assert missing["error"].startswith("FileNotFoundError: ")
    assert found["label"] is not None


SPECIAL_NAMES = [
    "with space.png",
    "hash#1.png",
    "100%.png",
    "percent%20encoded.png",
    unicodedata.normalize("NFC", "café.png"),
    unicodedata.normalize("NFD", "café.png"),
    "数字七.png",
    "sub folder/ñandú #2 %41.png",
    "子目录/图像 1.png",
]


def test_special_file_names_round_trip(init_score, score_module, trained, tmp_path):
    source = sample_files(trained.sample_dir)[0]
    for name in SPECIAL_NAMES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, tmp_path / name)
    init_score("--input_root", str(tmp_path), "--model_dir", str(trained.model_dir))

    lines = score_module.run([str(tmp_path / name) for name in SPECIAL_NAMES])

    assert [json.loads(line)["path"] for line in lines] == SPECIAL_NAMES
    for line in lines:
        assert line.isascii(), line
        assert json.loads(line)["label"] == int(source.parent.name)


def test_input_root_trailing_separator(init_score, score_module, trained):
    init_score("--input_root", str(trained.sample_dir) + "/", "--model_dir", str(trained.model_dir))
    path = sample_files(trained.sample_dir)[0]

    row = json.loads(score_module.run([str(path)])[0])

    assert row["path"] == path.relative_to(trained.sample_dir).as_posix()


def test_without_input_root_reports_file_name(init_score, score_module, trained):
    init_score("--model_dir", str(trained.model_dir))
    path = sample_files(trained.sample_dir)[0]

    row = json.loads(score_module.run([str(path)])[0])

    assert row["path"] == path.name


def test_path_outside_input_root_raises(init_score, score_module, trained, tmp_path):
    init_score("--input_root", str(tmp_path), "--model_dir", str(trained.model_dir))
    outside = sample_files(trained.sample_dir)[0]

    with pytest.raises(ValueError, match="is not under --input_root"):
        score_module.run([str(outside)])


def test_missing_input_root_raises(init_score, trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="--input_root .* is not a folder"):
        init_score("--input_root", str(tmp_path / "absent"), "--model_dir", str(trained.model_dir))


def test_runtime_flags_are_ignored(init_score, score_module, trained):
    # Without allow_abbrev=False, argparse would read "--model" as "--model_dir".
    init_score("--model", "ignored", "--input_root", str(trained.sample_dir), "--model_dir", str(trained.model_dir))

    assert score_module._state.model_path == trained.model_dir / "digits-model.joblib"


def test_default_arguments(score_module):
    arguments = score_module._parse_arguments(["--mini_batch_size", "10"])

    assert arguments.input_root is None
    assert arguments.model_dir is None
    assert arguments.signing_key_secret == "model-signing-key"
    assert score_module._default_model_dir() == Path(score_module.__file__).resolve().parent / "model"


def test_signing_key_secret_argument(init_score, score_module, trained, monkeypatch):
    monkeypatch.delenv("AMLBATCH_SECRET_MODEL_SIGNING_KEY")
    monkeypatch.setenv("AMLBATCH_SECRET_OTHER_KEY", trained.signing_key)

    init_score("--model_dir", str(trained.model_dir), "--signing_key_secret", "other-key")

    assert score_module._state is not None


def test_run_before_init_raises(score_module):
    with pytest.raises(RuntimeError, match="before init"):
        score_module.run(["/tmp/a.png"])


def test_run_rejects_non_list(init_score, score_module, trained):
    init_score("--model_dir", str(trained.model_dir))

    with pytest.raises(TypeError, match="expects a list of file paths"):
        score_module.run("/tmp/a.png")
