"""Unsupervised training of the affine network, as in the method paper (no napari here).

The parts, in the order a run uses them:

* :mod:`.config` — :class:`TrainingConfig`, everything that defines a run (no torch at import);
* :mod:`.data` — :class:`DataSource` → training and validation :class:`TrainingPair` objects
  (:func:`training_data_steps`, the one rule of which pairs validate);
* :mod:`.samples` — random affine and stain augmentation of a pair, the samples and the loss;
* :mod:`.loop` — :func:`train_steps`, the loop (validation, checkpoints), a generator of
  :class:`TrainingUpdate` progress items; :func:`train` runs it to the end;
* :mod:`.records` — the run folder: checkpoints, log.csv, loss.png;
* :mod:`.judge` — before and after: the starting and the fine-tuned network judged by the registration
  engine itself on the validation pairs, the figures Register reports.

``histoaffine train`` (:mod:`napari_histoaffine.cli.train`) and the Fine-tune dock are its two front ends.
The names below are imported on first use, so ``from napari_histoaffine.training import TrainingConfig``
loads no torch.
"""
_PUBLIC = {"TrainingConfig": "config", "DataSource": "data", "SectionArrays": "data", "TrainingPair": "data",
           "TrainingData": "data", "training_data_steps": "data", "data_sources": "data", "ihc_pairs": "data",
           "folder_pairs": "data", "pose_training_pair": "data", "pose_validation_pair": "data",
           "Sample": "samples", "make_sample": "samples", "stain_jitter": "samples", "TrainingUpdate": "loop",
           "TrainingOutcome": "loop", "train_steps": "loop", "train": "loop", "validate": "loop",
           "new_network": "loop", "Judgement": "judge", "judge_steps": "judge", "validation_sections": "judge"}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{_PUBLIC[name]}"), name)
