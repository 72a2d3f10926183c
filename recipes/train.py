"""Train a generalizable INR.

    accelerate launch recipes/train.py --model ipc-meta [--data photos] [--optim.lr 1e-4 ...]
    accelerate launch recipes/train.py --resume runs/<run>          # continue exactly where it stopped
    accelerate launch recipes/train.py --init-from user/ginr-model --data ffhq178   # fine-tune a trained model

Reads top to bottom: config, accelerator, run folder, data, model, optimizer, (resume), loop, evaluation,
checkpoints. Everything that can be refused (flags, run folder, data, checkpoint) is checked before the run folder is
written to.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time

import torch
from tqdm.auto import tqdm

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
from ginr.pytree import unflatten
from ginr.train import cadence, checkpoint, schedule, setup
from ginr.train.checkpoint import CheckpointError
from ginr.train.ema import init_ema, update_ema
from ginr.train.evaluate import evaluate_config
from ginr.train.logger import RunLogger, table
from ginr.train.objective import objective_for
from ginr.train.step import NonFiniteError, NonFiniteGuard, train_step


def say(accelerator, message: str) -> None:
    """Print on the main process without breaking the progress bar."""
    if accelerator.is_main_process:
        tqdm.write(message)


def named_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def main(argv: list[str] | None = None) -> None:
    config, resume = cli.parse_train_args(argv)
    config = dataclasses.replace(config, train=setup.resolve_auto(config.train))
    accelerator = setup.make_accelerator(config.train)
    train_cfg = config.train
    with cli.refusals():
        plan = BatchPlan.derive(train_cfg.batch_size, accelerator.num_processes, train_cfg.grad_accumulation)
        run_dir = setup.run_folder(config, resume, accelerator)
        latest = checkpoint.latest(run_dir) if resume is not None else None
        if resume is not None and latest is None:
            raise ValueError(
                f"--resume {run_dir}: no complete and intact checkpoint in {run_dir / 'checkpoints'}, so nothing to "
                "continue; start the run again with its first command plus --train.overwrite"
            )

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
    optim = config.optim
    optimizer = setup.adam(module.parameters(), optim)
    module, optimizer = accelerator.prepare(module, optimizer)
    holder = accelerator.unwrap_model(module)

    step, history, state, ema = 0, [], {}, None
    if latest is not None:
        with cli.refusals():
            state, ema = checkpoint.restore(
                latest, accelerator=accelerator, module=module, optimizer=optimizer, global_batch=plan.global_batch
            )
        step, history = state["step"], state.get("eval_history", [])
        say(accelerator, f"resumed from {latest} at step {step}")
    if not train_cfg.ema:
        ema = None  # (turned off when resuming: the saved average is not continued)
    elif ema is None:  # a fresh run, or a resumed one that had none: the average starts from these weights
        ema = init_ema(named_state(holder))
    setup.start_run(run_dir, config, accelerator, resumed=resume is not None)
    say(accelerator, f"run folder: {run_dir}")
    guard = NonFiniteGuard(
        train_cfg.nonfinite, train_cfg.skip_limit, state.get("skipped_steps", 0), state.get("skipped_in_a_row", 0)
    )
    logger = RunLogger(run_dir, accelerator.is_main_process)
    n_params = sum(p.numel() for p in holder.parameters())
    say(
        accelerator,
        f"{config.model_name} on {config.data_name}: {n_params / 1e6:.3f} M parameters, {len(train_set)} train / "
        f"{len(eval_set)} eval instances, global batch {plan.global_batch} = {plan.micro_batch} x "
        f"{plan.num_processes} process(es) x {plan.accumulation}, {steps_per_epoch} steps/epoch, {total_steps} steps, "
        f"{train_cfg.precision}{'' if train_cfg.compile == 'off' else f', compiled ({train_cfg.compile})'} on "
        f"{accelerator.device.type}",
    )

    def stop(error: Exception) -> None:
        """End a run that cannot go on (diverged, an unusable data file, a failed checkpoint write): its message,
        exit status 1; the logs are flushed and the checkpoints kept."""
        logger.close()
        cli.fail(str(error), status=1)

    def run_eval(at_step: int, full: bool = False, final: bool = False) -> None:
        """Evaluate and log; a NeRF renders full views when ``full`` or ``final``, else the in-training estimate."""
        holder.eval()
        rows = {"": holder.tree()}
        if ema is not None:
            rows["ema"] = unflatten(ema)
        with_images = final or cadence.logs_images(at_step // steps_per_epoch, train_cfg)
        for suffix, weights in rows.items():
            try:
                result = evaluate_config(
                    config, model, weights, eval_loader, accelerator=accelerator, estimate=not (full or final)
                )
            except BadFileError as error:
                stop(error)
            tag = "eval" + (f"_{suffix}" if suffix else "")
            logger.scalars(tag, result.metrics, at_step)
            if with_images:
                logger.images(tag, result.images, at_step)
                logger.audio(tag, result.audio, at_step)
                for name, text in result.text.items():
                    logger.text(f"{tag}/{name}", text, at_step)
            history.append(
                {
                    "step": at_step,
                    "epoch": round(at_step / steps_per_epoch, 3),
                    "weights": suffix or "raw",
                    **{k: v for k, v in result.metrics.items() if not k.startswith("inner")},
                }
            )
            say(
                accelerator,
                f"[{tag} @ step {at_step}] "
                + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k != "count"),
            )
        if accelerator.is_main_process:  # after every evaluation, so a run that stops early keeps its table
            setup.write_atomic(run_dir / "eval_metrics.json", json.dumps(history, indent=2))
        holder.train()

    def save(at_step: int) -> None:
        trainer_state = {
            "epoch": at_step // steps_per_epoch,
            "step_in_epoch": at_step % steps_per_epoch,
            "num_processes": accelerator.num_processes,
            "global_batch": plan.global_batch,
            "micro_batch": plan.micro_batch,
            "accumulation": plan.accumulation,
            "skipped_steps": guard.skipped,
            "skipped_in_a_row": guard.in_a_row,
            "eval_history": history,
        }
        try:
            path = checkpoint.save(
                run_dir,
                at_step,
                accelerator=accelerator,
                config=config,
                params=holder.tree(),
                optimizer=optimizer,
                trainer_state=trainer_state,
                ema=ema,
                keep=train_cfg.keep_checkpoints,
            )
        except CheckpointError as error:
            stop(error)
        say(accelerator, f"checkpoint: {path}")

    # ---- training loop ----------------------------------------------------------------------------------------
    if step == 0 and train_cfg.eval_at_start:
        run_eval(0)
    saved_at = step if resume is not None else None
    bar = tqdm(
        total=total_steps,
        initial=step,
        disable=not accelerator.is_local_main_process,
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,  # keep log files readable
    )
    while step < total_steps:
        epoch, start = divmod(step, steps_per_epoch)
        sampler = TrainBatchSampler(len(train_set), plan, accelerator.process_index, train_cfg.seed, epoch, start)
        batches = iter(make_loader(train_set, sampler, config.data.num_workers))
        for step_in_epoch in range(start, steps_per_epoch):
            tick = time.perf_counter()
            lr = schedule.learning_rate(step, optim, steps_per_epoch, total_steps)
            try:
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
            except BadFileError as error:
                stop(error)
            step += 1
            try:
                note = guard.check(
                    result,
                    step,
                    batch=functools.partial(sampler.step_indices, step_in_epoch),
                    last_checkpoint=functools.partial(checkpoint.latest, run_dir),
                )
            except NonFiniteError as error:
                stop(error)
            if note is not None:
                say(accelerator, note)
            elif ema is not None:
                update_ema(ema, named_state(holder), train_cfg.ema, step - 1)  # the step just taken, from 0
            images_per_s = plan.global_batch / (time.perf_counter() - tick)
            if step % train_cfg.log_every == 0 or step == total_steps:
                logged = {k: accelerator.reduce(v.detach(), reduction="mean") for k, v in result.metrics.items()}
                scalars = {
                    "loss": float(logged["mse"]),
                    "psnr": float(logged["psnr"]),
                    "lr": lr,
                    "img_per_s": images_per_s,
                    "skipped_steps": guard.skipped,
                }
                if "inner_psnr" in logged:  # the mean of per-sample PSNRs, as train/psnr
                    for t, value in enumerate(logged["inner_psnr"].tolist()):
                        scalars[f"inner_psnr/{t}"] = value
                logger.scalars("train", scalars, step)
                bar.set_postfix(
                    loss=f"{scalars['loss']:.4f}", psnr=f"{scalars['psnr']:.2f}", img_s=f"{images_per_s:.1f}"
                )
            bar.update(1)
            if step >= total_steps:
                break
        epochs_done = step // steps_per_epoch
        if step % steps_per_epoch == 0 and step < total_steps:
            if cadence.evaluates(epochs_done, train_cfg):  # the first one's NeRF evaluation renders in full (quirk 11)
                run_eval(step, full=epochs_done == 1)
            if cadence.checkpoints(epochs_done, train_cfg):
                save(step)
                saved_at = step
    bar.close()

    # ---- the end: always evaluate (NeRF: in full) and checkpoint ------------------------------------------------
    if not history or history[-1]["step"] != step or "psnr" not in history[-1]:
        run_eval(step, final=True)
    if saved_at != step:
        save(step)
    columns = ["step", "epoch", "weights", "psnr", "ssim", "mse", "psnr_estimate", "count"]
    summary = table(history, [c for c in columns if any(c in row for row in history)])
    say(accelerator, "\nevaluation on the held-out split:\n" + summary)
    logger.text("eval/summary", summary)
    logger.close()
    accelerator.end_training()


if __name__ == "__main__":
    sys.exit(main())
