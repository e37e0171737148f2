"""Errors that mean "bad input": the CLI prints their message without a traceback."""


class ReidAugError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class DatasetError(ReidAugError, ValueError):
    """A dataset folder, file name or image that cannot be used."""


class CheckpointError(ReidAugError, ValueError):
    """A checkpoint of the wrong kind, resolution or version."""


class WeightsMissingError(ReidAugError, FileNotFoundError):
    """Pretrained weights are needed but are not on disk (nothing can be downloaded here)."""
