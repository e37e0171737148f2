"""Every error class of the toolkit, in one place.

All of them mean "bad input or a state the user can fix": the CLI prints their one-line message
without a traceback and exits with status 2. Modules import them from here (some also re-export
the ones they raise, so older imports such as ``reid_aug.config.ConfigError`` keep working).
"""


class ReidAugError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class ConfigError(ReidAugError, ValueError):
    """A recipe, override or option that does not match the config schema."""


class DatasetError(ReidAugError, ValueError):
    """A dataset folder, file name or image that cannot be used."""


class AnnotationError(DatasetError):
    """A keypoint annotation file that cannot be parsed (line numbers in the message)."""


class StaleToyError(DatasetError):
    """A toy dataset of the same parameters drawn by another revision of the renderer."""


class CheckpointError(ReidAugError, ValueError):
    """A checkpoint of the wrong kind, resolution or version, or a file that is no checkpoint."""


class WeightsMissingError(ReidAugError, FileNotFoundError):
    """Pretrained weights are needed but are not on disk (nothing can be downloaded here)."""


class RecordError(ReidAugError, ValueError):
    """A JSON/YAML/CSV record (results, metrics, descriptor, manifest) that cannot be read."""


class TrainingError(ReidAugError, RuntimeError):
    """A run that cannot start or continue as asked (e.g. a run folder that already holds a run)."""


class TrainingDivergedError(TrainingError):
    """A loss or weight became NaN/inf; the last good checkpoint is kept."""


class MetricsError(ReidAugError, ValueError):
    """An evaluation that cannot run as asked (missing stage, bad pairs, ...)."""


class SynthesisError(ReidAugError, ValueError):
    """A synthesis that cannot run as asked, or an output folder that belongs to another run."""


class RunSelectionError(ReidAugError, LookupError):
    """A command could not find the earlier command's output it needs (no finished run, no synthesized set)."""
