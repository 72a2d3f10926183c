"""Train a generalizable INR.

    accelerate launch -q recipes/train.py --model ipc-meta [--data photos] [--optim.lr 1e-4 ...]
    accelerate launch -q recipes/train.py --resume runs/<run>          # continue exactly where it stopped
    accelerate launch -q recipes/train.py --init-from user/ginr-model --data ffhq178   # fine-tune a trained model

Reads top to bottom: config, accelerator, run folder, data, model, optimizer, (resume), loop, evaluation,
checkpoints. Everything that can be refused (flags, run folder, data, checkpoint) is checked before the run folder is
written to. The bookkeeping lives in ``ginr.train``: the trainer state and its checkpoints in ``state``, the
evaluations and their record in ``history``, the FLOP count and matmul ceiling behind ``train/mfu`` in ``flops``.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import sys
import time
from pathlib import Path

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
from ginr.train import cadence, checkpoint, flops, history, memory, schedule, setup, signals, state
from ginr.train.checkpoint import CheckpointError
from ginr.train.ema import named_state, update_ema
from ginr.train.logger import RunLogger, progress_bar, say
from ginr.train.objective import objective_for
from ginr.train.step import NonFiniteError, train_step

RESUME = "accelerate launch -q recipes/train.py --resume"
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
        memory.check_fits(config, plan.micro_batch, accelerator.device)  # before a run folder or data is touched

    # ---- data, then the run folder (locked: the lock lasts until the process exits) -------------------------------
    with cli.refusals():
        train_set, eval_set = train_dataset(config.data), eval_dataset(config.data)
        eval_batch = max(1, (train_cfg.eval_batch_size or train_cfg.batch_size) // accelerator.num_processes)
        eval_sampler = EvalBatchSampler(len(eval_set), eval_batch, accelerator.num_processes, accelerator.process_index)
        steps_per_epoch, total_steps = setup.run_length(len(train_set), plan, train_cfg)
        run_dir, run_lock = setup.run_folder(config, resume, accelerator)
        latest = state.checkpoint_to_resume(run_dir) if resume is not None else None
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
    if train_cfg.init_from is not None and resume is None:  # the source's Adam state, or a warm-up (recorded)
        optim, note = state.start_fine_tuning(optim, train_cfg.init_from, folder, optimizer)
        config = dataclasses.replace(config, optim=optim)
        say(accelerator, note)

    # ---- resume -----------------------------------------------------------------------------------------------
    with cli.refusals():
        run = state.start(train_cfg, plan, steps_per_epoch, latest, accelerator, module, optimizer)
    if latest is not None:
        say(accelerator, f"resumed from {latest} at step {run.step}")
    ceiling = flops.run_ceiling(accelerator, train_cfg.precision)  # cached: measured once per device and precision
    setup.start_run(run_dir, config, accelerator, resumed=resume is not None)
    say(accelerator, f"run folder: {run_dir}")
    say(
        accelerator, setup.describe(config, holder, (len(train_set), len(eval_set)), plan, steps_per_epoch, total_steps)
    )
    logger = RunLogger(run_dir, accelerator.is_main_process)
    evaluate = history.Evaluator(config, model, eval_loader, accelerator, logger, run_dir)

    # ---- training loop ----------------------------------------------------------------------------------------
    with logger, cli.refusals(1, STOPS), signals.StopRequests(accelerator) as stop:
        if run.step == 0 and train_cfg.eval_at_start:
            evaluate(holder, run)
        bar = progress_bar(total_steps, run.step, accelerator)
        flops_per_instance = None
        while run.step < total_steps:
            epoch, start = divmod(run.step, steps_per_epoch)
            sampler = TrainBatchSampler(len(train_set), plan, accelerator.process_index, train_cfg.seed, epoch, start)
            batches = iter(make_loader(train_set, sampler, config.data.num_workers))
            if flops_per_instance is None:  # counted once, on fake copies of the first step's first micro-batch
                flops_per_instance, batches = flops.per_instance(model, holder.tree(), objective_for(config), batches)
            for step_in_epoch in range(start, steps_per_epoch):
                if (signum := stop.agreed()) is not None:  # a signal during the last step: after its epoch's end
                    stop_on_signal(signum, run, run_dir, accelerator, config, holder, optimizer)
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
                    # good: older than the step whose (finite, maybe diverged) update the skip streak started from
                    last_checkpoint=lambda: checkpoint.latest(run_dir, below=run.step - run.guard.in_a_row),
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
                    save(run, run_dir, accelerator, config, holder, optimizer)
        bar.close()

        # ---- the end: always evaluate (NeRF: in full) and checkpoint --------------------------------------------
        if history.needs_final(run):
            evaluate(holder, run, final=True)
        if run.saved_at != run.step:
            save(run, run_dir, accelerator, config, holder, optimizer)
        summary = history.summary(run.history)
        say(accelerator, "\nevaluation on the held-out split:\n" + summary)
        logger.text("eval/summary", summary)
    accelerator.end_training()


def save(run: state.TrainerState, run_dir: Path, accelerator, config, holder, optimizer) -> Path | None:
    """Write the checkpoint of this step (collective) and say so; none during a streak of skipped steps."""
    path = state.save(run, run_dir, accelerator, config, holder, optimizer)
    if path is None:
        say(accelerator, f"no checkpoint at step {run.step}: its weights gave numbers that are not finite")
    else:
        say(accelerator, f"checkpoint: {path}")
    return path


def stop_on_signal(signum: int, run: state.TrainerState, run_dir: Path, accelerator, config, holder, optimizer):
    """After SIGINT or SIGTERM (``signum``, agreed by every process): checkpoint the steps taken, say in one line
    where and how to continue, and exit 128 + ``signum`` (130, 143)."""
    if run.saved_at == run.step:
        path = run_dir / "checkpoints" / checkpoint.folder_name(run.step)
    else:
        path = save(run, run_dir, accelerator, config, holder, optimizer)
    kept = f"checkpoint {path}" if path else f"no new checkpoint, the newest is {checkpoint.latest(run_dir)}"
    name = signal.Signals(signum).name
    say(accelerator, f"stopped by {name} after step {run.step}: {kept}; continue with: {RESUME} {run_dir}")
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
