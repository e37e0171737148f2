"""The toy dataset: procedurally drawn pedestrians in the Market-1501 layout (``reid-aug demo``'s data).

"Toy" names this demo data only; "synthesized" always means a generator's output.
"""
from reid_aug.toyset.render import ToyParams, ensure_toy, iter_samples, make_toy, plan_dataset

__all__ = ["ToyParams", "ensure_toy", "iter_samples", "make_toy", "plan_dataset"]
