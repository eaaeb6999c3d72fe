"""The LightningModule: it receives the decoder network (composition) and trains it.

Only ``task.net`` (a plain ``nn.Module``) is ever exported, so deployment needs no Lightning.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn
from torchmetrics import ConfusionMatrix

from .metrics import from_confusion

STAGES = ("train", "val", "test")
#: what checkpointing, early stopping and the plateau scheduler follow with ``trainer.checkpoint: best``
MONITOR = "val/balanced_accuracy"
#: the running mean of the validation loss over the last ``smoothing_epochs`` epochs (``trainer.checkpoint: smoothed``)
SMOOTHED = "val/loss_smoothed"


def has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, X: torch.Tensor, batch_size: int = 64) -> None:
    """Re-estimate every BatchNorm's running statistics as the exact average over ``X`` (the training windows,
    without augmentation) with the current weights, so the statistics the deployed model uses match its
    weights instead of lagging behind them (an exponential average of past, changing networks; Ioffe &
    Szegedy 2015, https://doi.org/10.48550/arXiv.1502.03167, section 3.1: population statistics after training)."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(X) == 0:
        return
    was_training = net.training
    momenta = [m.momentum for m in bns]
    net.eval()  # dropout off: the statistics of the network as it will run
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = the exact mean over the batches
        m.train()
    try:
        for i in range(0, len(X), batch_size):
            net(X[i : i + batch_size])
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        net.train(was_training)


class DecoderTask(pl.LightningModule):
    """Cross-entropy classification of windows with AdamW, a scheduler and per-stage metrics.

    Parameters
    ----------
    net : nn.Module
        The decoder (``models.build(...)``).
    n_classes : int
        Number of classes.
    lr, weight_decay : float
        AdamW settings.
    scheduler : {"cosine", "plateau", "step", "none"}
        Learning-rate schedule.
    max_epochs : int
        Length of the cosine schedule.
    class_weights : list of float or None
        Cross-entropy class weights.
    label_smoothing : float
        Cross-entropy label smoothing.
    augment : nn.Module or None
        Applied to every training batch (:class:`datasets.augment.BatchAugment`), on the batch's device.
    smoothing_epochs : int
        Window of the running mean of the validation loss logged as ``val/loss_smoothed``.
    recalibrate_batchnorm : bool
        Before every validation, re-estimate BatchNorm statistics on the training windows
        (:func:`recalibrate_batchnorm`), so every checkpoint holds statistics that match its weights.
    compile : bool
        Run the decoder's forward pass under ``torch.compile`` while fitting (:mod:`pipeline.compiling`; eager,
        with the reason in ``compile_status``, where it cannot compile).
    """

    def __init__(
        self,
        net: nn.Module,
        n_classes: int,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        scheduler: str = "cosine",
        max_epochs: int = 30,
        step_size: int = 10,
        gamma: float = 0.5,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        augment: nn.Module | None = None,
        smoothing_epochs: int = 10,
        recalibrate_batchnorm: bool = True,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["net", "augment"])
        self.net = net
        self._forward = None  # net's forward compiled (trainer.compile), a function: not a submodule
        #: "compiled", the reason compiling failed (then eager), or None when not asked
        self.compile_status: str | None = None
        self.augment = augment
        self._val_losses: list[float] = []
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
        # One confusion matrix per stage (torchmetrics sums it across DDP ranks); the metrics come from it through
        # pipeline.metrics, the one definition every report uses. Keys carry a "_" because nn.ModuleDict refuses
        # names of Module attributes such as "train". validate_args=False: predictions are argmax indices and
        # labels come from our DataModule, so per-step input checks would only cost time.
        self.confusion = nn.ModuleDict({f"{s}_": ConfusionMatrix("multiclass", num_classes=n_classes, validate_args=False)
                                        for s in STAGES})
        self.test_confusion: torch.Tensor | None = None
        self._monitors_read = True  # whether anything reads the logged monitor values (set when fitting starts)
        self.start_epoch = 0
        self._epoch: dict[str, list] = {s: [] for s in STAGES}
        #: the last epoch's metrics per stage, e.g. ``{"val": {"epoch": 3, "val/balanced_accuracy": 0.8, ...}}``
        self.epoch_metrics: dict[str, dict[str, float]] = {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_losses"] = list(self._val_losses)  # a resumed run smooths over the same history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._val_losses = list(checkpoint.get("val_losses", []))

    def on_fit_start(self) -> None:
        self._monitors_read = monitors_read(self.trainer, self.hparams.scheduler)

    def on_train_start(self) -> None:
        # after a resume Lightning has restored the loop: this is the first epoch this process trains
        self.start_epoch = self.current_epoch
        if self.hparams.compile and self._forward is None:
            from .compiling import compiled_forward

            dm = self.trainer.datamodule
            example = dm.model_windows("train")[: dm.batch_size].to(self.device)
            self._forward, reason = compiled_forward(self.net, example)
            self.compile_status = reason or "compiled"
            if reason:
                print(f"trainer.compile: torch.compile failed here ({reason}); training runs eager", flush=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_net(x)

    def _run_net(self, x: torch.Tensor) -> torch.Tensor:
        return (self._forward or self.net)(x)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self._run_net(x)
        loss = self.loss_fn(logits, y)
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"Loss is {loss.item()} at epoch {self.current_epoch}, {stage} batch {batch_idx}: training diverged "
                "(lower 'optim.lr', keep 'trainer.gradient_clip_val', check the data for NaN or huge values)."
            )
        # Keep the step lean (this loop must run within 10% of a hand-written one): stash predictions and the
        # summed loss, and update the metrics once per epoch; torchmetrics syncs them across DDP ranks.
        self._epoch[stage].append((logits.detach().argmax(dim=1), y, loss.detach() * len(y)))
        return loss

    def training_step(self, batch, batch_idx):
        if self.augment is None:
            return self._shared_step(batch, batch_idx, "train")
        x, y, y_partner, weight = self.augment(*batch)
        if y_partner is None:
            return self._shared_step((x, y), batch_idx, "train")
        logits = self._run_net(x)  # mixup: the loss mixes the two labels with the windows' weights
        loss = weight * self.loss_fn(logits, y) + (1 - weight) * self.loss_fn(logits, y_partner)
        self._epoch["train"].append((logits.detach().argmax(dim=1), y, loss.detach() * len(y)))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if hasattr(self.net, "apply_constraints"):  # e.g. EEGNet's max-norm, after the optimiser step
            self.net.apply_constraints()

    def on_validation_epoch_start(self) -> None:
        if self.hparams.recalibrate_batchnorm and self.trainer.state.fn == TrainerFn.FITTING and has_batchnorm(self.net):
            X = self.trainer.datamodule.model_windows("train")
            recalibrate_batchnorm(self.net, X.to(self.device), self.trainer.datamodule.batch_size)

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, batch_idx, "test")

    def _log_epoch(self, stage: str) -> None:
        stash, self._epoch[stage] = self._epoch[stage], []
        if not stash and self.trainer.world_size == 1:
            return
        if stash:
            preds = torch.cat([p for p, _, _ in stash])
            target = torch.cat([t for _, t, _ in stash])
            loss_sum = torch.stack([loss for _, _, loss in stash]).sum()
        else:  # a DDP rank with no evaluation windows (they are never padded) still joins the reductions
            preds = target = torch.zeros(0, dtype=torch.long, device=self.device)
            loss_sum = torch.zeros((), device=self.device)
        matrix = self.confusion[f"{stage}_"]
        matrix.update(preds, target)
        counts = matrix.compute().cpu()  # summed over DDP ranks
        matrix.reset()
        if stage == "test":
            self.test_confusion = counts
        values = {f"{stage}/{k}": torch.tensor(v) for k, v in from_confusion(counts.numpy(), digits=None).items()}
        total = torch.tensor([loss_sum.item(), float(len(target))])
        if self.trainer.world_size > 1:
            total = self.trainer.strategy.reduce(total.to(self.device), reduce_op="sum").cpu()
        values[f"{stage}/loss"] = total[0] / total[1]
        # already reduced across ranks (torchmetrics and the sum above): logged as is
        self.epoch_metrics[stage] = {"epoch": self.current_epoch, **{k: float(v) for k, v in values.items()}}
        if self.trainer.state.fn != TrainerFn.FITTING:
            # test() returns and logs its metrics (logger=None: to the loggers there are); a validation of the
            # best checkpoint after training is not another point of the per-epoch curves (see epoch_metrics)
            self.log_dict(values, logger=None if stage == "test" else False, rank_zero_only=False, sync_dist=False)
            return
        # While fitting, each self.log costs ~0.5 ms per key per epoch (Lightning moves its whole result record
        # every call): only the monitored metric goes through it, and the loggers get one row per stage directly.
        if stage == "val":
            self._val_losses.append(float(values["val/loss"]))
            window = self._val_losses[-self.hparams.smoothing_epochs :]
            values[SMOOTHED] = self.epoch_metrics[stage][SMOOTHED] = sum(window) / len(window)
            if self._monitors_read:  # for the callbacks and scheduler that read them (each self.log ~1 ms)
                self.log(MONITOR, values[MONITOR], prog_bar=True, logger=False, rank_zero_only=False, sync_dist=False)
                self.log(SMOOTHED, values[SMOOTHED], logger=False, rank_zero_only=False, sync_dist=False)
        for logger in self.loggers:
            logger.log_metrics(self.epoch_metrics[stage], step=self.global_step)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        opt = adamw(self.net.parameters(), hp.lr, hp.weight_decay, fused_ok=self._fused_ok())
        if hp.scheduler == "none":
            return opt
        if hp.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, hp.max_epochs))
            return {"optimizer": opt, "lr_scheduler": sched}
        if hp.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.step_size, gamma=hp.gamma)
            return {"optimizer": opt, "lr_scheduler": sched}
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=hp.gamma, patience=3)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": MONITOR}}


    def _fused_ok(self) -> bool:
        # float16 mixed precision unscales gradients in Lightning's scaler, which a fused optimiser refuses to
        # combine with gradient clipping; every other precision (32, bf16-mixed) takes the fused kernel
        trainer = self._trainer
        return trainer is None or "16-mixed" != str(trainer.precision)


