"""Multi-worker training, resume after a kill, the NaN guard (in its own
file so the test scheduler runs it beside the other long training files)."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import conftest as root
from tests.training import conftest
from tf_mtdet import cli
from tf_mtdet.config import experiment
from tf_mtdet.losses import total
from tf_mtdet.training import train


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


