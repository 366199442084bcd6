"""analyze-logs reads the event files in train's layout (written here with
tf.summary as Keras' TensorBoard callback and the evaluation callback write
them), and configs --show prints the merged config."""

import json
import os

import pytest
import tensorflow as tf
import yaml

from tf_mtdet import cli
from tf_mtdet.config import experiment


def _write(folder, scalars, text=False):
  writer = tf.summary.create_file_writer(folder)
  with writer.as_default():
    for tag, step, value in scalars:
      tf.summary.scalar(tag, value, step=step)
    if text:  # Keras also writes the model config as text.
      tf.summary.text('keras', 'model config', step=0)
  writer.close()


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('runs')
  a, b = str(root / 'run_a'), str(root / 'run_b')
  _write(os.path.join(a, 'logs', 'train'),
         [('batch_total_loss', 0, 2.0), ('batch_total_loss', 10, 1.5),
          ('batch_total_loss', 20, 1.0), ('epoch_total_loss', 0, 1.625)],
         text=True)
  # A resumed run logs step 20 again: the later value stands.
  _write(os.path.join(a, 'logs', 'train'), [('batch_total_loss', 20, 0.75)])
  _write(os.path.join(a, 'logs', 'evaluation'), [('AP', 20, 0.25)])
  _write(os.path.join(a, 'logs', 'validation'), [('epoch_AP', 0, 0.25)])
  _write(os.path.join(b, 'logs', 'train'), [('batch_total_loss', 0, 3.0)])
  return a, b


def test_reads_logged_values_and_overlays_runs(runs, tmp_path, capsys):
  a, b = runs
  out = str(tmp_path / 'curves.png')
  assert cli.main(['analyze-logs', a, b, '--keys', 'total_loss,val_AP',
                   '--json', '--out', out]) == 0
  series = json.loads(capsys.readouterr().out)
  assert series['run_a']['total_loss'] == [[0, 2.0], [10, 1.5], [20, 0.75]]
  assert series['run_a']['val_AP'] == [[20, 0.25]]
  assert series['run_b'] == {'total_loss': [[0, 3.0]]}
  assert open(out, 'rb').read(4) == b'\x89PNG'


def test_default_keys_and_epoch_series(runs, capsys):
  a, _ = runs
  assert cli.main(['analyze-logs', os.path.join(a, 'logs'), '--json']) == 0
  assert set(json.loads(capsys.readouterr().out)['logs']) == {
      'total_loss', 'val_AP'}
  assert cli.main(['analyze-logs', a, '--keys', 'epoch_total_loss',
                   '--json']) == 0
  assert json.loads(capsys.readouterr().out)['run_a'] == {
      'epoch_total_loss': [[0, 1.625]]}


@pytest.mark.parametrize('argv, message', [
    (['{missing}', '--json'], 'no such run directory'),
    (['{empty}', '--json'], 'no TensorBoard event files'),
    (['{a}', '--keys', 'box_loss', '--json'],
     '--keys box_loss: not logged in run_a; logged: '),
    (['{a}'], 'give --out OUT.png'),
    (['{a}', '--out', '{tmp}/x.jpg'], 'the picture is written as PNG'),
])
def test_bad_input_is_one_line(runs, tmp_path, capsys, argv, message):
  a, _ = runs
  os.makedirs(tmp_path / 'empty', exist_ok=True)
  argv = [x.format(a=a, missing=str(tmp_path / 'nope'),
                   empty=str(tmp_path / 'empty'), tmp=str(tmp_path))
          for x in argv]
  assert cli.main(['analyze-logs', *argv]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('tf-mtdet analyze-logs: error:')
  assert message in err[0]
  assert not os.path.exists(tmp_path / 'x.jpg')


def test_configs_show_prints_the_merged_config(tmp_path, capsys):
  name = 'mask_rcnn/mask_rcnn_quickstart_shapes'
  assert cli.main(['configs', '--show', name, '--set',
                   'schedule.total_steps=500']) == 0
  shown = capsys.readouterr().out
  data = yaml.safe_load(shown)
  # The base's values, the file's own, and --set's.
  assert data['model']['two_stage']['backbone']['resnet']['model_id'] == 18
  assert data['model']['two_stage']['anchor']['anchor_size'] == 2.0
  assert data['schedule']['total_steps'] == 500
  path = tmp_path / 'shown.yaml'
  path.write_text(shown)
  assert experiment.load_config(str(path)).as_dict() == (
      experiment.load_config(name, ['schedule.total_steps=500']).as_dict())


def test_configs_show_bad_input_is_one_line(capsys):
  assert cli.main(['configs', '--show', 'mask_rcnn/nope']) == 1
  assert cli.main(['configs', '--set', 'schedule.total_steps=5']) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2
  assert 'mask_rcnn/nope: no such file' in err[0]
  assert '--set needs --show NAME' in err[1]