def monitors_read(trainer: pl.Trainer, scheduler: str) -> bool:
    """Whether a callback or the scheduler reads the logged validation values while fitting: a monitored
    checkpoint, early stopping, the plateau scheduler or a progress bar (which shows the monitored metric)."""
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar

    if scheduler == "plateau":
        return True
    for callback in trainer.callbacks:
        if isinstance(callback, (EarlyStopping, ProgressBar)):
            return True
        if isinstance(callback, ModelCheckpoint) and callback.monitor is not None:
            return True
        if type(callback).__module__.split(".")[0] not in ("pipeline", "pytorch_lightning", "lightning"):
            return True  # a callback of someone else's may read them
    return False


def adamw(params, lr: float, weight_decay: float, fused_ok: bool = True) -> torch.optim.Optimizer:
    """AdamW with the fused kernel (one kernel for every parameter's update: ~4x cheaper steps on CPU for these
    small decoders, the same update rule) where the device supports it, the default implementation otherwise."""
    params = list(params)
    if fused_ok:
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, ValueError):  # a device type or dtype without the fused kernel
            pass
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


class FreezeSchedule(pl.Callback):
    """Fine-tuning (``bmi finetune``): only the classifier trains for the first ``frozen`` epochs, then every
    layer. While frozen, the other layers are in eval mode (no dropout, BatchNorm statistics not moved by the
    training batches); with ``recalibrate_batchnorm`` the statistics are re-estimated on the patient's training
    windows before every validation, so the checkpoints carry the patient's statistics."""

    def __init__(self, frozen: int):
        super().__init__()
        self.frozen = frozen

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        net = pl_module.net
        freeze = trainer.current_epoch < self.frozen
        for name, param in net.named_parameters():
            param.requires_grad_(not freeze or name.startswith("classifier."))
        if freeze:
            head = set(map(id, net.classifier.modules()))
            for module in net.modules():
                if module is not net and id(module) not in head:
                    module.eval()
