"""Synthesis: K pose-transferred images per training identity (``reid-aug synthesize``).

- :mod:`~reid_aug.synthesis.posebank`: the train-split pose bank, normalisation, faiss clustering,
  target-pose strategies (``random``, ``diverse``) and the pose-diversity measure.
- :mod:`~reid_aug.synthesis.synthesize`: the plan, naming scheme, run descriptor, resumable and
  sharded generation, manifest, contact sheet and ``verify_synthesis``.
- :mod:`~reid_aug.synthesis.writer`: the bounded pool of atomic JPEG writers.
"""
