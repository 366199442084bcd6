"""The papers' schedule (epochs, linear scaling, warmup, step decay) as Model
Garden's optimizer factory config."""

from typing import Union

import tf_keras

from official.modeling import optimization

from tf_mtdet.config import experiment as experiment_config


def steps_per_epoch(schedule: experiment_config.Schedule,
                    global_batch_size: int) -> int:
  """Steps of one epoch, from the schedule or the training set size."""
  if schedule.steps_per_epoch > 0:
    return schedule.steps_per_epoch
  if schedule.num_train_examples <= 0:
    raise ValueError(
        'schedule.steps_per_epoch or schedule.num_train_examples must be set '
        '(the dataset builder summary gives "images")')
  return max(1, -(-schedule.num_train_examples // global_batch_size))


def total_steps(schedule: experiment_config.Schedule,
                global_batch_size: int) -> int:
  if schedule.total_steps > 0:
    return schedule.total_steps
  return schedule.epochs * steps_per_epoch(schedule, global_batch_size)


def learning_rate(schedule: experiment_config.Schedule,
                  global_batch_size: int) -> float:
  """Peak learning rate after the linear scaling rule."""
  return (schedule.base_learning_rate * global_batch_size /
          schedule.base_batch_size)


def optimization_config(schedule: experiment_config.Schedule,
                        global_batch_size: int
                        ) -> optimization.OptimizationConfig:
  """Model Garden optimization config for SGD + warmup + step decay.

  Decay epochs become step boundaries; with `total_steps` set (quick runs)
  they are scaled into that many steps proportionally to `epochs`.
  """
  lr = learning_rate(schedule, global_batch_size)
  steps = total_steps(schedule, global_batch_size)
  boundaries = sorted(int(round(e / schedule.epochs * steps))
                      for e in schedule.decay_epochs if e < schedule.epochs)
  values = [lr * schedule.decay_factor**i for i in range(len(boundaries) + 1)]
  warmup = min(schedule.warmup_steps, max(steps - 1, 0))
  return optimization.OptimizationConfig({
      'optimizer': {'type': 'sgd', 'sgd': {
          'momentum': schedule.momentum,
          'clipnorm': schedule.clipnorm or None}},
      'learning_rate': {'type': 'stepwise', 'stepwise': {
          'boundaries': boundaries, 'values': values}},
      'warmup': {'type': 'linear', 'linear': {
          'warmup_steps': warmup,
          'warmup_learning_rate': lr * schedule.warmup_ratio}},
  })


def build_optimizer(schedule: experiment_config.Schedule,
                    global_batch_size: int
                    ) -> tuple[tf_keras.optimizers.Optimizer,
                               Union[tf_keras.optimizers.schedules.LearningRateSchedule,
                                     float]]:
  """SGD with the schedule; the step counter is `optimizer.iterations`.

  Model Garden's factory builds its default, the Keras 2 (legacy) SGD, whose
  slot variables restore lazily from a checkpoint when first created.
  """
  factory = optimization.OptimizerFactory(
      optimization_config(schedule, global_batch_size))
  lr = factory.build_learning_rate()
  return factory.build_optimizer(lr), lr
