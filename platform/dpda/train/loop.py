"""The training loop: dual-path (or augmented-only / no-augmentation) training with early stopping,
n-best checkpoint averaging, resumable checkpoints and per-step telemetry.

One class serves the single-process CLI and every Ray Train worker: distribution enters only
through `DistContext` (the sampler shard and one all-reduce of both path gradients), so the
single-process run is the reference the distributed one is tested against.
"""

from __future__ import annotations

import functools
import itertools
import math
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dpda_analysis.layout import RUN_EVAL_DIR, RUN_SUMMARY
from dpda_analysis.schema import ORIGINAL_PATH

from dpda.align import aligner_from_spec
from dpda.augment.applied import AppliedTransforms, tally
from dpda.augment.pipeline import Pipeline, prepare_transforms
from dpda.console import track
from dpda.data.check_cache import trust as trust_checks
from dpda.data.corpora import load_manifest, without_attacks
from dpda.data.dataset import AudioDataset, make_loader, stream_seed
from dpda.errors import UserError
from dpda.metrics import compute_eer, eer_interval
from dpda.metrics.bootstrap import DEFAULT_DRAWS
from dpda.metrics.summary import NEW_METRICS, metric_values
from dpda.models import load_ssl_weights
from dpda.telemetry import NullTelemetryWriter, TelemetryWriter, next_attempt
from dpda.telemetry.tally import EpochTally
from dpda.models.state_dict import load_weights
from dpda.train.checkpoint import TRAIN_STATE_FORMAT, average_state_dicts, load_checkpoint, save_checkpoint
from dpda.train.checkpoint_store import LAST, CheckpointUpdate, epoch_file, is_epoch_file, stage_update
from dpda.train.config import TrainConfig
from dpda.train.inference import resolve_device, score_manifest
from dpda.train.init_from import init_model
from dpda.train.optim_params import load_tables, optimizer_tensors, table_state, zero_frozen_grads
from dpda.train.run_dir import RunDirLock, persistent_run_id, write_json
from dpda.train.baseline_steps import single_path_step
from dpda.train.step import DualPathStep
from dpda.train.step_stats import StepStats
from dpda.train.trial_result import ENTRY_METRICS, entry_rows, entry_set, dev_key, epoch_report, final_report, is_dev_metric
from dpda.train.losses import build_detector, loss_function

CHECKPOINT_FORMAT = TRAIN_STATE_FORMAT
from dpda.train.model_file import MODEL_FORMAT


