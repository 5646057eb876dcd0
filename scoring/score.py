"""Entry script that classifies digit images, for an Azure ML parallel job or the local runner.

The runtime calls ``init()`` once per worker process and then ``run(mini_batch)`` with lists
of absolute file paths. ``run`` returns one JSON string per path, in input order, so an
``append_row`` output file is JSON Lines. A file that cannot be read as an image fails only
its own row. Importing this module only makes the package next to it importable: it parses
no arguments and loads no model.

Arguments, parsed from ``sys.argv`` with ``parse_known_args`` because the runtime adds flags:

``--input_root``
    Folder that the mini-batch paths are relative to, bound to ``${{inputs.input_data}}`` on
    Azure ML. Each row's ``path`` is the file's path below this folder. Without it, ``path``
    is only the file name, which is ambiguous when sub-folders repeat names.
``--model_dir``
    Folder with ``digits-model.joblib`` and its ``.sig`` file. Default: ``model/`` next to
    this script.
``--signing_key_secret``
    Name of the secret that contains the model's HMAC signing key. Default: ``model-signing-key``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

# The runtime loads this script by file path, so the package folder beside it is not always on
# sys.path. Putting it first also wins over an older installed copy of the package.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from amlbatch_scoring import secret_source  # noqa: E402
from amlbatch_scoring.features import read_image_features  # noqa: E402
from amlbatch_scoring.model_store import (  # noqa: E402
    DEFAULT_SIGNING_KEY_SECRET,
    MODEL_FILE_NAME,
    load_signed_model,
)

logger = logging.getLogger(__name__)


class ScoringState(NamedTuple):
    """Model and settings that ``init()`` loads once per worker process for ``run()``.

    A NamedTuple and not a dataclass, because a dataclass with postponed annotations fails
    in a module that a host loads from a file path without registering it in ``sys.modules``.
    """

    model: Any
    model_path: Path
    input_root: Path | None


# The only module-level state: set by init(), read by run().
_state: ScoringState | None = None


def init() -> None:
    """Parse the arguments, verify and load the model, and keep both for ``run()``.

    Raises ModelSignatureError for a model that fails signature verification, a
    secret_source error when the signing key cannot be read, and FileNotFoundError for a
    missing model file or input root.
    """
    global _state

    arguments = _parse_arguments(sys.argv[1:])
    model_dir = Path(os.path.abspath(arguments.model_dir)) if arguments.model_dir else _default_model_dir()

    input_root = None
    if arguments.input_root:
        input_root = Path(os.path.abspath(arguments.input_root))
        if not input_root.is_dir():
            raise FileNotFoundError(
                f"--input_root {input_root} is not a folder. Pass the folder that the mini-batch "
                f"files are in, or leave --input_root out to report file names only."
            )
    else:
        logger.warning("No --input_root given, so each row's path is the file name only")

    signing_key = secret_source.get_secret(arguments.signing_key_secret)
    model_path = model_dir / MODEL_FILE_NAME
    model = load_signed_model(model_path, signing_key)
    if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
        raise TypeError(
            f"Model in {model_path} is a {type(model).__name__}, not a fitted classifier with "
            f"predict_proba. Retrain it with 'python -m amlbatch_scoring.train'."
        )

    _state = ScoringState(model=model, model_path=model_path, input_root=input_root)
    logger.info(
        "Initialized scoring: model %s, input root %s, signing key secret %s",
        model_path,
        input_root,
        arguments.signing_key_secret,
    )


def run(mini_batch: list[str]) -> list[str]:
    """Classify each image file of ``mini_batch`` and return one JSON row per file, in order.

    A row is ``{"path", "label", "confidence"}``. For a file that cannot be read as an image,
    ``label`` and ``confidence`` are null and ``error`` is ``"<ExceptionType>: <message>"``.
    Raises ValueError for a path outside ``--input_root``, and lets a model failure fail the
    whole mini-batch so that the runtime retries it.
    """
    state = _require_state()
    if not isinstance(mini_batch, (list, tuple)):
        raise TypeError(
            f"run() expects a list of file paths from a folder or file input, got a "
            f"{type(mini_batch).__name__}. Tabular (mltable) inputs are not supported."
        )

    file_paths = [os.path.abspath(os.fspath(item)) for item in mini_batch]
    row_paths = [_row_path(file_path, state.input_root) for file_path in file_paths]
    rows: list[dict[str, Any] | None] = [None] * len(file_paths)

    # Read every image first, so that one prediction call covers the whole mini-batch.
    readable_positions: list[int] = []
    features: list[np.ndarray] = []
    for position, file_path in enumerate(file_paths):
        try:
            features.append(read_image_features(file_path))
        # Pillow 13 raises OSError, SyntaxError, EOFError or struct.error for damaged files,
        # depending on where the damage is, and each must fail only this file's row.
        except Exception as error:  # noqa: BLE001
            logger.warning("Failed to read image %s: %s: %s", file_path, type(error).__name__, error)
            rows[position] = _error_row(row_paths[position], error)
        else:
            readable_positions.append(position)

    if features:
        probabilities = state.model.predict_proba(np.stack(features))
        best_columns = probabilities.argmax(axis=1)
        for position, row_probabilities, best_column in zip(readable_positions, probabilities, best_columns):
            rows[position] = {
                "path": row_paths[position],
                "label": int(state.model.classes_[best_column]),
                "confidence": float(row_probabilities[best_column]),
            }

    failed_count = len(file_paths) - len(readable_positions)
    logger.info("Scored mini-batch: %d files, %d failed", len(file_paths), failed_count)

    # ASCII-only JSON is safe whatever encoding the runtime writes the output file in.
    return [json.dumps(row, ensure_ascii=True, allow_nan=False) for row in rows]


def _parse_arguments(argv: list[str]) -> argparse.Namespace:
    # allow_abbrev=False stops a runtime flag such as --model from matching --model_dir.
    parser = argparse.ArgumentParser(prog="score.py", allow_abbrev=False)
    parser.add_argument("--input_root", help="folder that the mini-batch file paths are relative to")
    parser.add_argument("--model_dir", help="folder with digits-model.joblib and its .sig file")
    parser.add_argument(
        "--signing_key_secret",
        default=DEFAULT_SIGNING_KEY_SECRET,
        help="name of the secret that contains the model's HMAC signing key",
    )
    arguments, runtime_arguments = parser.parse_known_args(argv)
    logger.debug("Ignoring %d arguments that belong to the runtime", len(runtime_arguments))
    return arguments


def _default_model_dir() -> Path:
    return Path(__file__).resolve().parent / "model"


def _require_state() -> ScoringState:
    if _state is None:
        raise RuntimeError("run() was called before init(). The runtime must call init() once per process first.")
    return _state


def _row_path(file_path: str, input_root: Path | None) -> str:
    """Return the path reported for ``file_path``: relative to ``input_root``, with '/' separators.

    The path is computed from the strings alone, without resolving links or normalizing
    Unicode, so it matches the name on disk.
    """
    if input_root is None:
        return Path(file_path).name

    try:
        relative = Path(file_path).relative_to(input_root)
    except ValueError:
        raise ValueError(
            f"File {file_path} is not under --input_root {input_root}. Pass the folder that "
            f"the mini-batch files come from as --input_root."
        ) from None
    return relative.as_posix()


def _error_row(row_path: str, error: Exception) -> dict[str, Any]:
    return {"path": row_path, "label": None, "confidence": None, "error": f"{type(error).__name__}: {error}"}
