"""The papers' schedule (epochs, linear scaling, warmup, step decay) as Model
Garden's optimizer factory config."""

import math
from typing import Union

import tf_keras

from official.modeling import optimization

from tf_mtdet.config import experiment as experiment_config


def validate_schedule(schedule: experiment_config.Schedule,
                      global_batch_size: int) -> None:
  """Rejects a schedule that cannot be built or cannot mean what it says.

  A schedule whose length is not known yet (no `steps_per_epoch`,
  `num_train_examples` nor `total_steps`, as a config that only evaluates or
  exports has it) passes the checks that need the length.

  Args:
    schedule: The experiment's schedule.
    global_batch_size: `train_data.global_batch_size`.

  Raises:
    ValueError: naming the field (`schedule.decay_epochs`, ...) and why.
  """
  def fail(field: str, why: str):
    raise ValueError(f'schedule.{field}={getattr(schedule, field)!r}: {why}')

  if global_batch_size < 1:
    raise ValueError(f'train_data.global_batch_size={global_batch_size!r}: '
                     'must be >= 1')
  for field in ('epochs', 'base_batch_size'):
    if getattr(schedule, field) < 1:
      fail(field, 'must be >= 1')
  for field in ('steps_per_epoch', 'num_train_examples', 'total_steps',
                'warmup_steps', 'weight_decay', 'clipnorm'):
    if not getattr(schedule, field) >= 0:
      fail(field, 'must be >= 0')
  if not (math.isfinite(schedule.base_learning_rate) and
          schedule.base_learning_rate > 0):
    fail('base_learning_rate', 'must be a positive number')
  if not 0 < schedule.decay_factor <= 1:
    fail('decay_factor', 'must be in (0, 1]')
  if not 0 <= schedule.warmup_ratio <= 1:
    fail('warmup_ratio', 'must be in [0, 1]')
  if not 0 <= schedule.momentum < 1:
    fail('momentum', 'must be in [0, 1)')
  if schedule.optimizer not in ('sgd', 'adam'):
    fail('optimizer', "must be 'sgd' or 'adam'")
  for field in ('beta_1', 'beta_2'):
    if not 0 <= getattr(schedule, field) < 1:
      fail(field, 'must be in [0, 1)')
  decay = list(schedule.decay_epochs or [])
  late = [e for e in decay if not 0 < e < schedule.epochs]
  if late:
    fail('decay_epochs', f'{", ".join(map(str, late))} not inside training: '
         f'each decay epoch must be > 0 and < schedule.epochs '
         f'({schedule.epochs}); [] keeps the learning rate constant')
  if any(b <= a for a, b in zip(decay, decay[1:])):
    fail('decay_epochs', 'must be strictly increasing')
  if (schedule.total_steps == 0 and schedule.steps_per_epoch == 0 and
      schedule.num_train_examples == 0):
    return  # Training length unknown yet (`train` asks for it).
  steps = total_steps(schedule, global_batch_size)
  if 0 < schedule.warmup_steps >= steps:
    length = ('schedule.total_steps' if schedule.total_steps > 0 else
              f'schedule.epochs x '
              f'{steps_per_epoch(schedule, global_batch_size)} steps per epoch')
    fail('warmup_steps', f'warmup must be shorter than training ({steps} '
         f'steps: {length})')


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
  they are scaled into that many steps proportionally to `epochs`. No decay
  epochs: a constant learning rate after the warmup.
  """
  lr = learning_rate(schedule, global_batch_size)
  steps = total_steps(schedule, global_batch_size)
  boundaries = sorted(int(round(e / schedule.epochs * steps))
                      for e in schedule.decay_epochs if e < schedule.epochs)
  values = [lr * schedule.decay_factor**i for i in range(len(boundaries) + 1)]
  warmup = min(schedule.warmup_steps, max(steps - 1, 0))
  # Model Garden's stepwise schedule fails on empty boundaries.
  learning_rate_config = (
      {'type': 'stepwise', 'stepwise': {'boundaries': boundaries,
                                        'values': values}} if boundaries else
      {'type': 'constant', 'constant': {'learning_rate': lr}})
  optimizer = ({'type': 'adam', 'adam': {
      'beta_1': schedule.beta_1, 'beta_2': schedule.beta_2,
      'clipnorm': schedule.clipnorm or None}}
               if schedule.optimizer == 'adam' else
               {'type': 'sgd', 'sgd': {'momentum': schedule.momentum,
                                      'clipnorm': schedule.clipnorm or None}})
  return optimization.OptimizationConfig({
      'optimizer': optimizer,
      'learning_rate': learning_rate_config,
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
