"""The ``train`` subcommand: the training loop of :mod:`napari_histoaffine.training` from the command line.

Only the torch-free training config is imported to build the parser; the engine loads when a run starts.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InputError
from .common import report

REPORTS_PER_RUN = 100  # progress lines of a run (one per pair posed, then one every 1 % of the steps)


def add_train(subparsers) -> None:
    from ..training.config import default_value

    p = subparsers.add_parser("train", help="train or fine-tune the affine network (unsupervised, NCC)",
                              description="Unsupervised training as the paper: pairs posed by the rotation search, "
                                          "random affine and stain augmentation, global negative NCC (plus the "
                                          "distance to a landmark-free target), Adam.")
    data = p.add_argument_group("training data")
    data.add_argument("--pairs", action="append", default=[], metavar="PAIRS.csv",
                      help="ANHIR pairs table (repeatable); each pair is posed once by the rotation search")
    data.add_argument("--folder", action="append", default=[], metavar="DIR",
                      help="folder of images, each paired with a re-stained, transformed copy of itself (repeatable)")
    data.add_argument("--ihc", action="store_true", help="use scikit-image's immunohistochemistry sample")
    data.add_argument("--phantoms", type=int, default=0, metavar="N",
                      help="N phantom specimens of the development families (every stain pair, exact targets; "
                           "every tenth specimen validates)")
    data.add_argument("--phantom-seed", type=int, default=0, metavar="S", help="the phantoms' dataset seed (default 0)")
    data.add_argument("--landmark-targets", action="store_true",
                      help="pairs tables' landmarks are exact (generated cases): their affine fit is the target "
                           "instead of the NCC refinement's result")
    data.add_argument("--no-crops", action="store_true", help="no random-crop variants of folder/ihc images")
    data.add_argument("--holdout-stains", default="", metavar="A,B",
                      help="pairs whose image file names contain one of these substrings are used for validation only")
    opt = p.add_argument_group("training")
    opt.add_argument("--steps", type=int, default=None, help=f"optimizer steps (default {default_value('steps')})")
    opt.add_argument("--accumulation", type=int, default=None,
                     help=f"pairs per optimizer step (default {default_value('accumulation')})")
    opt.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default {default_value('lr'):g})")
    opt.add_argument("--gamma", type=float, default=None,
                     help=f"learning-rate decay per epoch (default {default_value('gamma')})")
    opt.add_argument("--steps-per-epoch", type=int, default=None,
                     help="optimizer steps per epoch (default: one pass, at least 25)")
    opt.add_argument("--working-size", type=int, default=None,
                     help="working long side in pixels (default: the size the network works at)")
    opt.add_argument("--seed", type=int, default=None, help=f"random seed (default {default_value('seed')})")
    opt.add_argument("--validate-every", type=int, default=None,
                     help=f"optimizer steps between validations (default {default_value('validate_every')})")
    opt.add_argument("--width", type=int, default=None, help="network width for a new network (default: NetworkConfig)")
    opt.add_argument("--patch-size", type=int, default=None,
                     help="patch side in pixels for a new network (default: NetworkConfig); a working size no "
                          "larger than it is one patch")
    opt.add_argument("--loss-weight", choices=("none", "valid", "tissue"), default=None,
                     help="NCC over the whole grid (none, the paper), where both images have pixels (valid, default) "
                          "or valid × fixed tissue mask (tissue)")
    opt.add_argument("--init", default="none", metavar="default|PATH|none",
                     help="start from the shipped weights, a weights file, or a new network (default none)")
    opt.add_argument("--resume", default=None, metavar="CHECKPOINT", help="continue a run from its last.safetensors")
    opt.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    out = p.add_argument_group("output")
    out.add_argument("--out", default=None, metavar="DIR",
                     help="writes DIR/model.safetensors (best), last.safetensors, log.csv, loss.png")
    out.add_argument("--ship", action="store_true",
                     help="copy the final weights to the package's models/default.safetensors (+ default.json)")
    out.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_run_train)


def _config_from_args(args: argparse.Namespace, model=None):
    """The run's TrainingConfig: a resumed run's own, with what the arguments change.

    A network to start from sets the working size (the size it works at) unless ``--working-size`` does.
    """
    from ..registration.weights import read_model_metadata
    from ..training.config import TrainingConfig

    base = TrainingConfig()
    if args.resume:
        extra = read_model_metadata(args.resume)["extra"]
        if "training" in extra:
            base = TrainingConfig.from_dict(extra["training"])
    values = base.to_dict()
    if model is not None:
        values["working_size"] = model.config.input_long_side
    for name in ("steps", "accumulation", "lr", "gamma", "steps_per_epoch", "working_size", "seed", "validate_every"):
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v
    for name in ("width", "patch_size"):
        if getattr(args, name, None) is not None:
            values["network"] = {**values.get("network", {}), name: getattr(args, name)}
    if args.loss_weight:
        values["loss_weight"] = args.loss_weight
    if args.out:
        values["out_dir"] = str(Path(args.out))
    if args.pairs or args.folder or args.ihc or args.phantoms or not values.get("data"):
        values["data"] = {"pairs": [str(Path(p).resolve()) for p in args.pairs],
                          "folders": [str(Path(p).resolve()) for p in args.folder], "ihc": bool(args.ihc),
                          "crops": not args.no_crops,
                          "holdout": [s.strip() for s in args.holdout_stains.split(",") if s.strip()],
                          "landmark_targets": bool(args.landmark_targets),
                          "phantoms": args.phantoms, "phantom_seed": args.phantom_seed}
    return TrainingConfig.from_dict(values)


def _start_model(args: argparse.Namespace, say):
    """The network ``--init`` names (None: a new one, also when no default ships)."""
    from ..registration.weights import load_default_model, load_model

    if args.resume or not args.init or args.init == "none":
        return None
    if args.init != "default":
        return load_model(args.init)
    model = load_default_model()
    if model is None:
        say("no shipped default model: starting from a new network")
    return model


def _every_percent(total_steps: int):
    """A reporter of training updates: every step-end update of each 1 % of the run, validations and the end."""
    every = max(1, total_steps // REPORTS_PER_RUN)

    def on_update(update) -> None:
        if update.pair is None and (update.stage != "training" or update.validation is not None
                                    or update.step % every == 0):
            report(update)
    return on_update


def _ship(weights: Path, config, outcome, command: str) -> Path:
    """Copy ``weights`` into the package as the default model and write its card (models/default.json)."""
    from ..files.atomic import atomic_write, write_json
    from ..registration.network import count_parameters
    from ..registration.weights import file_sha256, load_model, read_model_metadata

    target_dir = Path(__file__).resolve().parents[1] / "models"
    target_dir.mkdir(exist_ok=True)
    target = target_dir / "default.safetensors"
    with atomic_write(target, "wb") as fh:
        fh.write(Path(weights).read_bytes())
    model = load_model(target)
    meta = read_model_metadata(target)
    write_json(target.with_suffix(".json"), {
        "sha256": file_sha256(target), "network": meta["config"], "training": config.to_dict(),
        "data": config.data, "command": command, "wall_time_s": round(outcome.seconds, 1),
        "parameters": count_parameters(model), "size_bytes": target.stat().st_size, "steps": meta["extra"].get("step"),
        "validation": meta["extra"].get("validation")})
    return target


def _starting_network(args: argparse.Namespace, model, config):
    """A private copy of the network this run starts from (training changes ``model`` in place)."""
    import copy

    from ..registration.weights import load_model
    from ..training.loop import new_network

    if args.resume:
        return load_model(args.resume)
    return copy.deepcopy(model) if model is not None else new_network(config)


def _tell_judgement(judgement, out_dir: Path) -> None:
    """The figures Register reports, before → after, on stderr (also with --quiet: they are the result), and
    ``judgement.json``; a fine-tuned network that validates worse is written with a warning."""
    from ..files.atomic import write_json

    if judgement is None:
        print("not judged as Register: no validation pairs of your own (hold pairs out with --holdout-stains)",
              file=sys.stderr)
        return
    write_json(out_dir / "judgement.json", judgement.to_dict())
    print("as Register reports them, before → after fine-tuning (model.safetensors):", file=sys.stderr)
    for line in judgement.lines():
        print("  " + line, file=sys.stderr)
    if judgement.worse:
        print(f"histoaffine: warning: {judgement.verdict()} {out_dir / 'model.safetensors'} was written anyway "
              f"(figures in {out_dir / 'judgement.json'}): keep the starting network unless you prefer this one",
              file=sys.stderr)


def _run_train(args: argparse.Namespace) -> int:
    import torch

    from ..progress import run_steps
    from ..training.data import data_sources, training_data_steps
    from ..training.judge import judge_outcome_steps, validation_sections
    from ..training.loop import train_steps

    if args.threads:
        torch.set_num_threads(args.threads)
    say = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr))
    model = _start_model(args, say)
    config = _config_from_args(args, model)
    if not config.out_dir:
        raise InputError("give --out DIR for the checkpoints and the log")
    if args.ship and not args.out:
        raise InputError("--ship needs --out")
    data = run_steps(training_data_steps(data_sources(config.data), config.working_size),
                     None if args.quiet else report)
    say(f"{len(data.train)} training sources, {len(data.validation)} validation pairs")
    before = _starting_network(args, model, config)
    steps = train_steps(config, data, model=model, resume=args.resume)
    try:
        outcome = run_steps(steps, None if args.quiet else _every_percent(config.total_steps(len(data.train))))
    except KeyboardInterrupt:
        steps.close()
        print("histoaffine: interrupted: resume with --resume " + str(Path(config.out_dir) / "last.safetensors"),
              file=sys.stderr)
        return 130
    judged = validation_sections(data_sources(config.data))
    judgement = run_steps(judge_outcome_steps(outcome, judged, before), None if args.quiet else report)
    print(json.dumps({"steps": outcome.steps, "seconds": round(outcome.seconds, 1),
                      "steps_per_second": outcome.steps_per_second, "initial": outcome.initial_validation,
                      "final": outcome.final_validation, "best_validation": outcome.best_validation,
                      "best_step": outcome.best_step, "best": str(outcome.best_path),
                      "judged": judgement.to_dict() if judgement else None}, indent=2))
    _tell_judgement(judgement, Path(config.out_dir))
    if args.ship:
        # the state after the last step, as in the paper: validation is watched, not used to choose
        target = _ship(outcome.last_path, config, outcome, " ".join(["histoaffine"] + sys.argv[1:]))
        say(f"shipped {target}")
    return 0
