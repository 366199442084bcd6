"""Training with fit under strategies, resume after a kill, NaN guard,
backbone initialisation, evaluation CLI."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
import pytest
import tensorflow as tf
import tf_keras

from tests import conftest as root
from tests.training import conftest
from tf_mtdet import cli
from tf_mtdet.config import experiment
from tf_mtdet.losses import total
from tf_mtdet.training import callbacks
from tf_mtdet.training import strategy as strategy_lib
from tf_mtdet.training import train


def _config(records, **extra):
  return experiment.load_config(conftest.TINY_CONFIG,
                                conftest.tiny_overrides(records, **extra))


def test_fit_mirrored_two_cpu_replicas_paper_settings_loss_falls(
    shapes_records, tmp_path):
  """fit on 2 replicas with the paper configs' settings (SyncBN,
  Interleaving, a fused dense auxiliary head, a 3-stage cascade) and
  evaluation every epoch: every loss finite, the total falling, the head's
  own loss reported, each epoch line showing the headline metrics only, and
  TensorBoard's evaluation run keeping every metric."""
  overrides = conftest.tiny_overrides(
      shapes_records, **{'schedule.total_steps': 30,
                         'schedule.steps_per_epoch': 10,
                         'train_data.global_batch_size': 4,
                         'runtime.eval_every_n_epochs': 1,
                         'model.two_stage.norm_activation.use_sync_bn': 'true',
                         'model.two_stage.ej_head.interleaving': 'true',
                         'model.two_stage.dense_aux_heads':
                             '[{type: semantic, semantic: {num_filters: 64}}]',
                         'model.two_stage.feature_fusion.type': 'sum',
                         'model.two_stage.roi_sampler.cascade_iou_thresholds':
                             '[0.6, 0.7]',
                         'model.two_stage.detection_head.'
                         'class_agnostic_bbox_pred': 'true'})
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
  # Measured 4.33 -> 2.29 -> 2.36.
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
    assert tags.get(tag) == [10, 20, 30], (tag, sorted(tags))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_multi_worker_two_processes_end_with_identical_weights(
    shapes_records, tmp_path):
  ports = [_free_port(), _free_port()]
  cluster = {'worker': [f'127.0.0.1:{p}' for p in ports]}
  overrides = conftest.tiny_overrides(
      shapes_records, **{'schedule.total_steps': 4,
                         'schedule.steps_per_epoch': 4,
                         'train_data.global_batch_size': 4,
                         'runtime.strategy': 'multi_worker'})
  # The trainer and strategy are the same for every family: the cheapest to
  # trace runs here.
  code = textwrap.dedent(f"""
      import os, sys, numpy as np
      from tf_mtdet.config import experiment
      from tf_mtdet.training import train
      config = experiment.load_config({conftest.RETINANET_TINY_CONFIG!r},
                                      {overrides!r})
      result = train.train(config, {str(tmp_path / 'model')!r}, verbose=0)
      weights = [v.numpy() for v in result['model'].trainable_variables]
      np.savez(sys.argv[1], *weights)
      print('STEP', result['step'])
      """)
  procs = []
  for index in range(2):
    tf_config = json.dumps({'cluster': cluster,
                            'task': {'type': 'worker', 'index': index}})
    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2', 'TF_CONFIG': tf_config}
    procs.append(subprocess.Popen(
        [sys.executable, '-c', code, str(tmp_path / f'w{index}.npz')],
        cwd=root.REPO_ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True))
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=600))
  finally:
    for p in procs:
      p.kill()
  for p, (stdout, stderr) in zip(procs, outputs):
    assert p.returncode == 0, stdout[-2000:] + stderr[-4000:]
    assert 'STEP 4' in stdout
  w0, w1 = np.load(tmp_path / 'w0.npz'), np.load(tmp_path / 'w1.npz')
  assert len(w0.files) == len(w1.files) > 10
  for key in w0.files:
    np.testing.assert_array_equal(w0[key], w1[key])
  # The chief wrote the checkpoint; the other worker cleaned up after itself.
  assert tf.train.latest_checkpoint(str(tmp_path / 'model' / 'checkpoints'))
  assert not [d for d in os.listdir(tmp_path / 'model') if d.startswith('.')]


