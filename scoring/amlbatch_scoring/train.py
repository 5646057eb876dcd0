"""Train the digits classifier, sign it, and write the held-out split as a sample image folder.

Run it from the repository root, because the default local secrets file is
``.amlbatch/secrets.json`` below the current directory::

    python -m amlbatch_scoring.train --output-dir scoring/model --sample-dir samples/digits --create-key

The data is scikit-learn's bundled digits dataset, so nothing is downloaded. The split, the
classifier and the image encoding are deterministic, so a rerun with the same signing key
writes the same model, signature and images.
"""

from __future__ import annotations

import argparse
import io
import logging
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

from amlbatch_scoring import secret_source
from amlbatch_scoring.features import features_to_image
from amlbatch_scoring.model_store import DEFAULT_SIGNING_KEY_SECRET, save_signed_model, validate_signing_key

logger = logging.getLogger(__name__)

TEST_FRACTION = 0.2
SPLIT_RANDOM_STATE = 20240917
DEFAULT_IMAGE_SIDE = 32
SIGNING_KEY_BYTES = 32


@dataclass(frozen=True)
class DigitsSplit:
    """Stratified train and held-out parts of the digits dataset, with dataset row indices."""

    train_features: np.ndarray
    train_labels: np.ndarray
    test_features: np.ndarray
    test_labels: np.ndarray
    test_indices: np.ndarray


@dataclass(frozen=True)
class TrainingResult:
    """Files written by ``train`` and the classifier's accuracy on the held-out features."""

    model_path: Path
    sample_count: int
    held_out_accuracy: float


def load_split() -> DigitsSplit:
    """Load the bundled digits dataset and split it 80/20, stratified by label."""
    digits = load_digits()
    indices = np.arange(len(digits.target))
    train_x, test_x, train_y, test_y, _, test_indices = train_test_split(
        digits.data,
        digits.target,
        indices,
        test_size=TEST_FRACTION,
        random_state=SPLIT_RANDOM_STATE,
        stratify=digits.target,
    )
    return DigitsSplit(train_x, train_y, test_x, test_y, test_indices)


def build_classifier() -> CalibratedClassifierCV:
    """Return an RBF support vector classifier whose probabilities come from sigmoid calibration.

    ``ensemble=False`` keeps one SVC fitted on all training data. Calibration uses
    unshuffled stratified folds, so fitting is deterministic.
    """
    return CalibratedClassifierCV(SVC(kernel="rbf", gamma=0.001, C=10.0), method="sigmoid", ensemble=False)


def write_samples(sample_dir: Path, split: DigitsSplit, image_side: int) -> int:
    """Write each held-out digit to ``<sample_dir>/<label>/<dataset index>.png``. Return the count."""
    for features, label, index in zip(split.test_features, split.test_labels, split.test_indices):
        label_dir = sample_dir / str(int(label))
        label_dir.mkdir(parents=True, exist_ok=True)

        # PNG files written by Pillow carry no timestamp, so equal pixels give equal bytes.
        buffer = io.BytesIO()
        features_to_image(features, image_side).save(buffer, format="PNG")
        (label_dir / f"{int(index)}.png").write_bytes(buffer.getvalue())

    return len(split.test_labels)


def train(output_dir: Path, sample_dir: Path, signing_key: str, image_side: int = DEFAULT_IMAGE_SIDE) -> TrainingResult:
    """Train the classifier, save it signed into ``output_dir`` and write the sample folder."""
    split = load_split()

    classifier = build_classifier()
    classifier.fit(split.train_features, split.train_labels)
    accuracy = float(np.mean(classifier.predict(split.test_features) == split.test_labels))
    logger.info("Trained classifier on %d digits, held-out accuracy %.4f", len(split.train_labels), accuracy)

    model_path = save_signed_model(classifier, output_dir, signing_key)
    sample_count = write_samples(sample_dir, split, image_side)
    logger.info("Wrote %d sample images of %dx%d pixels to %s", sample_count, image_side, image_side, sample_dir)

    return TrainingResult(model_path, sample_count, accuracy)


def resolve_signing_key(secret_name: str, create_key: bool) -> str:
    """Return the signing key, first storing a new random key locally when allowed and missing."""
    if create_key:
        location = secret_source.locate_secret(secret_name)
        if location is None:
            path = secret_source.store_local_secret(secret_name, secrets.token_hex(SIGNING_KEY_BYTES))
            logger.info("Created signing key %s in local secrets file %s", secret_name, path)
        else:
            logger.info("Signing key %s exists in %s, so no new key is created", secret_name, location)

    signing_key = secret_source.get_secret(secret_name)
    validate_signing_key(signing_key)
    return signing_key


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m amlbatch_scoring.train",
        description="Train and sign the digits model, and write the held-out digits as PNG sample images.",
    )
    parser.add_argument("--output-dir", type=Path, required=True, help="folder for digits-model.joblib and its .sig file")
    parser.add_argument("--sample-dir", type=Path, required=True, help="folder for the sample images, one sub-folder per label")
    parser.add_argument(
        "--signing-key-secret",
        default=DEFAULT_SIGNING_KEY_SECRET,
        help=f"name of the secret that contains the HMAC signing key (default: {DEFAULT_SIGNING_KEY_SECRET})",
    )
    parser.add_argument(
        "--create-key",
        action="store_true",
        help="when no source contains the signing key, store a new random 32-byte hex key in the local secrets file",
    )
    parser.add_argument(
        "--image-side",
        type=int,
        default=DEFAULT_IMAGE_SIDE,
        help=f"width and height of each sample image in pixels, a multiple of 8 (default: {DEFAULT_IMAGE_SIDE})",
    )
    arguments = parser.parse_args(argv)

    if arguments.image_side <= 0 or arguments.image_side % 8 != 0:
        parser.error(f"--image-side {arguments.image_side} is invalid: use a positive multiple of 8, such as 32.")
    return arguments


def main(argv: list[str] | None = None) -> int:
    """Run the training command and return its exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    arguments = parse_arguments(argv)

    try:
        signing_key = resolve_signing_key(arguments.signing_key_secret, arguments.create_key)
    except secret_source.SecretNotFoundError as error:
        logger.error("%s Or rerun with --create-key to store a new key in the local secrets file.", error)
        return 2
    except (secret_source.SecretError, ValueError) as error:
        logger.error("%s", error)
        return 2

    result = train(arguments.output_dir, arguments.sample_dir, signing_key, arguments.image_side)
    logger.info(
        "Done: model %s, %d sample images, held-out accuracy %.4f",
        result.model_path,
        result.sample_count,
        result.held_out_accuracy,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
