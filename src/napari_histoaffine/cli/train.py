"""The ``train`` subcommand."""
from __future__ import annotations


def add_train(subparsers) -> None:
    from ..training import add_train_arguments, run_train

    p = subparsers.add_parser("train", help="train or fine-tune the affine network (unsupervised, NCC)",
                              description="Unsupervised training as the paper: pairs posed by the rotation search, "
                                          "random affine and stain augmentation, global negative NCC (plus the "
                                          "distance to a landmark-free target), Adam.")
    add_train_arguments(p)
    p.set_defaults(func=run_train)
