"""`TrainingRun`: everything a training script shares, once.

A script reads top to bottom: data -> models -> loss -> optimizer -> loop, and the run object supplies the parts that
are the same in every script::

    run = TrainingRun(args, "dreambooth")                 # accelerator, seed, dtype, output folder
    dataloader = run.dataloader(dataset, collate_fn)      # order depends only on (seed, epoch); sharded
    params = run.trainable(unet.parameters())             # materialised list, kept in fp32
    unet = run.prepare(unet)                              # optimizer, LR schedule, EMA, resume
    for batch in run.batches(dataloader):                 # epochs, mid-epoch resume, checkpoints, validation
        with run.accumulate(unet):
            run.backward(loss_of(batch))                  # backward, clip, optimizer and LR step
    images = run.final_validation()
    ...save...
    run.end()                                             # --push_to_hub, trackers

Exact resume. The state after optimizer step k is a function of (weights, optimizer, LR schedule, RNG states, data
order). Checkpoints hold the first four (``accelerator.save_state``). The data order is a permutation drawn from
(seed, epoch) alone (torch's ``DistributedSampler``, which also shards it across processes), and the dataloader has
its own generator, so starting an epoch draws nothing from the global RNG. The dataloader is deliberately not passed
through ``accelerator.prepare``: accelerate's loader fetches one batch ahead, so random augmentations of the *next*
batch would already be drawn when a checkpoint saves the RNG state. Resuming skips the micro-batches already
consumed (``skip_first_batches``) and continues with identical state. Gradient accumulation counts micro-batches
across epoch ends (an update is every ``gradient_accumulation_steps`` micro-batches).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.data_loader import skip_first_batches
from accelerate.utils import DistributedType, ProjectConfiguration, send_to_device, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from .atomic_folder import staged_folder
from .checkpointing import TrainingProgress, load_checkpoint, save_checkpoint
from .gradients import ContiguousGradients
from .validation import save_validation_images

logger = logging.getLogger(__name__)


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide state, so that the next ``Accelerator`` of this process (another in-process
    training run: the demo's, a test's) may use other settings."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


CPU_LAUNCH = "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N training/<script>.py ..."


def warn_if_launched_short(accelerator: Accelerator) -> None:
    """Warn when ``accelerate launch --num_processes N`` (N > 1) came up as one process: accelerate then sets the
    rendezvous address but no world size, and each process would train alone (``--cpu --num_processes N`` does this)."""
    if os.environ.get("MASTER_ADDR") and "WORLD_SIZE" not in os.environ and accelerator.num_processes == 1:
        logger.warning("accelerate launch was asked for several processes, but this run is a single one (world size "
                       "1): it trains alone. On CPUs launch with `%s`; on GPUs `accelerate launch --multi_gpu "
                       "--num_processes N ...`.", CPU_LAUNCH)


def weight_dtype(accelerator: Accelerator) -> torch.dtype:
    """The dtype for frozen weights, decided by ``accelerator.mixed_precision`` (flag, env or accelerate config)."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


