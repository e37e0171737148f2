"""Training/test pairs for pose transfer and the PyTorch datasets that serve them."""
from reid_aug.pairs.pairs import pairs_sha256, read_pairs_csv, test_pairs, train_pair_pool, train_pairs  # noqa: F401
from reid_aug.pairs.torch_dataset import (  # noqa: F401
    PoseImageDataset,
    PosePairDataset,
    add_pose_maps,
    load_image,
)
