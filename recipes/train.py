"""Train a generalizable INR.

    accelerate launch recipes/train.py --model ipc-meta [--data photos] [--optim.lr 1e-4 ...]
    accelerate launch recipes/train.py --resume runs/<run>          # continue exactly where it stopped
    accelerate launch recipes/train.py --init-from user/ginr-model --data ffhq178   # fine-tune a trained model

Reads top to bottom: config, accelerator, run folder, data, model, optimizer, (resume), loop, evaluation,
checkpoints. Everything that can be refused (flags, run folder, data, checkpoint) is checked before the run folder is
written to. The bookkeeping lives in ``ginr.train``: the trainer state and its checkpoints in ``state``, the
evaluations and their record in ``history``, the FLOP count and matmul ceiling behind ``train/mfu`` in ``flops``.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time

import torch

from ginr import cli, hub, models
from ginr.data import (
    BadFileError,
    BatchPlan,
    EvalBatchSampler,
    TrainBatchSampler,
    eval_dataset,
    make_loader,
    train_dataset,
)
from ginr.module import ParamsModule
from ginr.train import cadence, checkpoint, flops, history, schedule, setup, state
from ginr.train.checkpoint import CheckpointError
from ginr.train.ema import named_state, update_ema
from ginr.train.logger import RunLogger, progress_bar, say
from ginr.train.objective import objective_for
from ginr.train.step import NonFiniteError, train_step

STOPS = (BadFileError, NonFiniteError, CheckpointError)
"""What ends a started run with its message and exit status 1 (diverged, an unusable data file, a failed checkpoint
write); the logs are flushed and the checkpoints kept."""


def main(argv: list[str] | None = None) -> None:
    config, resume = cli.parse_train_args(argv)
    config = dataclasses.replace(config, train=setup.resolve_auto(config.train))
    accelerator = setup.make_accelerator(config.train)
    train_cfg, optim = config.train, config.optim
    with cli.refusals():
        plan = BatchPlan.derive(train_cfg.batch_size, accelerator.num_processes, train_cfg.grad_accumulation)
        run_dir = setup.run_folder(config, resume, accelerator)
        latest = state.checkpoint_to_resume(run_dir) if resume is not None else None

    # ---- data -------------------------------------------------------------------------------------------------
    with cli.refusals():
        train_set, eval_set = train_dataset(config.data), eval_dataset(config.data)
        eval_batch = max(1, (train_cfg.eval_batch_size or train_cfg.batch_size) // accelerator.num_processes)
        eval_sampler = EvalBatchSampler(len(eval_set), eval_batch, accelerator.num_processes, accelerator.process_index)
    steps_per_epoch = TrainBatchSampler.steps_per_epoch(len(train_set), plan)
    if steps_per_epoch == 0:
        cli.fail(
            f"the training split has {len(train_set)} instances, fewer than one global batch ({plan.global_batch})"
        )
    total_steps = steps_per_epoch * train_cfg.epochs
    if train_cfg.max_steps is not None:
        total_steps = min(total_steps, train_cfg.max_steps)
    eval_loader = make_loader(eval_set, eval_sampler, config.data.num_workers)

    # ---- model and optimizer ----------------------------------------------------------------------------------
    model = models.build(config.model_name, config.model)
    if train_cfg.init_from is not None:  # fine-tune: the weights of a trained model, checked strictly
        with cli.refusals():
            folder = hub.model_dir(train_cfg.init_from, train_cfg.init_revision)
            params = hub.load_params(folder, model, f"this run's config (--init-from {train_cfg.init_from})")
    else:
        params = model.init(torch.Generator().manual_seed(train_cfg.seed))
    module = ParamsModule(model, params, objective=objective_for(config, train_cfg.compile))
    optimizer = setup.adam(module.parameters(), optim)
    module, optimizer = accelerator.prepare(module, optimizer)
    holder = accelerator.unwrap_model(module)

    # ---- resume -----------------------------------------------------------------------------------------------
    with cli.refusals():
        run = state.start(train_cfg, plan, steps_per_epoch, latest, accelerator, module, optimizer)
    if latest is not None:
        say(accelerator, f"resumed from {latest} at step {run.step}")
    ceiling = flops.run_ceiling(accelerator, train_cfg.precision)  # cached: measured once per device and precision
    setup.start_run(run_dir, config, accelerator, resumed=resume is not None)
    say(accelerator, f"run folder: {run_dir}")
    n_params = sum(p.numel() for p in holder.parameters())
    say(
        accelerator,
        f"{config.model_name} on {config.data_name}: {n_params / 1e6:.3f} M parameters, {len(train_set)} train / "
        f"{len(eval_set)} eval instances, global batch {plan.global_batch} = {plan.micro_batch} x "
        f"{plan.num_processes} process(es) x {plan.accumulation}, {steps_per_epoch} steps/epoch, {total_steps} steps, "
        f"{train_cfg.precision}{'' if train_cfg.compile == 'off' else f', compiled ({train_cfg.compile})'} on "
        f"{accelerator.device.type}",
    )
    logger = RunLogger(run_dir, accelerator.is_main_process)
    evaluate = history.Evaluator(config, model, eval_loader, accelerator, logger, run_dir)

    # ---- training loop ----------------------------------------------------------------------------------------
    with logger, cli.refusals(1, STOPS):
        if run.step == 0 and train_cfg.eval_at_start:
            evaluate(holder, run)
        bar = progress_bar(total_steps, run.step, accelerator)
        flops_per_instance = None
        while run.step < total_steps:
            epoch, start = divmod(run.step, steps_per_epoch)
            sampler = TrainBatchSampler(len(train_set), plan, accelerator.process_index, train_cfg.seed, epoch, start)
            batches = iter(make_loader(train_set, sampler, config.data.num_workers))
            if flops_per_instance is None:  # counted once, on fake copies of the first step's first micro-batch
                first, batches = flops.first_batch(batches)
                counted = flops.step_flops(model, holder.tree(), objective_for(config), first, epoch)
                flops_per_instance = counted / plan.micro_batch
            for step_in_epoch in range(start, steps_per_epoch):
                tick = time.perf_counter()
                lr = schedule.learning_rate(run.step, optim, steps_per_epoch, total_steps)
                result = train_step(
                    module,
                    optimizer,
                    batches,
                    accelerator=accelerator,
                    plan=plan,
                    lr=lr,
                    max_grad_norm=optim.max_grad_norm,
                    epoch=epoch,
                )
                run.step += 1
                note = run.guard.check(
                    result,
                    run.step,
                    batch=functools.partial(sampler.step_indices, step_in_epoch),
                    last_checkpoint=functools.partial(checkpoint.latest, run_dir),
                )
                if note is not None:
                    say(accelerator, note)
                elif run.ema is not None:
                    update_ema(run.ema, named_state(holder), train_cfg.ema, run.step - 1)  # the step just taken
                img_per_s = plan.global_batch / (time.perf_counter() - tick)
                if run.step % train_cfg.log_every == 0 or run.step == total_steps:
                    mfu = flops.utilisation(flops_per_instance, img_per_s, ceiling)
                    scalars = {**result.scalars(accelerator), "lr": lr, "img_per_s": img_per_s, "mfu": mfu}
                    logger.scalars("train", {**scalars, "skipped_steps": run.guard.skipped}, run.step)
                    bar.set_postfix(
                        loss=f"{scalars['loss']:.4f}", psnr=f"{scalars['psnr']:.2f}", img_s=f"{img_per_s:.1f}"
                    )
                bar.update(1)
                if run.step >= total_steps:
                    break
            if run.step % steps_per_epoch == 0 and run.step < total_steps:
                if cadence.evaluates(run.epochs_done, train_cfg):  # the first one's NeRF evaluation renders in full
                    evaluate(holder, run, full=run.epochs_done == 1)  # (quirk 11)
                if cadence.checkpoints(run.epochs_done, train_cfg):
                    say(accelerator, f"checkpoint: {state.save(run, run_dir, accelerator, config, holder, optimizer)}")
        bar.close()

        # ---- the end: always evaluate (NeRF: in full) and checkpoint --------------------------------------------
        if history.needs_final(run):
            evaluate(holder, run, final=True)
        if run.saved_at != run.step:
            say(accelerator, f"checkpoint: {state.save(run, run_dir, accelerator, config, holder, optimizer)}")
        summary = history.summary(run.history)
        say(accelerator, "\nevaluation on the held-out split:\n" + summary)
        logger.text("eval/summary", summary)
    accelerator.end_training()


if __name__ == "__main__":
    sys.exit(main())