class TrainingRun:
    """Accelerator, dtype, optimizer, LR schedule, EMA, checkpoints, validation and the step loop of one run."""

    def __init__(self, args: argparse.Namespace, name: str) -> None:
        self.args, self.name = args, name
        self.accelerator = Accelerator(
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            log_with=None if args.report_to == "none" else args.report_to,
            project_config=ProjectConfiguration(
                project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
            ),
        )
        warn_if_launched_short(self.accelerator)
        self.seed = 0 if args.seed is None else args.seed
        if args.seed is not None:
            # different noise on each process, identical data order (the sampler has its own seed)
            set_seed(args.seed, device_specific=True)
        if args.allow_tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
        self.weight_dtype = weight_dtype(self.accelerator)
        self.progress = TrainingProgress()
        self.accelerator.register_for_checkpointing(self.progress)
        if self.accelerator.is_main_process:
            os.makedirs(args.output_dir, exist_ok=True)
        self.params: list[torch.nn.Parameter] = []
        self.gradients: ContiguousGradients | None = None
        self.ema: EMAModel | None = None
        # set by a script that has something to validate (e.g. a --validation_prompt): returns a list of PIL images
        self.validation: Callable[[], list[Any]] | None = None
        self.validation_images: list[Any] = []
        self._dataloader: DataLoader | None = None
        self._last_loss = float("nan")

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def global_step(self) -> int:
        return self.progress.global_step

    def accumulate(self, *models: torch.nn.Module) -> contextlib.AbstractContextManager:
        return self.accelerator.accumulate(*models)

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.accelerator.unwrap_model(model)

    # -- data ----------------------------------------------------------------------------------------------------
    def dataloader(self, dataset: Dataset, collate_fn: Callable | None = None, shuffle: bool = True) -> DataLoader:
        """This process's dataloader over ``dataset``: batches of ``--train_batch_size``, order drawn from
        (seed, epoch), every process getting the same number of batches (the shortest shard is padded)."""
        accelerator = self.accelerator
        sampler = DistributedSampler(dataset, num_replicas=accelerator.num_processes,
                                     rank=accelerator.process_index, shuffle=shuffle, seed=self.seed)
        self._dataloader = DataLoader(
            dataset,
            batch_size=self.args.train_batch_size,
            sampler=sampler,
            collate_fn=collate_fn,
            num_workers=self.args.dataloader_num_workers,
            # iterator seeds come from here, not from the global RNG that the loss draws noise from
            generator=torch.Generator().manual_seed(self.seed),
        )
        return self._dataloader

    # -- parameters, optimizer, schedule -------------------------------------------------------------------------
    def trainable(self, params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
        """Materialise the trainable parameters (a generator would be spent by the optimizer, leaving gradient
        clipping a silent no-op) and keep them in fp32 whatever ``--mixed_precision`` is: fp16 master weights lose
        small updates and fp16 gradients cannot be unscaled."""
        params = [p for p in params if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameters: every parameter passed to trainable() has requires_grad=False")
        for p in params:
            if p.dtype != torch.float32:
                p.data = p.data.float()
        self.params.extend(params)
        return params

    def _optimizer(self) -> torch.optim.Optimizer:
        args = self.args
        lr = args.learning_rate
        if args.scale_lr:
            lr *= args.gradient_accumulation_steps * args.train_batch_size * self.accelerator.num_processes
        # the fused kernel: one pass over all parameters instead of a Python loop of per-tensor ops (3x faster on the
        # CPU for the tiny SD UNet, ~7% of a DreamBooth step); trainables are fp32, so it always applies there
        fused = all(p.device.type in ("cpu", "cuda") for p in self.params)
        return torch.optim.AdamW(
            self.params, lr=lr, betas=(args.adam_beta1, args.adam_beta2),
            weight_decay=args.adam_weight_decay, eps=args.adam_epsilon, fused=fused or None,
        )

    def prepare(self, *models: torch.nn.Module) -> Any:
        """``accelerator.prepare`` the trained models (DDP, autocast), then build the optimizer over the `trainable`
        parameters, the LR schedule, EMA and trackers, and resume from ``--resume_from_checkpoint``. Returns the
        prepared models in the order given (one model: the model itself)."""
        args, accelerator = self.args, self.accelerator
        if not self.params or self._dataloader is None:
            raise ValueError("call run.dataloader(...) and run.trainable(parameters) before run.prepare(...)")
        prepared = accelerator.prepare(*models)
        self.batches_per_epoch = len(self._dataloader)
        updates_per_epoch = math.ceil(self.batches_per_epoch / args.gradient_accumulation_steps)
        self.max_train_steps = args.max_train_steps or args.num_train_epochs * updates_per_epoch
        self.num_train_epochs = math.ceil(
            self.max_train_steps * args.gradient_accumulation_steps / self.batches_per_epoch
        )

        self.optimizer = accelerator.prepare(self._optimizer())
        # one gradient buffer (one clipping and one zeroing kernel per step), unless a sharding backend owns the
        # gradients or the parameters are spread over devices
        if (accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED)
                and ContiguousGradients.fits(self.params)):
            self.gradients = ContiguousGradients(self.params)
        # the prepared scheduler steps once per process per update, hence the factors (as in the diffusers examples)
        self.lr_scheduler = accelerator.prepare(get_scheduler(
            args.lr_scheduler, optimizer=self.optimizer,
            num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=self.max_train_steps * accelerator.num_processes,
            num_cycles=args.lr_num_cycles, power=args.lr_power,
        ))
        if args.use_ema:
            self.ema = EMAModel(self.params, decay=args.ema_decay)
            self.ema.to(accelerator.device)
            accelerator.register_for_checkpointing(self.ema)
        if args.report_to != "none":
            config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
            accelerator.init_trackers(self.name, config=config)
        if args.resume_from_checkpoint:
            logger.info("resuming from %s", args.resume_from_checkpoint)
            load_checkpoint(accelerator, self.optimizer, args.resume_from_checkpoint, args.allow_inexact_resume)
        return prepared

    # -- the loop ------------------------------------------------------------------------------------------------
    def batches(self, dataloader: DataLoader) -> Iterator[Any]:
        """Yield training batches until ``max_train_steps`` optimizer updates; after each update, count it, step the
        EMA, log, checkpoint and validate. On resume, the batches of the current epoch already used are skipped."""
        args, accelerator = self.args, self.accelerator
        if dataloader is not self._dataloader:
            raise ValueError("run.batches() takes the dataloader made by run.dataloader(...)")
        if self.global_step >= self.max_train_steps:  # resumed from the final checkpoint: nothing left to train
            return
        consumed = self.global_step * args.gradient_accumulation_steps
        first_epoch, skip = divmod(consumed, self.batches_per_epoch)
        bar = tqdm(total=self.max_train_steps, initial=self.global_step, desc="steps",
                   disable=not accelerator.is_local_main_process)
        try:
            for epoch in range(first_epoch, self.num_train_epochs + 1):
                dataloader.sampler.set_epoch(epoch)
                epoch_loader = skip_first_batches(dataloader, skip) if epoch == first_epoch and skip else dataloader
                for batch in epoch_loader:
                    yield send_to_device(batch, accelerator.device)
                    if not accelerator.sync_gradients:
                        continue
                    self.progress.global_step += 1
                    if self.ema is not None:
                        self.ema.step(self.params)
                    bar.update(1)
                    logs = {"loss": self._last_loss, "lr": self.lr_scheduler.get_last_lr()[0]}
                    bar.set_postfix(**logs)
                    accelerator.log(logs, step=self.global_step)
                    self._after_update()
                    if self.global_step >= self.max_train_steps:
                        return
        finally:  # training is over (or broke off): the gradient buffer's memory goes back before saving
            bar.close()
            if self.gradients is not None:
                self.gradients.release()
                self.gradients = None

    def backward(self, loss: torch.Tensor) -> None:
        """Backward pass; on an update step, clip the gradient norm of the trainable parameters, step the optimizer
        and the LR schedule, zero the gradients. Call inside ``run.accumulate(model)``."""
        accelerator, max_norm = self.accelerator, self.args.max_grad_norm
        accelerator.backward(loss)
        stepping = contextlib.nullcontext()
        if accelerator.sync_gradients:
            if self.gradients is None:
                if max_norm > 0:
                    accelerator.clip_grad_norm_(self.params, max_norm)
            else:
                self.gradients.check()
                if max_norm > 0:
                    accelerator.unscale_gradients()  # fp16: the norm is of the true gradients
                    self.gradients.clip_(max_norm)
                # AdamW skips a parameter without a gradient (grad=None), as after zero_grad(set_to_none=True);
                # under DDP a gradient received on any process was all-reduced into every process's
                combine = (lambda flags: accelerator.reduce(flags, "sum")) if accelerator.num_processes > 1 else None
                stepping = self.gradients.received_only(combine)
        with stepping:
            self.optimizer.step()  # the prepared optimizer only steps on update steps
        self.lr_scheduler.step()
        if accelerator.sync_gradients:
            if self.gradients is None:
                self.optimizer.zero_grad(set_to_none=True)
            else:
                self.gradients.zero_()
        self._last_loss = loss.detach().item()

    def _after_update(self) -> None:
        args, step = self.args, self.global_step
        if args.checkpointing_steps and step % args.checkpointing_steps == 0:
            save_checkpoint(self.accelerator, args.output_dir, step, args.checkpoints_total_limit)
        if self.validation is not None and args.validation_steps and step % args.validation_steps == 0:
            self.validate()

    def validate(self) -> list[Any]:
        """Run the script's ``run.validation()`` on the main process, saving a grid under ``output_dir/validation``.

        The global RNG is forked, so validating does not change the training noise (a run with validation has the
        same weights as one without).
        """
        images: list[Any] = []
        if self.validation is not None and self.is_main_process:
            with torch.random.fork_rng(devices=[]), torch.no_grad(), self.accelerator.autocast():
                images = self.validation()
            save_validation_images(images, self.args.output_dir, self.global_step, self.accelerator)
        self.accelerator.wait_for_everyone()
        return images

    @contextlib.contextmanager
    def final_output(self) -> Iterator[str]:
        """The folder to write the final pipeline, card and images into (main process): a staging folder beside
        ``--output_dir`` that replaces it whole when the block ends, keeping its checkpoints; a kill at any moment
        leaves the previous or the new pipeline, never a truncated one (``atomic_folder.staged_folder``)."""
        with staged_folder(self.args.output_dir) as folder:
            yield str(folder)

    def final_validation(self) -> list[Any]:
        """Wait for all processes and run validation once more on the final weights."""
        self.accelerator.wait_for_everyone()
        if self.ema is not None:
            self.ema.copy_to(self.params)
        self.validation_images = self.validate()
        return self.validation_images

    def end(self) -> None:
        """Finish: ``--push_to_hub`` the output folder (main process), close trackers."""
        from .hub import push_to_hub

        self.accelerator.wait_for_everyone()
        if self.args.push_to_hub and self.is_main_process:
            push_to_hub(self.args.output_dir, self.args.hub_model_id, self.args.hub_token)
        self.accelerator.end_training()
