"""Datasets in the Market-1501 layout: reader, index, ``prepare`` statistics, built-in synthetic data."""
from reid_aug.dataset.market import (  # noqa: F401
    SPLITS,
    DatasetIndex,
    check_images,
    load_dataset,
    parse_market_name,
    resolve_dataset_root,
)
