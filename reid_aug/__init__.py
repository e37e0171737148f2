"""reid-aug: pose-transfer data augmentation for person re-identification.

Data flow (one sub-package per stage):

    dataset -> keypoints -> pose (maps/masks) -> pairs -> generator -> synthesis
            -> reid (torchreid training + ranking) -> metrics -> report
"""

__version__ = "0.1.0"