def test_resume_after_kill_continues_step_lr_and_losses(shapes_records,
                                                        tmp_path):
  model_dir = tmp_path / 'model'
  # Checkpoints every 5 steps, epochs of 8: every checkpoint before the end
  # is mid-epoch, so the kill is too.
  overrides = conftest.tiny_overrides(
      shapes_records, **{'schedule.total_steps': 40,
                         'schedule.steps_per_epoch': 8,
                         'runtime.checkpoint_every_n_steps': 5})
  # Resuming is the trainer's, the same for every family: the cheapest to
  # trace (RetinaNet) runs here.
  args = ['train', '--config', conftest.RETINANET_TINY_CONFIG, '--model-dir',
          str(model_dir), '--verbose', '2', '--strategy', 'one_device']
  for o in overrides:
    args += ['--set', o]
  code = f'import sys; from tf_mtdet import cli; sys.exit(cli.main({args!r}))'
  env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'}
  proc = subprocess.Popen([sys.executable, '-c', code], cwd=root.REPO_ROOT,
                          env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  ckpt_dir = str(model_dir / 'checkpoints')
  deadline = time.time() + 400
  try:
    while time.time() < deadline and proc.poll() is None:
      latest = tf.train.latest_checkpoint(ckpt_dir)
      if latest and int(latest.rsplit('-', 1)[1]) >= 10:
        break
      time.sleep(0.5)
    assert proc.poll() is None, 'training ended before it could be killed'
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.kill()
    first_run_log = proc.communicate()[0]
  killed_at = int(tf.train.latest_checkpoint(ckpt_dir).rsplit('-', 1)[1])
  assert 10 <= killed_at < 40 and killed_at % 8
  first_losses = [float(line.split('total_loss: ')[1].split()[0])
                  for line in first_run_log.splitlines()
                  if 'total_loss: ' in line]
  assert first_losses

  config = experiment.load_config(conftest.RETINANET_TINY_CONFIG, overrides)
  config.runtime.strategy = 'one_device'
  # Restored state: step, optimizer slots and learning rate.
  state = train.build_training_state(
      config, tf.distribute.OneDeviceStrategy('/cpu:0'), str(model_dir))
  assert state.resumed_from.endswith(f'ckpt-{killed_at}')
  assert int(state.optimizer.iterations.numpy()) == killed_at
  state.optimizer._create_all_weights(state.model.trainable_variables)  # pylint: disable=protected-access
  reader = tf.train.load_checkpoint(state.resumed_from)
  slot_names = [n for n in reader.get_variable_to_shape_map()
                if '.OPTIMIZER_SLOT/optimizer/momentum' in n]
  assert slot_names
  slots = {v.name: v for v in state.optimizer.variables()
           if 'momentum' in v.name}
  nonzero = [k for k, v in slots.items() if np.abs(v.numpy()).sum() > 0]
  assert len(nonzero) >= len(slots) // 2  # restored, not freshly zeroed
  # By hand: lr 0.01 x 4 / 4 = 0.01 after a 5-step warmup; the 1x decay
  # epochs 9 and 11 of 12 scale into 40 steps as boundaries 30 and 37
  # (36.67 rounded); the rate drops after each boundary step.
  def hand_lr(step):
    return 0.01 if step <= 30 else 0.001 if step <= 37 else 0.0001
  assert float(state.lr_schedule(killed_at)) == pytest.approx(
      hand_lr(killed_at), rel=1e-5)
  for step in (5, 30, 31, 37, 38, 40):
    assert float(state.lr_schedule(step)) == pytest.approx(hand_lr(step),
                                                           rel=1e-5)

  result = train.train(config, str(model_dir), verbose=0)
  assert result['resumed_from'].endswith(f'ckpt-{killed_at}')
  assert result['step'] == 40
  # The resumed run's epochs end at steps 16, 24, 32, 40 (the killed epoch
  # restarts its count but not the step counter).
  assert result['history']['learning_rate'][-1] == pytest.approx(0.0001,
                                                                 rel=1e-5)
  resumed_losses = result['history']['total_loss']
  # Continued, not restarted: better than the killed run's first epoch.
  assert resumed_losses[0] < first_losses[0]
  assert tf.train.latest_checkpoint(ckpt_dir).endswith('ckpt-40')


def _poison_losses_after(monkeypatch, good_steps: int, kind: str) -> None:
  """From step good_steps + 1 on, the loss is NaN ('loss'), or stays finite
  while its gradient is NaN ('gradient': d sqrt(x)/dx at 0 is Inf, times 0)."""
  calls = tf.Variable(0, trainable=False)
  original = total.TotalLoss.__call__

  def poisoned(self, outputs, labels):
    result = dict(original(self, outputs, labels))
    step = calls.assign_add(1)
    # RetinaNet's classifier logits (per level), or the two-stage one's.
    logits = outputs.get('cls_outputs', outputs.get('class_outputs'))
    zero = 0.0 * tf.reduce_sum(tf.nest.flatten(logits)[0])
    if kind == 'loss':
      bad = lambda: zero + float('nan')
    else:
      bad = lambda: tf.sqrt(tf.square(zero))
    # tf.cond, not tf.where: only the taken branch is differentiated.
    poison = tf.cond(step > good_steps, bad, lambda: zero)
    result['model_loss'] = result['model_loss'] + poison
    return result

  monkeypatch.setattr(total.TotalLoss, '__call__', poisoned)


@pytest.mark.parametrize('kind, message', [
    ('loss', 'non-finite loss at step 4'),
    ('gradient', 'non-finite weights at step 4 (the loss was finite'),
])
def test_non_finite_training_keeps_the_last_good_checkpoint(
    shapes_records, tmp_path, capsys, monkeypatch, kind, message):
  """3 good steps, checkpoints every step, then NaN: the newest checkpoint is
  step 3 and holds finite weights; nothing after it was written."""
  _poison_losses_after(monkeypatch, 3, kind)
  model_dir = str(tmp_path / 'model')
  overrides = conftest.tiny_overrides(shapes_records, **{
      'schedule.total_steps': 6, 'schedule.steps_per_epoch': 6,
      'runtime.checkpoint_every_n_steps': 1})
  # The guard is the trainer's, the same for every family: the cheapest to
  # trace runs here.
  code = cli.main(['train', '--config', conftest.RETINANET_TINY_CONFIG,
                   '--model-dir', model_dir, '--verbose', '0', '--strategy',
                   'one_device', *sum([['--set', o] for o in overrides], [])])
  err = capsys.readouterr().err
  assert code == 3
  assert message in err and 'last good' in err
  ckpt_dir = os.path.join(model_dir, 'checkpoints')
  state = tf.train.get_checkpoint_state(ckpt_dir)
  steps = sorted(int(p.rsplit('-', 1)[1])
                 for p in state.all_model_checkpoint_paths)
  assert steps[-1] == 3 and 4 not in steps
  reader = tf.train.load_checkpoint(state.model_checkpoint_path)
  checked = 0
  for name in reader.get_variable_to_shape_map():
    value = reader.get_tensor(name)
    if isinstance(value, np.ndarray) and value.dtype.kind == 'f':
      assert np.isfinite(value).all(), name
      checked += 1
  assert checked > 50  # The model's weights, not just counters.


def test_backbone_initialised_from_checkpoint(shapes_records, tmp_path):
  config = _config(shapes_records)
  source = train.build_model(config)
  # Model Garden detection checkpoints expose `backbone`; classification
  # checkpoints nest it under `model`.
  det_path = tf.train.Checkpoint(backbone=source.backbone).write(
      str(tmp_path / 'det' / 'ckpt'))
  cls_path = tf.train.Checkpoint(model=tf.train.Checkpoint(
      backbone=source.backbone)).write(str(tmp_path / 'cls' / 'ckpt'))
  for path in (det_path, cls_path):
    target = train.build_model(config)
    train.restore_init_checkpoint(target, path, 'backbone')
    for a, b in zip(source.backbone.weights, target.backbone.weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
    head_a = source.detection_head[0].weights[0].numpy()
    head_b = target.detection_head[0].weights[0].numpy()
    assert not np.array_equal(head_a, head_b)
  with pytest.raises(ValueError, match='no checkpoint'):
    train.restore_init_checkpoint(target, str(tmp_path / 'empty'), 'backbone')


def _printed(out: str, title: str) -> dict[str, float]:
  line = next(l for l in out.splitlines() if l.startswith(title))
  return {k: float(v) for k, v in
          (item.split('=') for item in line[len(title):].split())}


def test_evaluate_and_export_cli(shapes_records, tmp_path, capsys):
  """evaluate prints what pycocotools' COCOeval computes from the results
  JSON it writes; export writes versioned SavedModels with the signatures."""
  model_dir = str(tmp_path / 'model')
  overrides = conftest.tiny_overrides(shapes_records)
  sets = sum([['--set', o] for o in overrides], [])
  # What evaluate and export read, without a training graph to trace.
  conftest.write_untrained_checkpoint(
      experiment.load_config(conftest.TINY_CONFIG, overrides), model_dir)
  results = str(tmp_path / 'results.json')
  # Score threshold 0: a 2-step model still returns its top detections.
  assert cli.main(['evaluate', '--config', conftest.TINY_CONFIG,
                   '--checkpoint', model_dir, '--results-json', results,
                   *sets, '--set', 'model.two_stage.detection_generator.'
                   'pre_nms_score_threshold=0.0']) == 0
  out = capsys.readouterr().out
  detections = json.load(open(results))
  assert detections and all('segmentation' in d for d in detections)
  gt = COCO(os.path.join(shapes_records, 'shapes_val-annotations.json'))
  for title, iou_type in (('box ', 'bbox'), ('mask', 'segm')):
    coco_eval = COCOeval(gt, gt.loadRes(results), iou_type)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    printed = _printed(out, title)
    for i, key in enumerate(('AP', 'AP50', 'AP75')):
      assert printed[key] == pytest.approx(max(coco_eval.stats[i], 0.0),
                                           abs=6e-5), (title, key)
  # export as a command: the next free version (3 beside an existing 2).
  export_dir = str(tmp_path / 'export')
  os.makedirs(os.path.join(export_dir, '2'))
  assert cli.main(['export', '--config', conftest.TINY_CONFIG,
                   '--checkpoint', model_dir, '--out', export_dir, *sets]) == 0
  line = capsys.readouterr().out.strip().splitlines()[-1]
  assert line == f'exported {os.path.join(export_dir, "3")}'
  loaded = tf.saved_model.load(os.path.join(export_dir, '3'))
  assert set(loaded.signatures) == {'serving_default', 'image_bytes',
                                    'tf_example'}
  assert sorted(os.listdir(export_dir)) == ['2', '3']  # Nothing temporary.
  assert cli.main(['evaluate', '--config', conftest.TINY_CONFIG,
                   '--checkpoint', str(tmp_path / 'nothing'), *sets]) == 1
  # The metrics a config (or --metrics) names: proposal AR and VOC07 mAP.
  assert cli.main(['evaluate', '--config', conftest.TINY_CONFIG,
                   '--checkpoint', model_dir, '--metrics',
                   'proposal_recall,voc07', *sets]) == 0
  out = capsys.readouterr().out
  assert 'proposals AR@100=' in out and 'AR@1000=' in out
  assert 'VOC07 mAP@0.5=' in out and 'box  AP=' not in out
  # mIoU needs a semantic output, which this model lacks.
  assert cli.main(['evaluate', '--config', conftest.TINY_CONFIG,
                   '--checkpoint', model_dir, '--metrics', 'miou', *sets]) == 1
  assert 'miou needs a model with a semantic output' in capsys.readouterr().err


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


def test_mixed_bfloat16_trains_and_policy_is_restored(shapes_records,
                                                     tmp_path):
  overrides = conftest.tiny_overrides(
      shapes_records, **{'schedule.total_steps': 3,
                         'schedule.steps_per_epoch': 3,
                         'runtime.mixed_precision': 'mixed_bfloat16',
                         'runtime.strategy': 'one_device',
                         # bfloat16 is emulated on most CPUs: small images.
                         'train_data.parser.output_size': '[64, 96]'})
  config = experiment.load_config(conftest.TINY_CONFIG, overrides)
  result = train.train(config, str(tmp_path / 'model'), verbose=0)
  model = result['model']
  assert model.backbone.layers[2].compute_dtype == 'bfloat16'
  assert {v.dtype.name for v in model.trainable_variables} == {'float32'}
  assert all(math.isfinite(x) for x in result['history']['total_loss'])
  assert tf_keras.mixed_precision.global_policy().name == 'float32'
  # The optimizer's slots exist before the first step, so the train step is
  # traced once, not twice (a tf.function creating variables is retraced).
  assert result['trainer'].train_function.experimental_get_tracing_count() == 1
