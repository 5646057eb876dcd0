"""Digit-image scoring for amlbatch: the model training command, the signed model files,
image features and the secret lookup that the entry script ``score.py`` uses."""