@dataclass
class DistContext:
    """What a distributed worker contributes; None in a single process."""

    rank: int
    world_size: int
    device: torch.device
    all_reduce_mean: Callable[[torch.Tensor], None] | None = None  # in place, over all ranks

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class Trainer:
    """Owns one training run in `run_dir`; `fit()` trains, selects and averages the best epochs."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        dist: DistContext | None = None,
        report_fn: Callable[[dict[str, Any], CheckpointUpdate | None], None] | None = None,
        run_id: str | None = None,
        trial_id: str | None = None,
        resume_from: str | Path | None = None,
        progress: bool = True,
        checkpoint_dir: str | Path | None = None,
        checked: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.dist = dist
        self.report_fn = report_fn
        self.trial_id = trial_id or "local"
        self.run_id = run_id
        self.resume_from = Path(resume_from) if resume_from else None
        self.progress = progress
        self.is_main = dist is None or dist.is_main
        self.device = dist.device if dist else resolve_device(config.device)
        # Under Ray the working copies live in node-local scratch: the storage Ray reports to
        # holds the checkpoints (dpda.train.checkpoint_store), and the run dir may be inside it.
        self.ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else self.run_dir / "checkpoints"
        self.checked = checked  # corpus-check verdicts from a driver (dpda.data.check_cache)

    # ------------------------------------------------------------------ setup
    def _build(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        trust_checks(self.checked)
        for section in ("train", "dev"):
            if not getattr(cfg.data, section):  # dev drives early stopping and model selection
                raise UserError(f"data.{section}: no corpora given (a list of KIND:PATH[:SUBSET] specs)")
        held_out = cfg.data.held_out_attacks
        self.train_manifest = without_attacks(load_manifest(cfg.data.train, cfg.data.check, "data.train", keyed=True),
                                              held_out, "data.held_out_attacks", required=True)
        self.dev_manifest = without_attacks(load_manifest(cfg.data.dev, cfg.data.check, "data.dev", keyed=True),
                                            held_out, "data.held_out_attacks", required=False)
        self.dev_entries = entry_rows(cfg.data.dev, self.dev_manifest["utt"], cfg.data.check)
        if self.is_main:  # the eval sets are scored after the last epoch: a bad one fails now
            for name, specs in cfg.data.eval.items():
                load_manifest(specs, cfg.data.check, f"data.eval.{name}", keyed=True)
        # one pipeline per augmented path (`augment.paths`; one path `aug` without it)
        self.augmenters = [Pipeline(root) for root in cfg.augment.path_transforms.values()]
        if cfg.augment.mode != "none":  # banks the augmentation reads: opened and checked before any step
            for root in cfg.augment.path_transforms.values():
                prepare_transforms(root, cfg.data.check)
        # the published pipeline augments whole utterances in the loader; dpda's the cropped batch
        loader_augment = cfg.data.augment_before_crop and cfg.augment.mode != "none"
        loader_pipelines = [Pipeline(root) for root in cfg.augment.path_transforms.values()]
        self.train_set = AudioDataset(
            self.train_manifest, length=cfg.data.length, train=True, seed=cfg.seed, crop=cfg.data.crop,
            augment=(loader_pipelines[0] if len(loader_pipelines) == 1 else loader_pipelines) if loader_augment else None,
        )
        # A DistributedSampler even in one process: its order depends only on (seed, epoch), so an
        # epoch-boundary resume sees exactly the batches the uninterrupted run saw.
        world, rank = (self.dist.world_size, self.dist.rank) if self.dist else (1, 0)
        self.sampler = torch.utils.data.DistributedSampler(
            self.train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True,
        )
        self.train_loader = make_loader(
            self.train_set, batch_size=cfg.optim.batch_size, shuffle=False,
            num_workers=cfg.data.num_workers, seed=cfg.seed, drop_last=True, sampler=self.sampler,
        )
        self.model = build_detector(cfg, cfg.model.build_overrides())
        if cfg.model.ssl_checkpoint:
            load_ssl_weights(self.model, cfg.model.ssl_checkpoint)
        # where the run started (model.init_from): into summary.json and model.pt; a resume
        # then replaces these weights with its checkpoint's
        self.init_source = init_model(self.model, cfg.model) if cfg.model.init_from else None
        if cfg.model.freeze_frontend:
            if not callable(getattr(self.model, "freeze_frontend", None)):
                raise UserError(f"model.freeze_frontend: model {cfg.model.name} has no SSL front end to freeze")
            self.model.freeze_frontend()
        self.model.to(self.device)
        params = optimizer_tensors(self.model, cfg.optim.params)
        self.optimizer = torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        if cfg.optim.params == "published" and cfg.augment.mode == "dual" and cfg.align.rule != "none":
            zero_frozen_grads(params)  # the published GA wrappers' zero .grad (its baseline leaves None)
        self.loss_fn = loss_function(cfg.loss, self.device)
        self.augment_mask: torch.Tensor | None = None  # the last batch's applied transforms (over all paths' leaves)
        self.aligner = aligner_from_spec(cfg.align)
        use_amp = cfg.optim.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_amp else None
        self.autocast_dtype = torch.float16 if use_amp else None
        self.reduce_fn = self.dist.all_reduce_mean if self.dist and self.dist.world_size > 1 else None
        self.layer_names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.path_state: dict[str, Any] = {}
        self.train_step = self._make_train_step()

    def _make_train_step(self) -> Callable[[torch.Tensor, list[torch.Tensor] | None, torch.Tensor, list[torch.Generator]], StepStats]:
        """The step of this run's `augment.mode`, chosen once: (wave, augmented waves (one per
        path) or None, target, generators (one per path)) -> stats. None: the loader did not
        augment; augment the batch here."""
        cfg = self.cfg
        if cfg.augment.mode == "dual":
            dual = DualPathStep(
                self.model, self.loss_fn, self.optimizer, self.aligner, mode=cfg.align.mode,
                clip_norm=cfg.optim.clip_norm, scaler=self.scaler, reduce_fn=self.reduce_fn,
                autocast_dtype=self.autocast_dtype, augmented_paths=len(self.augmenters),
            )
            self.layer_names = list(dual.layer_names)
            self.path_state = dual.path_state  # a K-path rule's state (K > 1), checkpointed with the aligner's
            return lambda wave, aug, target, gens: dual(wave, self._augment(wave, aug, gens), target)
        one_path = functools.partial(
            single_path_step, self.model, self.loss_fn, self.optimizer, clip_norm=cfg.optim.clip_norm,
            scaler=self.scaler, reduce_fn=self.reduce_fn, autocast_dtype=self.autocast_dtype,
        )
        if cfg.augment.mode == "augmented":  # the augmented copies only
            return lambda wave, aug, target, gens: one_path(self._augment(wave, aug, gens)[0], target)
        return lambda wave, aug, target, gens: one_path(wave, target)

    @property
    def path_names(self) -> list[str]:
        """Telemetry's `paths`: "orig" then the augmented paths' names for a dual-path run, else []."""
        if self.cfg.augment.mode != "dual":
            return []
        return [ORIGINAL_PATH, *self.cfg.augment.path_transforms]

    # ------------------------------------------------------------- checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "tables": table_state(self.model, self.cfg.optim.params),
            "optimizer": self.optimizer.state_dict(),
            "aligner": self.aligner.state_dict(),
            "path_state": dict(self.path_state),
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "epoch": self.epoch,  # epochs completed
            "global_step": self.global_step,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "attempt": self.attempt,
            "run_id": self.run_id,
        }

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path, CHECKPOINT_FORMAT)
        load_weights(self.model, state["model"], path,
                     f"this run's {self.cfg.model.name}:{self.cfg.model.preset} model (was the run started with "
                     "another model? resume with its config, or use a new output folder)")
        load_tables(self.model, state.get("tables", {}))
        self.optimizer.load_state_dict(state["optimizer"])
        self.aligner.load_state_dict(state["aligner"])
        self.path_state.clear()
        self.path_state.update(state.get("path_state", {}))  # absent in checkpoints from before augment.paths
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best = [tuple(b) for b in state["best"]]
        self.bad_epochs = int(state["bad_epochs"])
        self.history = list(state["history"])
        self.attempt = int(state["attempt"]) + 1
        self.run_id = self.run_id or state["run_id"]
        if self.is_main:
            self._adopt_epoch_files(path.parent)
            print(f"[dpda] resumed from {path} after epoch {self.epoch} (attempt {self.attempt})", flush=True)

    def _adopt_epoch_files(self, source: Path) -> None:
        """Make the checkpoint folder hold exactly the n best epoch files of the restored state:
        copy them from `source` (a restored storage checkpoint, an earlier run dir) when they
        are elsewhere, and drop any other epoch file (a prune interrupted by a crash)."""
        wanted = {epoch_file(e) for _, e in self.best}
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        if source.resolve() != self.ckpt_dir.resolve():
            for name in wanted:
                if (source / name).exists() and not (self.ckpt_dir / name).exists():
                    shutil.copy2(source / name, self.ckpt_dir / name)
        for path in self.ckpt_dir.iterdir():
            if is_epoch_file(path.name) and path.name not in wanted:
                path.unlink()

    def _find_resume(self) -> Path | None:
        if self.resume_from is not None:
            candidate = self.resume_from / LAST if self.resume_from.is_dir() else self.resume_from
            return candidate if candidate.exists() else None
        last = self.ckpt_dir / LAST
        return last if last.exists() else None

    # ---------------------------------------------------------------- training
    def _augment(self, wave: torch.Tensor, aug: list[torch.Tensor] | None,
                 generators: list[torch.Generator]) -> list[torch.Tensor]:
        """One augmented batch per path: the loader's (`data.augment_before_crop`; their masks
        came with them), else each path's pipeline on the device with its own generator, keeping
        the batch's applied-transforms mask (each path's bits after the earlier paths' leaves)."""
        if aug is not None:
            return aug
        out, masks = [], []
        for augmenter, gen in zip(self.augmenters, generators):
            batch, bits = augmenter.augment(wave, gen)
            out.append(batch)
            masks.append(bits)
        self.augment_mask = self._joined_masks(masks)
        return out

    def _path_generators(self, gen: torch.Generator, epoch: int, rank: int) -> list[torch.Generator]:
        """The epoch's generator for each augmented path: the first path draws from `gen` (so one
        path draws as before paths existed), path k > 0 from its own stream."""
        seeds = [stream_seed(self.cfg.seed, epoch, rank, k) for k in range(1, len(self.augmenters))]
        return [gen, *(torch.Generator(device=self.device).manual_seed(s) for s in seeds)]

    def _joined_masks(self, masks: list[torch.Tensor]) -> torch.Tensor:
        """One applied-transforms mask over all paths' leaves from one mask per path: path k's
        bits after the earlier paths' leaves (as `augment_leaves` lists them)."""
        out, shift = masks[0], 0
        for augmenter, mask in zip(self.augmenters, masks[1:]):
            shift += len(augmenter.leaves)
            out = out | mask << shift
        return out

    @property
    def _n_leaves(self) -> int:
        return sum(len(a.leaves) for a in self.augmenters)

    def _applied(self) -> AppliedTransforms | None:
        """The last batch's applied-transforms tally for telemetry (on the device; it reaches the
        host in the step's one transfer): empty without an augmented path, None when unknown."""
        if self.cfg.augment.mode == "none":
            return AppliedTransforms.empty(self.device)
        if self.augment_mask is None:
            return None
        return tally(self.augment_mask, self._n_leaves)

    def _train_epoch(self, epoch: int, telemetry) -> tuple[dict[str, float], EpochTally]:
        """Run one epoch; its metrics, and the tally of its steps that the telemetry's epoch row stores."""
        cfg = self.cfg
        self.model.train()
        self.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        # per-epoch seeds make an epoch-boundary resume reproduce the uninterrupted run exactly
        torch.manual_seed(cfg.seed * 1000 + epoch)
        rank = self.dist.rank if self.dist else 0
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 100_003 + epoch * 1009 + rank)
        gens = self._path_generators(gen, epoch, rank)
        tally = EpochTally()
        max_steps = cfg.optim.max_steps_per_epoch
        total = min(len(self.train_loader), max_steps or len(self.train_loader))
        iterator = track(itertools.islice(self.train_loader, total), total, f"epoch {epoch + 1}", "steps",
                         enabled=self.progress and self.is_main)
        lr = self.optimizer.param_groups[0]["lr"]
        for i, batch in enumerate(iterator):
            if max_steps is not None and i >= max_steps:
                break
            *waves, target, _ = batch  # (wave, target, index), or (wave, aug, mask, target, index)
            wave, aug, mask = [w.to(self.device, non_blocking=True) for w in waves] + [None] * (3 - len(waves))
            target = target.to(self.device, non_blocking=True)
            augs = None if aug is None else list(aug.unbind(1)) if aug.dim() == 3 else [aug]  # (B, K, T): K paths
            if mask is not None and mask.dim() == 2:  # (B, K): one mask per path
                mask = self._joined_masks(list(mask.unbind(1)))
            self.augment_mask = mask  # the loader's; the device pipeline sets its own in the step
            host = self.train_step(wave, augs, target, gens).to_host(self._applied())
            tally.add(host)  # one device-to-host transfer per step, needed for telemetry
            telemetry.log_step(step=self.global_step, epoch=epoch + 1, stats=host, lr=lr)  # 1-based
            self.global_step += 1  # steps completed; also the 0-based index of the next step
        means = {k: float("nan") if v is None else v for k, v in tally.means().items()}
        metrics = {
            "train_loss": means["train_loss_orig"],
            "train_loss_aug": means["train_loss_aug"],
            "conflict_fraction": means["conflict_fraction"] if cfg.augment.mode == "dual" else float("nan"),
            "steps": tally.n,
            "skipped_steps": tally.n - tally.n_ok,
        }
        return metrics, tally

    def _sync_buffers(self) -> None:
        """Average BatchNorm running statistics over ranks once per epoch: parameters are equal on
        every rank by construction, running stats are not (each rank saw its own batches)."""
        if self.reduce_fn is None:
            return
        for buf in self.model.buffers():
            if buf.is_floating_point():
                self.reduce_fn(buf)

    def _evaluate_dev(self, interval: bool = False) -> dict[str, float]:
        """Dev loss, EER and threshold, and the ASVspoof 5 metrics (`dev_min_dcf`, `dev_act_dcf`,
        `dev_cllr`: a search may optimise any of them, dpda.train.trial_result); with `interval`
        also the EER's 95% bootstrap interval (`dev_eer_low`, `dev_eer_high`), which the saved
        model's summary reports."""
        result = score_manifest(
            self.model, self.dev_manifest, length=self.cfg.scoring_length,
            batch_size=max(self.cfg.optim.batch_size * 2, 8), device=self.device,
            num_workers=self.cfg.data.num_workers, loss_fn=self.loss_fn, score=self.cfg.score_kind,
            loss_definition=self.cfg.eval.dev_loss,
        )
        target = self.dev_manifest["target"].to_numpy()
        bona, spoof = result.scores[target == 1], result.scores[target == 0]
        eer, threshold = compute_eer(bona, spoof)
        out = {"dev_loss": result.loss, "dev_eer": float(eer), "dev_threshold": float(threshold)}
        out.update({dev_key(m): v for m, v in metric_values(bona, spoof, NEW_METRICS).items()})
        for i, rows in enumerate(self.dev_entries):  # each corpus of data.dev on its own (dev[i])
            part = metric_values(result.scores[rows & (target == 1)], result.scores[rows & (target == 0)], ENTRY_METRICS)
            out.update({dev_key(m, entry_set(i)): v for m, v in part.items()})
        if interval:
            out["dev_eer_low"], out["dev_eer_high"] = eer_interval(bona, spoof, draws=DEFAULT_DRAWS)
        return out

    def _keep_best(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Track the n best epochs by the selection metric; returns True if this epoch improved.
        Rank 0 saves this epoch's weights if it is among them and deletes the dropped ones."""
        key = self.cfg.checkpoint.select_by
        value = metrics[key]
        improved = not self.best or value < self.best[0][0]
        ranked = sorted(self.best + [(value, epoch)])
        self.best, dropped = ranked[: self.cfg.checkpoint.average_best], ranked[self.cfg.checkpoint.average_best:]
        if self.is_main:  # only rank 0 owns checkpoint files; every rank tracks the same list
            for _, gone in dropped:
                (self.ckpt_dir / epoch_file(gone)).unlink(missing_ok=True)
            if any(e == epoch for _, e in self.best):
                save_checkpoint({"format": MODEL_FORMAT, "model": self.model.state_dict(),
                                 "tables": table_state(self.model, self.cfg.optim.params)},
                                self.ckpt_dir / epoch_file(epoch))
        return improved

    def fit(self) -> dict[str, Any]:
        """Train until early stopping or the epoch limit; write the averaged model `model.pt`.
        Rank 0 holds the run dir's lock meanwhile: a second run there fails in one line. Corpora,
        model and config are checked first, so a run that cannot start writes nothing."""
        self._build()
        lock = RunDirLock(self.run_dir).acquire() if self.is_main else None
        try:
            return self._fit()
        finally:
            if lock is not None:
                lock.release()

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg
        self.epoch, self.global_step, self.best, self.bad_epochs, self.history, self.attempt = 0, 0, [], 0, [], 0
        resume = self._find_resume()
        if resume is not None:
            self._restore(resume)
        # fixed before the first telemetry row, so a rerun after a crash before any checkpoint
        # supersedes the crashed start's rows instead of adding a second run
        self.run_id = self.run_id or persistent_run_id(self.run_dir, create=self.is_main) or uuid.uuid4().hex[:12]
        if self.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", cfg.to_dict())
        telemetry = self._open_telemetry()
        start = time.time()
        last_report: dict[str, Any] = {"epoch": self.epoch}
        try:
            while self.epoch < cfg.optim.max_epochs and self.bad_epochs < cfg.optim.patience:
                epoch = self.epoch
                t0 = time.time()
                train_metrics, tally = self._train_epoch(epoch, telemetry)
                self._sync_buffers()
                dev_metrics = self._evaluate_dev()
                improved = self._keep_best(epoch, dev_metrics)
                self.bad_epochs = 0 if improved else self.bad_epochs + 1
                best_eer_epoch = min(self.history + [{"epoch": epoch, **dev_metrics}], key=lambda h: h["dev_eer"])
                metrics = {
                    "epoch": epoch + 1,
                    **train_metrics,
                    **dev_metrics,
                    "best_dev_eer": best_eer_epoch["dev_eer"],
                    "epochs_to_best": best_eer_epoch["epoch"] + 1,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "epoch_time_s": time.time() - t0,
                    "global_step": self.global_step,
                }
                self.history.append({"epoch": epoch, **dev_metrics, **train_metrics})
                self.epoch = epoch + 1
                telemetry.log_epoch(
                    epoch + 1, self.global_step - 1, tally=tally, dev_loss=dev_metrics["dev_loss"],
                    dev_eer=dev_metrics["dev_eer"], lr=metrics["lr"],
                    best_dev_eer=metrics["best_dev_eer"], epochs_to_best=metrics["epochs_to_best"],
                )
                if self.is_main:
                    save_checkpoint(self._state(), self.ckpt_dir / LAST)
                    self._print_epoch(metrics)
                last_report = epoch_report(metrics, self.history, self.best)
                if self.report_fn is not None:
                    self.report_fn(last_report, self._update(epoch) if self.is_main else None)
        finally:
            telemetry.close()
        final = self._finish(time.time() - start)
        if self.report_fn is not None:  # the saved model's own dev metrics: the run's result
            self.report_fn(final_report(last_report, final), None)
        return final

    def _update(self, epoch: int) -> CheckpointUpdate:
        """What this epoch changed, for the report: last.pt, and the epoch's weights when they
        entered the n best (a report uploads only these; the storage is pruned to `keep`)."""
        best = {e for _, e in self.best}
        names = [LAST] + ([epoch_file(epoch)] if epoch in best else [])
        return stage_update(self.ckpt_dir, names, keep={epoch_file(e) for e in best})

    def _finish(self, elapsed: float) -> dict[str, Any]:
        """Average the n best epochs' weights (as published) and evaluate the result on dev."""
        summary: dict[str, Any] = {"run_id": self.run_id, "epochs": self.epoch, "train_time_s": elapsed,
                                   **({"init_from": self.init_source} if self.init_source else {})}
        if not self.is_main:
            return summary
        paths = [self.ckpt_dir / epoch_file(e) for _, e in self.best]
        files = [load_checkpoint(p, MODEL_FORMAT) for p in paths if p.exists()]
        if files:
            formula = self.cfg.checkpoint.average_formula
            self.model.load_state_dict(average_state_dicts([f["model"] for f in files], formula))
            tables = [f.get("tables", {}) for f in files]
            if tables[0]:  # drifted frozen tables (optim.params: published), averaged like the weights
                load_tables(self.model, average_state_dicts(tables, formula))
        dev = self._evaluate_dev(interval=True)
        model_file = self.run_dir / "model.pt"
        save_checkpoint(
            {
                "format": MODEL_FORMAT,
                "model": self.model.state_dict(),
                "tables": table_state(self.model, self.cfg.optim.params),
                "config": self.cfg.to_dict(),
                "averaged_epochs": [int(e) for _, e in self.best],
                "dev_threshold": dev["dev_threshold"],
                **({"init_from": self.init_source} if self.init_source else {}),
            },
            model_file,
        )
        summary.update({
            "averaged_epochs": [int(e) + 1 for _, e in self.best],
            # the saved (averaged) model's, what model.pt scores: the run's result (trial_result)
            **{f"final_{k}": v for k, v in dev.items() if is_dev_metric(k)},
            "final_dev_eer_low": dev["dev_eer_low"],
            "final_dev_eer_high": dev["dev_eer_high"],
            "best_dev_eer": min(h["dev_eer"] for h in self.history) if self.history else math.nan,
            "model": model_file.name,  # beside summary.json: a path that lasts wherever the run dir goes
        })
        if self.cfg.data.eval:
            from dpda.train.evaluation import evaluate_sets

            rows = evaluate_sets(model_file, self.cfg.data.eval, self.run_dir / RUN_EVAL_DIR,
                                 batch_size=max(self.cfg.optim.batch_size * 2, 8),
                                 num_workers=self.cfg.data.num_workers, device=str(self.device),
                                 check=self.cfg.data.check, interval_draws=DEFAULT_DRAWS)
            summary["eval_eer"] = {r["set"]: r["eer"] for r in rows}
        write_json(self.run_dir / RUN_SUMMARY, summary)
        print(f"[dpda] averaged epochs {summary['averaged_epochs']}: dev EER {100 * dev['dev_eer']:.2f}% "
              f"-> {model_file}", flush=True)
        return summary

    def _print_epoch(self, m: dict[str, Any]) -> None:
        conflict = "" if math.isnan(m["conflict_fraction"]) else f" conflict {100 * m['conflict_fraction']:.1f}%"
        print(
            f"[dpda] epoch {m['epoch']}: train loss {m['train_loss']:.4f}{conflict} | dev loss "
            f"{m['dev_loss']:.4f} EER {100 * m['dev_eer']:.2f}% (best {100 * m['best_dev_eer']:.2f}%) "
            f"| {m['epoch_time_s']:.1f}s",
            flush=True,
        )

    def _open_telemetry(self) -> TelemetryWriter | NullTelemetryWriter:
        """Rank 0 with telemetry enabled writes; everyone else gets the no-op writer."""
        if not (self.cfg.telemetry.enabled and self.is_main):
            return NullTelemetryWriter()

        # The telemetry attempt counts every start, also those that died before a checkpoint:
        # their rows are superseded from the step this start runs first.
        attempt = next_attempt(self.run_dir)
        return TelemetryWriter(
            self.run_dir,
            run_id=self.run_id,
            trial_id=self.trial_id,
            attempt=attempt,
            resumed_from_step=self.global_step if attempt > 0 else None,
            layer_names=self.layer_names,
            world_size=self.dist.world_size if self.dist else 1,
            # the rule that aligns the step: none without a dual path (the align section is unused)
            rule=self.cfg.align.rule if self.cfg.augment.mode == "dual" else "none",
            augment_mode=self.cfg.augment.mode,
            strength=self.cfg.align.strength,
            rawboost_algo=self.cfg.augment.rawboost_algo,
            config=self.cfg.to_dict(),
            flush_every=self.cfg.telemetry.flush_every,
            augment_leaves=[] if self.cfg.augment.mode == "none" else [
                label for a in self.augmenters for label in a.leaf_labels],
            paths=self.path_names,
        )


def seed_everything(seed: int) -> None:
    """Seed numpy and torch for code outside the explicit generators (model init)."""
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
