"""The trainer: ``repgls.train(config) -> run_dir`` and the :class:`Trainer` loop behind it.

One loop for one GPU, many GPUs and many nodes (PyTorch DDP under ``torchrun``). Design choices, and why:

* **Exact resume, mid-epoch.** An epoch's sample order is a pure function of (seed, epoch, rank) and each
  sample's augmentation RNG of (seed, epoch, global position) (:mod:`repgls.training.data`). A checkpoint
  stores the position in the epoch, the optimiser / scheduler / EMA / loss state and every RNG state, so a
  run killed mid-epoch and resumed ends with the same weights.
* **Atomic checkpoints** (:mod:`repgls.training.checkpoint`): a crash leaves the old or the new one.
* **Only rank 0 writes**; validation predictions are gathered from all ranks (each rank predicts a shard)
  and de-duplicated by dataset position before computing AUCs (:mod:`repgls.training.validation`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from repgls.config import Config, ConfigError, resolve_config
from repgls.progress import progress_bar, stderr_console
from repgls.training.checkpoint import recover, save_checkpoint
from repgls.training.data import build_datasets, build_loaders, check_data_source, check_label_policy
from repgls.training.distributed import DistContext, rng_state, seed_all, set_rng_state, setup_distributed
from repgls.training.logs import MetricsLog
from repgls.training.optim import make_optimizer, make_scheduler
from repgls.training.run_folder import check_run_folder, prepare_run_folder
from repgls.training.validation import (
    ForwardAll,
    gather_predictions,
    predict_loader,
    val_metrics,
    write_val_predictions,
)

__all__ = ["Trainer", "train"]

_TARGET_KEYS = ("y", "r", "mask")


def _say(msg: str, enabled: bool) -> None:
    if enabled:
        stderr_console().print(msg)


class Trainer:
    """One training run of one process: data, model, optimiser, state, and the loop (:meth:`fit`).

    Built by :func:`train`; every process of a DDP run builds its own. ``step`` counts optimiser steps,
    ``epoch`` / ``batch_in_epoch`` the position in the data (what a checkpoint restores).
    """

    def __init__(self, cfg: Config, dd: DistContext, resuming: bool, train_ds: Dataset | None = None,
                 val_ds: Dataset | None = None, classes: Sequence[str] | None = None) -> None:
        self.cfg, self.dd, self.resuming = cfg, dd, resuming
        self.device = dd.device
        self.cuda = self.device.type == "cuda"
        self.run_dir = Path(cfg.output.run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        if train_ds is None and val_ds is None:
            check_data_source(cfg)  # a bad data section stops the run before any work
        if dd.main:
            check_run_folder(cfg, resuming)  # writable, not another run's: checked, nothing written yet
        self._setup_determinism()
        self._setup_data(train_ds, val_ds, classes)
        self._setup_model()
        if dd.main:  # only now, set-up done and validated: a start that fails leaves no folder behind
            prepare_run_folder(cfg, resuming)
        if dd.enabled:
            dist.barrier()
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best: dict[str, Any] = {"mean_auc": -math.inf, "epoch": None, "step": None}
        self.last_val_step: int | None = None
        self._rng_to_restore: dict[str, Any] | None = None
        keep_records = self._restore() if resuming else None
        if not resuming:
            seed_all(cfg.train.seed + 1_000_003 * dd.rank)  # per-rank stream for dropout etc.
        self.log = MetricsLog(self.run_dir, dd.main, keep_records, self.step if resuming else None)

    # ------------------------------------------------------------------------------------------ set-up
    def _setup_determinism(self) -> None:
        tc = self.cfg.train
        seed_all(tc.seed)
        if tc.deterministic:
            if self.cuda:  # cuBLAS needs a fixed workspace; the fused attention kernels' backward is not
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic: use the math one
                torch.backends.cuda.enable_flash_sdp(False)
                torch.backends.cuda.enable_mem_efficient_sdp(False)
                torch.backends.cuda.enable_cudnn_sdp(False)
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.cuda:
            torch.backends.cudnn.benchmark = True
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def _setup_data(self, train_ds: Dataset | None, val_ds: Dataset | None, classes: Sequence[str] | None) -> None:
        if train_ds is None or val_ds is None:
            if train_ds is not None or val_ds is not None:
                raise ValueError("train(): give both train_dataset and val_dataset, or neither")
            train_ds, val_ds, classes = build_datasets(self.cfg, self.cfg.train.seed)
        first = train_ds[0]
        self.num_classes = int(first["y"].shape[-1])
        self.img_size = int(first["image"].shape[-1])
        dc = self.cfg.data
        if dc.image_size is not None and dc.image_size != self.img_size:
            raise ConfigError(f"config key 'data.image_size': {dc.image_size} but the images are {self.img_size} px")
        if classes is None:
            classes = tuple(getattr(train_ds, "classes", None) or [f"class_{k}" for k in range(self.num_classes)])
        self.classes = tuple(classes)
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{len(self.classes)} class names for {self.num_classes} label columns")
        self.loaders = build_loaders(self.cfg, train_ds, val_ds, self.dd)

    def _setup_model(self) -> None:
        from repgls.losses import create_loss
        from repgls.models import create_model

        cfg, tc, oc = self.cfg, self.cfg.train, self.cfg.optim
        self.model = create_model(cfg.model.name, num_classes=self.num_classes, in_chans=cfg.model.in_chans,
                                  pretrained=cfg.model.pretrained, img_size=self.img_size, **cfg.model.kwargs)
        self.channels_last = tc.channels_last and self.cuda
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
            for p in self.model.parameters():  # a 1-channel stem's kernel: channels_last strides would make its
                if p.ndim == 4 and p.shape[1] == 1:  # gradient's layout differ (DDP then copies every step)
                    p.data = p.data.contiguous()
        self.loss_fn = create_loss(cfg.loss.name, class_counts=self.loaders.class_counts,
                                   num_samples=self.loaders.num_train, **cfg.loss.kwargs)
        check_label_policy(cfg, self.loss_fn)
        if isinstance(self.loss_fn, nn.Module):
            self.loss_fn.to(self.device)
        self.ema = None
        if oc.ema:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=oc.ema_decay)
        self.optimizer = make_optimizer(cfg, self.model)
        total = self.loaders.steps_per_epoch * tc.epochs
        self.total_steps = min(total, tc.max_steps) if tc.max_steps is not None else total
        self.scheduler = make_scheduler(cfg, self.optimizer, self.total_steps)
        fwd: nn.Module = ForwardAll(self.model)
        if self.dd.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            fwd = DDP(fwd, device_ids=[self.device.index] if self.cuda else None)
        if tc.compile:  # compile the DDP module (not the reverse): gradient all-reduce overlaps the backward
            fwd = torch.compile(fwd)  # type: ignore[assignment]
        self.fwd = fwd
        self.use_bf16 = tc.bf16 and self.cuda

    def autocast(self) -> Any:
        """bf16 autocast on CUDA when ``train.bf16``; a no-op context otherwise."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.use_bf16 else contextlib.nullcontext()

    # ------------------------------------------------------------------------------------ checkpoints
    def _restore(self) -> int:
        """Load ``checkpoints/last`` (weights, optimiser, scheduler, EMA, loss, position, RNG); returns the
        number of metrics.jsonl records to keep."""
        from safetensors.torch import load_file

        ckpt_dir, dd = self.ckpt_dir, self.dd
        recover(ckpt_dir, "last")
        state = torch.load(ckpt_dir / "last.state.pt", map_location="cpu", weights_only=False)
        weights = load_file(str(ckpt_dir / "last.safetensors"))
        if int(state["step"]) != int(json.loads((ckpt_dir / "last.json").read_text())["step"]):
            raise RuntimeError(f"{ckpt_dir}: last.state.pt and last.json disagree on the step (corrupt checkpoint)")
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.module.load_state_dict(state["ema"])
        if state.get("loss") and isinstance(self.loss_fn, nn.Module):
            self.loss_fn.load_state_dict(state["loss"])
        self.step, self.epoch, self.batch_in_epoch = (int(state["step"]), int(state["epoch"]),
                                                      int(state["batch_in_epoch"]))
        self.best = state["best"]
        self.last_val_step = state.get("last_val_step")
        if int(state.get("world_size", dd.world)) != dd.world:
            _say(f"[yellow]warning:[/] resuming a {state['world_size']}-process run with {dd.world} processes: "
                 "the data order differs from the uninterrupted run", dd.main)
        rngs = state["rng"]
        self._rng_to_restore = rngs[dd.rank] if len(rngs) == dd.world else rngs[0]
        _say(f"resumed {self.run_dir} at epoch {self.epoch}, step {self.step} (batch {self.batch_in_epoch} of "
             f"{self.loaders.n_batches})", dd.main)
        return int(state["n_records"])

    def save_last(self) -> None:
        """Checkpoint ``last`` at the current position (every rank's RNG state; rank 0 writes)."""
        rngs = [rng_state()]
        if self.dd.enabled:
            gathered: list[Any] = [None] * self.dd.world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if not self.dd.main:
            return
        state = {
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "loss": self.loss_fn.state_dict() if isinstance(self.loss_fn, nn.Module) else None,
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "best": self.best,
            "rng": rngs, "world_size": self.dd.world, "n_records": self.log.n_records,
            "last_val_step": self.last_val_step, "config": self.cfg.to_dict(),
        }
        meta = {"tag": "last", "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "batches_per_epoch": self.loaders.n_batches, "best_mean_auc": self.best["mean_auc"],
                "world_size": self.dd.world, "time": time.time()}
        save_checkpoint(self.ckpt_dir, "last", self.model.state_dict(), state, meta)

    # ------------------------------------------------------------------------------------- validation
    def validate(self, epoch: int) -> None:
        """Score the val split; on a new best, checkpoint ``best`` and write predictions_val.parquet."""
        dd, oc = self.dd, self.cfg.optim
        eval_model = self.ema.module if (self.ema is not None and oc.ema_eval) else self.model
        local = predict_loader(eval_model, self.loaders.val, self.device, self.autocast, self.channels_last)
        pred = gather_predictions(local, dd)
        if dd.main:
            m = val_metrics(pred, self.classes)
            self.log.write({"kind": "val", "step": self.step, "epoch": epoch, "mean_auc": m["mean_auc"],
                            "n_classes_scored": m["n_classes_scored"], "auc": m["auc"], "time": time.time()})
            score = m["mean_auc"] if math.isfinite(m["mean_auc"]) else -math.inf
            is_best = self.best["epoch"] is None or score > self.best["mean_auc"]
            if is_best:
                self.best.update(mean_auc=score, epoch=epoch, step=self.step)
                meta = {"tag": "best", "step": self.step, "epoch": epoch, "mean_auc": m["mean_auc"],
                        "ema": eval_model is not self.model, "auc": m["auc"], "time": time.time()}
                save_checkpoint(self.ckpt_dir, "best", eval_model.state_dict(), None, meta)
                write_val_predictions(self.run_dir / "predictions_val.parquet", pred, self.loaders.val_ids,
                                      self.classes, {"epoch": epoch, "step": self.step, "mean_auc": m["mean_auc"]})
            _say(f"epoch {epoch} step {self.step}: val mean AUC {m['mean_auc']:.4f}"
                 f" ({m['n_classes_scored']} classes){' [best]' if is_best else ''}", True)
        if dd.enabled:
            obj = [self.best]
            dist.broadcast_object_list(obj, src=0)
            self.best.update(obj[0])
        self.last_val_step = self.step

    # ------------------------------------------------------------------------------------------- loop
    def _micro_step(self, batch: dict[str, Any], sync: bool) -> torch.Tensor:
        """Forward and backward of one micro-batch (gradients scaled by 1 / grad_accum); returns its loss."""
        x = batch["image"].to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        tgt = {k: batch[k].to(self.device, non_blocking=True) for k in _TARGET_KEYS}
        if "mentioned" in batch:
            tgt["mentioned"] = batch["mentioned"].to(self.device, non_blocking=True)
        no_sync = self.dd.enabled and not sync
        ctx = self.fwd.no_sync() if no_sync else contextlib.nullcontext()  # type: ignore[operator]
        with ctx:
            with self.autocast():
                out = self.fwd(x)
            out = {k: v.float() for k, v in out.items()}
            loss = self.loss_fn(out, tgt)
            if "rate" in out:  # keep the rate head in the graph for losses that ignore it (DDP)
                loss = loss + 0.0 * out["rate"].sum()
            (loss / self.cfg.optim.grad_accum).backward()
        return loss.detach()

    def _optimizer_step(self) -> torch.Tensor | None:
        """Clip, step the optimiser, scheduler and EMA; returns the grad norm (a device tensor: no sync) when
        clipping is on."""
        oc = self.cfg.optim
        grad_norm = None
        if oc.grad_clip is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), oc.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.model, step=self.step)
        return grad_norm

    def _log_train(self, loss_sum: torch.Tensor, n_micro: int, n_steps: int, seconds: float,
                   grad_norm: torch.Tensor | None) -> str:
        """Write a train record for the last window of steps (one device sync); returns the bar's info text."""
        mean_loss = loss_sum / max(n_micro, 1)
        if self.dd.enabled:
            dist.all_reduce(mean_loss)
            mean_loss = mean_loss / self.dd.world
        loss_val = float(mean_loss)  # syncs the device: the window's time is then exact
        img_per_step = self.cfg.data.batch_size * self.cfg.optim.grad_accum * self.dd.world
        ips = img_per_step * n_steps / seconds if seconds > 0 else float("nan")
        rec = {"kind": "train", "step": self.step, "epoch": self.epoch, "loss": loss_val,
               "lr": self.scheduler.get_last_lr()[0], "img_per_s": ips, "time": time.time()}
        if grad_norm is not None:
            rec["grad_norm"] = float(grad_norm)
        self.log.write(rec)
        return f"loss {loss_val:.4f}  {ips:,.0f} img/s"

    def _run_epoch(self, bar: Any) -> bool:
        """Train from the current position to the end of the epoch (or max_steps); True when max_steps is hit."""
        tc, accum, ld = self.cfg.train, self.cfg.optim.grad_accum, self.loaders
        if hasattr(self.loss_fn, "set_epoch"):
            self.loss_fn.set_epoch(self.epoch, tc.epochs)
        ld.batch_sampler.set_epoch(self.epoch, self.batch_in_epoch)
        bar.reset(f"epoch {self.epoch + 1}/{tc.epochs}", ld.steps_per_epoch, self.batch_in_epoch // accum)
        self.fwd.train()
        # window sums stay on the device; they are read (one sync) only at log steps
        loss_sum, n_micro, n_steps, t0 = torch.zeros((), device=self.device), 0, 0, time.perf_counter()
        micro, done = 0, False
        for batch in (iter(ld.train) if self.batch_in_epoch < ld.n_batches else iter(())):
            sync = micro == accum - 1
            loss_sum += self._micro_step(batch, sync)
            n_micro, micro, self.batch_in_epoch = n_micro + 1, micro + 1, self.batch_in_epoch + 1
            if not sync:
                continue
            micro = 0
            grad_norm = self._optimizer_step()
            n_steps += 1
            if self.step % tc.log_every == 0:
                bar.advance(info=self._log_train(loss_sum, n_micro, n_steps, time.perf_counter() - t0, grad_norm))
                loss_sum, n_micro, n_steps, t0 = torch.zeros((), device=self.device), 0, 0, time.perf_counter()
            else:
                bar.advance()
            done = tc.max_steps is not None and self.step >= tc.max_steps
            if tc.checkpoint_every and self.step % tc.checkpoint_every == 0 and self.batch_in_epoch < ld.n_batches:
                self.save_last()
            if done:
                break
        return done

    def fit(self) -> Path:
        """Train to ``train.epochs`` (or ``train.max_steps``), validating every ``eval_every`` epochs and at the
        end, checkpointing ``last`` after every epoch; returns the run folder."""
        tc = self.cfg.train
        if self._rng_to_restore is not None:
            set_rng_state(self._rng_to_restore)
        done = tc.max_steps is not None and self.step >= tc.max_steps
        try:
            with progress_bar("training", 0, enabled=None if (tc.progress and self.dd.main) else False) as bar:
                while self.epoch < tc.epochs and not done:
                    done = self._run_epoch(bar)
                    finished = self.batch_in_epoch >= self.loaders.n_batches
                    if finished and ((self.epoch + 1) % tc.eval_every == 0 or self.epoch + 1 == tc.epochs):
                        self.validate(self.epoch)
                    if finished:
                        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    self.save_last()
                if self.last_val_step != self.step:
                    self.validate(max(0, self.epoch - 1) if self.batch_in_epoch == 0 else self.epoch)
                    self.save_last()
        finally:
            self.log.close()
        if self.dd.enabled:
            dist.barrier()
        return self.run_dir


def train(
    config: Config | dict | str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    resume: str | os.PathLike | None = None,
    *,
    train_dataset: Dataset | None = None,
    val_dataset: Dataset | None = None,
    classes: Sequence[str] | None = None,
) -> Path:
    """Train a classifier and return its run folder.

    Args:
        config: a :class:`repgls.config.Config`, a nested dict, or a YAML path.
        overrides: ``["optim.lr=3e-4", "train.epochs=2"]`` (YAML-typed values).
        resume: a run folder; continues from ``checkpoints/last`` exactly (mid-epoch included) with the
            run's saved ``config.yaml`` (plus ``overrides``, e.g. ``train.epochs=20`` to extend it).
        train_dataset, val_dataset, classes: train on in-memory datasets instead of ``data.cache_dir`` /
            ``data.labels``; items are dicts ``{"image" [C,S,S], "y", "r", "mask" [K], "index"}``.

    Under ``torchrun`` every process calls this; the process group is initialised here from the environment
    (and destroyed at the end if it was initialised here).
    """
    cfg = resolve_config(config, overrides, resume)
    dd = setup_distributed(cfg.train.device)
    try:
        return Trainer(cfg, dd, resume is not None, train_dataset, val_dataset, classes).fit()
    finally:
        if dd.owns_group and dist.is_initialized():
            dist.destroy_process_group()

