"""Synthesis: K pose-transferred images per training identity, or per image (``reid-aug synthesize``).

- :mod:`~reid_aug.synthesis.config`: ``SynthesisConfig`` (``recipes/synthesize.yaml``), checks, shards.
- :mod:`~reid_aug.synthesis.inputs`: the generator (newest finished run by default) and dataset choice.
- :mod:`~reid_aug.synthesis.naming`: ``PPPP_cC_gKK_<source>.jpg`` names and their parser.
- :mod:`~reid_aug.synthesis.posebank`: the train-split pose bank, normalisation, distance, clustering.
- :mod:`~reid_aug.synthesis.strategies`: the registry of target-pose strategies (``random``, ``diverse``).
- :mod:`~reid_aug.synthesis.plan`: sources, targets, plan hash, blocks and batches (K per identity or per image).
- :mod:`~reid_aug.synthesis.lineage`: what the generator saw (the low-data regime's leak check).
- :mod:`~reid_aug.synthesis.filter`: Re-ID scores of the generated images, the kept ones (``--filter``).
- :mod:`~reid_aug.synthesis.folder`: descriptor, manifests (shards + merge), contact sheet.
- :mod:`~reid_aug.synthesis.verify`: ``verify_synthesis`` (``--verify``).
- :mod:`~reid_aug.synthesis.job` and :mod:`~reid_aug.synthesis.synthesize`: the run and its loop.
- :mod:`~reid_aug.synthesis.writer`: the bounded pool of atomic JPEG writers.
"""
