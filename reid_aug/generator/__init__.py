"""PG² pose-guided person generator: G1 (pose integration), G2 (refinement), DCGAN D, training and loading.

- :func:`reid_aug.generator.train.train_generator` / ``reid-aug train-generator``
- :func:`reid_aug.generator.inference.load_generator` -> :class:`PoseTransferGenerator`
"""
