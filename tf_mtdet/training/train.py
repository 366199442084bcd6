"""Training entry point: config -> strategy, model, data, callbacks -> fit."""

import dataclasses
import os
import shutil
from typing import Any, Optional

from absl import logging
import tensorflow as tf
import tf_keras

from tf_mtdet.config import experiment as experiment_config
from tf_mtdet import families
from tf_mtdet.data import pipeline
from tf_mtdet.data import verify
from tf_mtdet.evaluation import callbacks as eval_callbacks
from tf_mtdet.evaluation import metrics as metrics_lib
from tf_mtdet.training import callbacks
from tf_mtdet.training import init_checkpoint
from tf_mtdet.training import schedules
from tf_mtdet.training import strategy as strategy_lib
from tf_mtdet.training import trainer as trainer_lib

CHECKPOINT_SUBDIR = 'checkpoints'


def build_model(config: experiment_config.ExperimentConfig,
                family: Optional[families.Family] = None) -> tf_keras.Model:
  """Builds the family's model and creates its weights (one forward pass)."""
  family = family or families.get(config)
  model = family.build_model()
  family.build_weights(model)
  return model


def restore_init_checkpoint(model: tf_keras.Model, path: str,
                            modules: str, model_config: Any = None,
                            prefix: str = 'model') -> str:
  """Initialises `modules` ('backbone' or 'all') from a checkpoint; returns
  the line saying what it restored (`init_checkpoint.restore`)."""
  return init_checkpoint.restore(model, path, modules, model_config, prefix)


def _say(line: str) -> None:
  """A line of ours on stdout, from the chief only."""
  if strategy_lib.is_chief():
    print(line, flush=True)


def create_optimizer_slots(optimizer: tf_keras.optimizers.Optimizer,
                           variables: list[tf.Variable]) -> None:
  """Creates the optimizer's slot variables (momentum, Adam moments) now.

  Keras creates them in the first `apply_gradients`, inside the first traced
  train step; a `tf.function` that creates variables on its first call is
  traced a second time, and the train step is the biggest trace there is
  (a third of the start-up time of a tiny two-stage model on 2 replicas).
  """
  if hasattr(optimizer, '_create_all_weights'):
    # Keras 2's OptimizerV2 (Model Garden's default) and its loss-scale
    # wrapper, which passes the call on.
    optimizer._create_all_weights(variables)  # pylint: disable=protected-access
  else:
    optimizer.build(variables)


@dataclasses.dataclass
class TrainingState:
  """What training restores or creates: model, optimizer, checkpoints."""
  model: tf_keras.Model
  optimizer: tf_keras.optimizers.Optimizer
  lr_schedule: Any
  trainer: trainer_lib.DetectionTrainer
  manager: tf.train.CheckpointManager
  resumed_from: Optional[str]


def build_training_state(config: experiment_config.ExperimentConfig,
                         strategy: tf.distribute.Strategy,
                         write_dir: str) -> TrainingState:
  """Builds model, optimizer and trainer in `strategy`, then restores the
  latest checkpoint in `write_dir` (exact resume: weights, optimizer slots and
  step, hence the learning rate) or the initial checkpoint."""
  runtime = config.runtime
  if runtime.mixed_precision:
    # Before the model is built: layers take their dtype policy then.
    tf_keras.mixed_precision.set_global_policy(runtime.mixed_precision)
  family = families.get(config)
  with strategy.scope():
    model = build_model(config, family)
    optimizer, lr_schedule = schedules.build_optimizer(
        config.schedule, config.train_data.global_batch_size)
    if runtime.mixed_precision == 'mixed_float16':
      optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    _ = optimizer.iterations  # created now, so a restore sets it at once
    create_optimizer_slots(optimizer, model.trainable_variables)
    trainer = trainer_lib.DetectionTrainer(model, family)
    trainer.compile(optimizer=optimizer, run_eagerly=runtime.run_eagerly)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(write_dir, CHECKPOINT_SUBDIR),
        max_to_keep=runtime.max_checkpoints)
    resumed_from = manager.latest_checkpoint
    if resumed_from:
      checkpoint.restore(resumed_from).assert_existing_objects_matched()
      logging.info('resumed from %s', resumed_from)
    elif runtime.init_checkpoint:
      path = init_checkpoint.resolve(runtime.init_checkpoint)
      if path is None:
        _say(init_checkpoint.from_scratch_line(runtime.init_checkpoint))
      else:
        _say(restore_init_checkpoint(
            model, path, runtime.init_checkpoint_modules,
            config.family_model, f'model.{config.model.type}'))
  return TrainingState(model, optimizer, lr_schedule, trainer, manager,
                       resumed_from)


