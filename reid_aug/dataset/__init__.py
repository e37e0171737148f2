"""Datasets in the Market-1501 layout: reader, index, ``prepare`` statistics, the toy dataset's spec."""
from reid_aug.dataset.market import (  # noqa: F401
    SPLITS,
    DatasetIndex,
    check_images,
    is_toy_spec,
    load_dataset,
    parse_market_name,
    resolve_dataset_root,
)
