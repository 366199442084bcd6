"""A shard that goes bad under training: one line naming it, the last
checkpoint kept."""

import os
import shutil
import struct

import tensorflow as tf

from tests.training import conftest
from tf_mtdet import cli


def _flip_byte_in_record(path: str, record: int) -> int:
  """Corrupts a record's data (its frame stays whole: the size check before
  training passes); returns where TensorFlow says the record's data starts."""
  data = bytearray(open(path, 'rb').read())
  offset = 0
  for _ in range(record):
    offset += struct.unpack('<Q', data[offset:offset + 8])[0] + 16
  data[offset + 12 + 5] ^= 0xFF
  open(path, 'wb').write(bytes(data))
  return offset + 12


def test_read_error_during_training_is_one_line_and_keeps_checkpoint(
    shapes_records, tmp_path, capsys):
  records = str(tmp_path / 'records')
  shutil.copytree(shapes_records, records)
  shard = os.path.join(records, 'shapes_train-00000-of-00001.tfrecord')
  # Batches of 4 in file order: step 1 reads records 0-3, step 2 fails.
  where = _flip_byte_in_record(shard, 5)
  model_dir = str(tmp_path / 'model')
  overrides = conftest.tiny_overrides(records, **{
      'schedule.total_steps': 4, 'schedule.steps_per_epoch': 4,
      'runtime.checkpoint_every_n_steps': 1})
  # Reading is the input pipeline's, the same for every family: the
  # cheapest to trace runs here.
  code = cli.main(['train', '--config', conftest.RETINANET_TINY_CONFIG,
                   '--model-dir', model_dir, '--verbose', '0', '--strategy',
                   'one_device', *sum([['--set', o] for o in overrides], [])])
  err = capsys.readouterr().err
  assert code == 1
  assert 'Traceback' not in err
  line = err.strip().splitlines()[-1]
  checkpoints = os.path.join(model_dir, 'checkpoints')
  assert line.startswith(
      f'tf-mtdet train: error: train_data.input_path: {shard}: record 5: '
      f'corrupted record at {where} (read error during training: corrupted '
      f'record at {where}); the last checkpoint, {checkpoints}/ckpt-1, is '
      'kept; rebuild with tf-mtdet build-tfrecord --format coco'), line
  assert tf.train.latest_checkpoint(checkpoints).endswith('ckpt-1')
