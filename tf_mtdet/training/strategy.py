"""Distribution strategy by name."""

import json
import os

import tensorflow as tf


def build_strategy(name: str) -> tf.distribute.Strategy:
  """Returns the strategy a `runtime.strategy` name asks for.

  Args:
    name: 'mirrored': MirroredStrategy over the visible GPUs, or over the
      logical CPU devices when there is no GPU; 'multi_worker':
      MultiWorkerMirroredStrategy with the cluster from `TF_CONFIG`;
      'one_device': the first GPU or the CPU (debugging).
  """
  if name == 'mirrored':
    gpus = tf.config.list_logical_devices('GPU')
    devices = [d.name for d in gpus] or [
        d.name for d in tf.config.list_logical_devices('CPU')]
    return tf.distribute.MirroredStrategy(devices)
  if name == 'multi_worker':
    if 'TF_CONFIG' not in os.environ:
      raise ValueError('strategy multi_worker needs the TF_CONFIG environment '
                       'variable (cluster and task)')
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == 'one_device':
    gpus = tf.config.list_logical_devices('GPU')
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else '/cpu:0')
  raise ValueError(f"unknown strategy {name!r}: use 'mirrored', "
                   "'multi_worker' or 'one_device'")


def is_chief() -> bool:
  """True unless TF_CONFIG names this process a non-chief worker."""
  config = json.loads(os.environ.get('TF_CONFIG', '{}') or '{}')
  task = config.get('task', {})
  cluster = config.get('cluster', {})
  if not task:
    return True
  if task.get('type') == 'chief':
    return True
  # Without a 'chief' job, worker 0 acts as chief.
  return (task.get('type') == 'worker' and 'chief' not in cluster and
          int(task.get('index', 0)) == 0)


def task_index() -> int:
  config = json.loads(os.environ.get('TF_CONFIG', '{}') or '{}')
  return int(config.get('task', {}).get('index', 0))
