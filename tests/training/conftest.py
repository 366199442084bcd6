"""Fixtures for training tests: tiny shapes records and config overrides."""

import os
import subprocess
import sys

import pytest

from tests import conftest as root
from tf_mtdet import cli

TINY_CONFIG = os.path.join(root.REPO_ROOT, 'configs', 'mask_rcnn',
                           'mask_rcnn_tiny_shapes.yaml')
# The cheapest family to trace (no RoI stages): for tests of what every
# family shares (the trainer, strategies, checkpoints).
RETINANET_TINY_CONFIG = os.path.join(root.REPO_ROOT, 'configs', 'retinanet',
                                     'retinanet_tiny_shapes.yaml')


@pytest.fixture(scope='session')
def shapes_records(tmp_path_factory) -> str:
  """8 training and 4 validation shapes images as TFRecords (masks and the
  semantic map); returns the dir."""
  out = tmp_path_factory.mktemp('shapes')
  for split, num, seed in (('train', 8, 0), ('val', 4, 1)):
    assert cli.main(['make-shapes', '--out', str(out / f'shapes_{split}'),
                     '--num-images', str(num), '--seed', str(seed)]) == 0
    assert cli.main([
        'build-tfrecord', '--quiet', '--format', 'coco', '--annotations',
        str(out / f'shapes_{split}' / 'annotations.json'), '--images',
        str(out / f'shapes_{split}' / 'images'), '--output',
        str(out / 'records' / f'shapes_{split}'), '--include-masks',
        '--semantic', '--num-workers', '1']) == 0
  return str(out / 'records')


# The 2-replica two-stage tests train the tiny model on ResNet-10 and P2-P4
# (every part unchanged): tracing forward and backward once per replica
# dominates them, and this trims it by a quarter (tiny CoMask's train,
# evaluate, export and serve: 175 -> 129 s on the idle 2-core machine).
LEAN_TWO_STAGE = {'model.two_stage.backbone.resnet.model_id': '10',
                  'model.two_stage.max_level': '4'}


def tiny_overrides(records: str, **extra) -> list[str]:
  """`--set` values pointing the tiny config at `records`, overfit-friendly."""
  values = {
      'train_data.input_path': os.path.join(records, 'shapes_train-*.tfrecord'),
      'eval_data.input_path': os.path.join(records, 'shapes_val-*.tfrecord'),
      'eval_data.annotation_file': os.path.join(
          records, 'shapes_val-annotations.json'),
      'train_data.label_map': os.path.join(records, 'shapes_train-label_map.json'),
      'train_data.parser.aug_rand_hflip': 'false',
      'train_data.parser.color_jitter': '0',
      'train_data.parser.aug_scale_min': '1.0',
      'train_data.parser.aug_scale_max': '1.0',
      'train_data.shuffle_buffer_size': '1',
      'train_data.parser.output_size': '[128, 160]',
      'eval_data.parser.output_size': '[128, 160]',
      'schedule.warmup_steps': '5',
      'runtime.eval_every_n_epochs': '0',
      'runtime.log_every_n_steps': '5',
  }
  values.update(extra)
  if 'schedule.total_steps' in extra and 'schedule.warmup_steps' not in extra:
    # Warmup must be shorter than training (schedules.validate_schedule).
    values['schedule.warmup_steps'] = str(
        min(5, int(extra['schedule.total_steps']) - 1))
  return [f'{k}={v}' for k, v in values.items()]


def run_python(code: str, env_extra: dict | None = None, timeout: int = 600,
               check: bool = True) -> subprocess.CompletedProcess:
  """Runs `code` in a fresh interpreter at the repository root."""
  env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2', **(env_extra or {})}
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, cwd=root.REPO_ROOT, env=env,
                       timeout=timeout)
  if check:
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
  return out


def write_untrained_checkpoint(config, model_dir: str) -> str:
  """A randomly initialised model saved as `train` saves it (model dir's
  checkpoints/ckpt-1), for tests of what reads checkpoints: no training
  graph to trace. Returns the checkpoint path."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  from tf_mtdet import families  # pylint: disable=g-import-not-at-top
  from tf_mtdet.training import train  # pylint: disable=g-import-not-at-top
  tf_keras.utils.set_random_seed(0)
  family = families.get(config)
  model = family.build_model()
  size = 64
  info = tf.constant([[[size, size], [size, size], [1, 1], [0, 0]]],
                     tf.float32)
  family.call_inference(model, tf.zeros([1, size, size, 3]), info)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model),
      os.path.join(model_dir, train.CHECKPOINT_SUBDIR), max_to_keep=1)
  return manager.save(checkpoint_number=1)
