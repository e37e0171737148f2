"""Pose-guided person generators: the architecture-independent training loop, checkpoints, inference
API and samples, and the model families behind one interface (:mod:`reid_aug.generator.family`).

- PG² (:mod:`reid_aug.generator.pg2`): G1 (pose integration), G2 (refinement), DCGAN D
- :func:`reid_aug.generator.train.train_generator` / ``reid-aug train-generator``
- :func:`reid_aug.generator.inference.load_generator` -> :class:`PoseTransferGenerator`
"""