def train(config: experiment_config.ExperimentConfig, model_dir: str,
          verbose: int = 1) -> dict[str, Any]:
  """Trains (or resumes) the experiment in `model_dir`.

  Returns:
    {'history': per-epoch logs, 'step': final optimizer step,
     'resumed_from': checkpoint path or None, 'model': the trained model,
     'trainer': the `fit` wrapper (its `train_function` is the traced step),
     'strategy': the strategy's class name, 'num_replicas': its replicas}.

  Raises:
    callbacks.NonFiniteLossError: a loss became NaN/Inf (the last good
      checkpoint is kept).
    verify.ShardError: a damaged or foreign shard, found before the model
      is built or by a read error during training (the last checkpoint is
      kept).
  """
  verify.check_experiment_inputs(config, training=True)
  runtime = config.runtime
  tf_keras.utils.set_random_seed(runtime.seed)
  strategy = strategy_lib.build_strategy(runtime.strategy)
  chief = strategy_lib.is_chief()
  # Non-chief workers must write too (collective checkpointing), elsewhere.
  write_dir = model_dir if chief else os.path.join(
      model_dir, f'.worker_{strategy_lib.task_index()}_tmp')
  tf.io.gfile.makedirs(write_dir)
  if chief:
    experiment_config.save_config(config, os.path.join(model_dir,
                                                       'config.yaml'))

  global_batch = config.train_data.global_batch_size
  steps_per_epoch = schedules.steps_per_epoch(config.schedule, global_batch)
  total_steps = schedules.total_steps(config.schedule, global_batch)
  previous_policy = tf_keras.mixed_precision.global_policy()
  try:
    return _fit(config, strategy, chief, write_dir, steps_per_epoch,
                total_steps, verbose)
  finally:
    # Models built later in this process (evaluation, export) are float32.
    tf_keras.mixed_precision.set_global_policy(previous_policy)


def _fit(config: experiment_config.ExperimentConfig,
         strategy: tf.distribute.Strategy, chief: bool, write_dir: str,
         steps_per_epoch: int, total_steps: int, verbose: int
         ) -> dict[str, Any]:
  """The body of `train` once the strategy and directories are set."""
  runtime = config.runtime
  state = build_training_state(config, strategy, write_dir)
  trainer, optimizer, manager = state.trainer, state.optimizer, state.manager
  resumed_from = state.resumed_from
  start_step = int(optimizer.iterations.numpy())
  parser = state.trainer.family.build_parser(config.train_data)
  train_ds = strategy.distribute_datasets_from_function(
      lambda ctx: pipeline.dataset(config.train_data, parser, ctx))
  guard = callbacks.NaNGuard()
  cbs = [callbacks.StepLimit(total_steps), guard]
  if (runtime.eval_every_n_epochs and config.eval_data.input_path and
      config.eval_data.annotation_file):
    cbs.append(eval_callbacks.EvaluationCallback(
        metrics_lib.build_evaluator(config, state.trainer.family),
        eval_dataset(config, state.trainer.family),
        predict_fn=_predict_fn(trainer),
        every_n_epochs=runtime.eval_every_n_epochs,
        # The Keras epoch line shows the headline metrics (fit prints it);
        # TensorBoard's 'evaluation' run gets every metric.
        verbose=0, headline=metrics_lib.headline,
        summary_dir=os.path.join(write_dir, 'logs', 'evaluation')))
  cbs += [
      callbacks.StepCheckpoint(manager, runtime.checkpoint_every_n_steps,
                               guard=guard),
      callbacks.LearningRateLogger(state.lr_schedule),
      tf_keras.callbacks.TensorBoard(
          os.path.join(write_dir, 'logs'),
          update_freq=max(1, runtime.log_every_n_steps)),
  ]
  epochs = -(-total_steps // steps_per_epoch)
  history = {}
  if start_step < total_steps:
    with verify.naming_bad_shard(verify.experiment_inputs(config, True),
                                 manager.directory):
      result = trainer.fit(train_ds, epochs=epochs,
                           initial_epoch=start_step // steps_per_epoch,
                           steps_per_epoch=steps_per_epoch, callbacks=cbs,
                           verbose=verbose)
    history = result.history
  if not chief:
    shutil.rmtree(write_dir, ignore_errors=True)
  if guard.failure:
    raise callbacks.NonFiniteLossError(guard.failure)
  return {'history': history, 'step': int(optimizer.iterations.numpy()),
          'resumed_from': resumed_from, 'model': state.model,
          'trainer': trainer,
          'strategy': type(strategy).__name__,
          'num_replicas': strategy.num_replicas_in_sync}


def eval_dataset(config: experiment_config.ExperimentConfig,
                 family: Optional[families.Family] = None) -> tf.data.Dataset:
  """Eval batches as `((images, labels), {source_id, image_info[,
  gt_semantic]})`: the model needs the labels' image info and anchors, the
  evaluators the ids (and the semantic map for mIoU)."""
  family = family or families.get(config)
  parser = family.build_parser(config.eval_data)
  keep = ('source_id', 'image_info', 'gt_semantic', 'gt_semantic_original')
  return pipeline.dataset(config.eval_data, parser).map(
      lambda images, labels: ((images, labels), {
          k: labels[k] for k in keep if k in labels}))


def _predict_fn(trainer: trainer_lib.DetectionTrainer):
  step = tf.function(trainer.predict_step)
  return lambda model, features: step(features)

