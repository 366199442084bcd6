"""Training callbacks: step checkpoints, step limit, NaN guard, learning rate."""

import math
from typing import Any, Optional

import tensorflow as tf
import tf_keras


def _finite(value: Any) -> bool:
  try:
    return math.isfinite(float(value))
  except (TypeError, ValueError):
    return False


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or Inf loss."""


class NaNGuard(tf_keras.callbacks.Callback):
  """Stops training at the first non-finite loss and remembers where.

  The checkpoint callback refuses to save non-finite states, so the last
  checkpoint on disk is the last good one.
  """

  def __init__(self, monitor: str = 'total_loss'):
    super().__init__()
    self.monitor = monitor
    self.failure: Optional[str] = None

  def on_train_batch_end(self, batch, logs=None):
    logs = logs or {}
    if self.monitor in logs and not _finite(logs[self.monitor]):
      step = int(self.model.optimizer.iterations.numpy())
      bad = {k: float(v) for k, v in logs.items() if not _finite(v)}
      self.failure = (f'non-finite loss at step {step}: {bad}; training '
                      'stopped, the last checkpoint is the last good state')
      self.model.stop_training = True


class StepCheckpoint(tf_keras.callbacks.Callback):
  """Saves `manager` every `every_n_steps` optimizer steps and at the end.

  Checkpoint numbers are optimizer steps, so a restart knows where it is.
  Nothing is saved once the loss is non-finite, nor when the weights are:
  a finite loss can still come with an Inf gradient (the loss is computed
  before the update), so the weights are checked before each save (cheap at
  checkpoint frequency) and training stops, reported through `guard`.
  """

  def __init__(self, manager: tf.train.CheckpointManager, every_n_steps: int,
               monitor: str = 'total_loss',
               guard: Optional[NaNGuard] = None):
    super().__init__()
    self.manager = manager
    self.every_n_steps = max(1, every_n_steps)
    self.monitor = monitor
    self.guard = guard
    self._healthy = True
    self._last_saved = -1

  def _weights_finite(self) -> bool:
    return all(bool(tf.reduce_all(tf.math.is_finite(w)))
               for w in self.model.weights if w.dtype.is_floating)

  def _save(self) -> None:
    step = int(self.model.optimizer.iterations.numpy())
    if not (self._healthy and step != self._last_saved and step > 0):
      return
    if not self._weights_finite():
      self._healthy = False
      self.model.stop_training = True
      if self.guard is not None and self.guard.failure is None:
        self.guard.failure = (
            f'non-finite weights at step {step} (the loss was finite: an '
            'Inf/NaN gradient); training stopped, the last checkpoint is the '
            'last good state')
      return
    self.manager.save(checkpoint_number=step)
    self._last_saved = step

  def on_train_batch_end(self, batch, logs=None):
    logs = logs or {}
    if self.monitor in logs and not _finite(logs[self.monitor]):
      self._healthy = False
      return
    if int(self.model.optimizer.iterations.numpy()) % self.every_n_steps == 0:
      self._save()

  def on_train_end(self, logs=None):
    self._save()


class StepLimit(tf_keras.callbacks.Callback):
  """Stops at `total_steps` optimizer steps (a resumed run's epoch restarts,
  so the epoch count alone would overshoot)."""

  def __init__(self, total_steps: int):
    super().__init__()
    self.total_steps = total_steps

  def on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations.numpy()) >= self.total_steps:
      self.model.stop_training = True


class LearningRateLogger(tf_keras.callbacks.Callback):
  """Adds the current learning rate to the epoch logs (TensorBoard, History)."""

  def __init__(self, schedule):
    super().__init__()
    self.schedule = schedule

  def current(self) -> float:
    step = self.model.optimizer.iterations
    if callable(self.schedule):
      return float(self.schedule(step))
    return float(self.schedule)

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs['learning_rate'] = self.current()
