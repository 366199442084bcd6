"""Training with fit on 2 logical CPU replicas (paper settings), strategy
names, the NaN guard callback. Fault tolerance: test_fault_tolerance.py;
the CLI, initialisation and mixed precision: test_training_cli.py."""

import json
import math
import os
import textwrap

import pytest
import tensorflow as tf

from tests.training import conftest
from tf_mtdet.training import callbacks
from tf_mtdet.training import strategy as strategy_lib


def test_fit_mirrored_two_cpu_replicas_paper_settings_loss_falls(
    shapes_records, tmp_path):
  """fit on 2 replicas with the paper configs' settings (SyncBN; SA-FPN +
  EJ-Head on a 3-stage cascade, the SA-FPN paper's Table 6 row: Interleaving,
  Enriched Feature, Boundary Refinement; plus a fused dense auxiliary head)
  and evaluation every epoch: every loss finite, the total falling, the
  head's own loss reported, each epoch line showing the headline metrics
  only, and TensorBoard's evaluation run keeping every metric."""
  overrides = conftest.tiny_overrides(
      shapes_records, **{'schedule.total_steps': 9,
                         'schedule.steps_per_epoch': 3,
                         'train_data.global_batch_size': 4,
                         'runtime.eval_every_n_epochs': 1,
                         'model.two_stage.norm_activation.use_sync_bn': 'true',
                         'model.two_stage.decoder.type': 'sa_fpn',
                         'model.two_stage.decoder.sa_fpn.num_filters': 64,
                         'model.two_stage.ej_head.interleaving': 'true',
                         'model.two_stage.ej_head.enriched_feature': 'true',
                         'model.two_stage.ej_head.boundary_refinement':
                             'residual',
                         'model.two_stage.detection_head.'
                         'cascade_class_ensemble': 'true',
                         'model.two_stage.dense_aux_heads':
                             ('[{type: semantic, semantic: {num_filters: 64, '
                              'levels: [2, 4]}}]'),
                         'model.two_stage.feature_fusion.type': 'sum',
                         'model.two_stage.roi_sampler.cascade_iou_thresholds':
                             '[0.6, 0.7]',
                         'model.two_stage.detection_head.'
                         'class_agnostic_bbox_pred': 'true',
                         **conftest.LEAN_TWO_STAGE})
  model_dir = str(tmp_path / 'model')
  code = textwrap.dedent(f"""
      import json, tensorflow as tf
      cpu = tf.config.list_physical_devices('CPU')[0]
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      from tf_mtdet.config import experiment
      from tf_mtdet.training import train
      config = experiment.load_config({conftest.TINY_CONFIG!r}, {overrides!r})
      result = train.train(config, {model_dir!r}, verbose=2)
      print('REPLICAS', result['num_replicas'], result['strategy'])
      print('HISTORY', json.dumps(result['history']))
      """)
  out = conftest.run_python(code, timeout=900)
  # The strategy train() itself built (runtime.strategy 'mirrored').
  assert 'REPLICAS 2 MirroredStrategy' in out.stdout
  history = json.loads(out.stdout.split('HISTORY', 1)[1].strip().splitlines()[0])
  for name, values in history.items():
    assert len(values) == 3 and all(math.isfinite(v) for v in values), (
        name, values)
  losses = history['total_loss']
  assert losses[-1] < 0.8 * losses[0], losses
  assert history['semantic_loss'][0] > 0
  # Evaluated after every epoch; the headline metrics only in the logs.
  for key in ('val_AP', 'val_AP50', 'val_mask_AP'):
    assert len(history[key]) == 3 and all(0 <= v <= 1 for v in history[key])
  assert not [k for k in history if k.startswith('val_') and k not in (
      'val_AP', 'val_AP50', 'val_mask_AP')]
  epoch_lines = [l for l in out.stdout.splitlines() if 'val_AP:' in l]
  assert len(epoch_lines) == 3, out.stdout[-3000:]
  # Nine losses, the rate and three metrics fit a line; every COCO metric
  # would not.
  assert all('val_APs' not in l and len(l) < 600 for l in epoch_lines)
  # Every COCO metric is in TensorBoard's evaluation run, at the step.
  tags = {}
  for path in tf.io.gfile.glob(os.path.join(model_dir, 'logs', 'evaluation',
                                            'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tags.setdefault(value.tag, []).append(event.step)
  for tag in ('AP', 'APs', 'AP75', 'ARmax100', 'mask_AP', 'mask_APl'):
    assert tags.get(tag) == [3, 6, 9], (tag, sorted(tags))


def test_strategy_names_and_chief():
  assert strategy_lib.build_strategy('one_device').num_replicas_in_sync == 1
  with pytest.raises(ValueError, match='unknown strategy'):
    strategy_lib.build_strategy('tpu_pod')
  os.environ.pop('TF_CONFIG', None)
  with pytest.raises(ValueError, match='TF_CONFIG'):
    strategy_lib.build_strategy('multi_worker')
  assert strategy_lib.is_chief()


def test_nan_guard_callback_unit():
  guard = callbacks.NaNGuard()

  class _Model:
    stop_training = False
    optimizer = type('O', (), {'iterations': tf.Variable(7)})()

  guard.set_model(_Model())
  guard.on_train_batch_end(0, {'total_loss': 1.0})
  assert guard.failure is None and not guard.model.stop_training
  guard.on_train_batch_end(1, {'total_loss': float('inf'), 'mask_loss': 2.0})
  assert guard.model.stop_training and 'step 7' in guard.failure


