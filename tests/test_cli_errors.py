"""Bad inputs across every `tf-mtdet` command: one line naming the file,
record or field, a non-zero exit, no traceback (unless --debug)."""

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from typing import Callable, List

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from tests import bombs
from tests import conftest
from tf_mtdet import cli

TINY_CONFIG = os.path.join(conftest.REPO_ROOT, 'configs', 'mask_rcnn',
                           'mask_rcnn_tiny_shapes.yaml')


@dataclasses.dataclass
class World:
  """Files the bad inputs are made of (built once)."""
  root: str

  def __getattr__(self, name: str) -> str:
    # bomb_images__bomb_png -> ROOT/bomb_images/bomb.png
    path = re.sub(r'_(png|jpg|json|txt|yaml|tfrecord)$', r'.\1', name)
    return os.path.join(self.root, path.replace('__', '/'))


def _build(annotations: str, images: str, output: str, *extra: str) -> int:
  return cli.main(['build-tfrecord', '--quiet', '--format', 'coco',
                   '--annotations', annotations, '--images', images,
                   '--output', output, '--num-workers', '1', *extra])


@pytest.fixture(scope='module')
def world(tmp_path_factory) -> World:
  w = World(str(tmp_path_factory.mktemp('bad_inputs')))
  coco = conftest.write_tiny_coco(w.root, num_images=4)
  conftest.save_json(coco, w.annotations_json)
  assert _build(w.annotations_json, w.images, w.good__train,
                '--num-shards', '2') == 0
  # A copy whose first shard is cut in half.
  os.makedirs(w.cut)
  for name in os.listdir(w.good):
    shutil.copy(os.path.join(w.good, name), w.cut)
  shard = os.path.join(w.cut, 'train-00000-of-00002.tfrecord')
  data = open(shard, 'rb').read()
  open(shard, 'wb').write(data[:len(data) // 2])
  # A TFRecord another tool wrote (classification keys).
  with tf.io.TFRecordWriter(w.foreign_tfrecord) as writer:
    writer.write(tf.train.Example(features=tf.train.Features(feature={
        'image/raw': tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[b'\0' * 12])),
        'label': tf.train.Feature(int64_list=tf.train.Int64List(
            value=[3]))})).SerializeToString())
  # A data set whose one image is a decompression bomb.
  os.makedirs(w.bomb_images)
  with open(w.bomb_images__bomb_png, 'wb') as f:
    f.write(bombs.png_bomb())
  conftest.save_json({
      'images': [{'id': 1, 'file_name': 'bomb.png', 'height': 20000,
                  'width': 20000}],
      'annotations': [{'id': 1, 'image_id': 1, 'category_id': 1,
                       'bbox': [10, 10, 100, 100], 'area': 1e4,
                       'iscrowd': 0}],
      'categories': [{'id': 1, 'name': 'thing'}]}, w.bomb_json)
  with open(w.jpeg_bomb_jpg, 'wb') as f:
    f.write(bombs.jpeg_header_bomb())
  Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(w.small_png)
  with open(w.notes_txt, 'w') as f:
    f.write('not json {')
  with open(w.bad_yaml, 'w') as f:
    f.write('schedule: [unclosed\n')
  os.makedirs(w.nonempty)
  open(w.nonempty__keep, 'w').close()
  # A checkpoint evaluate can resolve (the shard check comes first).
  tf.train.Checkpoint(v=tf.Variable(1.0)).save(w.ckpt__ckpt)
  return w


def _train(w: World, *sets: str) -> List[str]:
  argv = ['train', '--config', TINY_CONFIG, '--model-dir', w.model_dir]
  for item in sets:
    argv += ['--set', item]
  return argv


def _eval(w: World, *sets: str) -> List[str]:
  argv = ['evaluate', '--config', TINY_CONFIG, '--checkpoint', w.ckpt,
          '--results-json', w.results_json]
  for item in sets:
    argv += ['--set', item]
  return argv


@dataclasses.dataclass
class Case:
  name: str
  argv: Callable[[World], List[str]]
  # The message after 'tf-mtdet <command>: error: ', as a regex with {w.X}
  # placeholders (escaped when filled in).
  message: str


CASES = [
    # build-tfrecord
    Case('coco_without_images',
         lambda w: ['build-tfrecord', '--format', 'coco', '--annotations',
                    w.annotations_json, '--output', w.out__a],
         r'--format coco needs --annotations and --images'),
    Case('annotations_missing',
         lambda w: ['build-tfrecord', '--format', 'coco', '--annotations',
                    w.missing_json, '--images', w.images, '--output',
                    w.out__b],
         r'{w.missing_json}.*(No such file|cannot read)'),
    Case('annotations_not_json',
         lambda w: ['build-tfrecord', '--format', 'coco', '--annotations',
                    w.notes_txt, '--images', w.images, '--output', w.out__c],
         r'{w.notes_txt}.*JSON'),
    Case('zero_shards',
         lambda w: ['build-tfrecord', '--format', 'coco', '--annotations',
                    w.annotations_json, '--images', w.images, '--output',
                    w.out__d, '--num-shards', '0', '--quiet'],
         r'--num-shards must be >= 1, got 0'),
    Case('voc_masks_without_box_masks',
         lambda w: ['build-tfrecord', '--format', 'voc', '--voc-root',
                    w.root, '--output', w.out__e, '--include-masks'],
         r'VOC annotations have boxes only: --include-masks/--semantic need '
         r'--box-masks'),
    Case('bomb_image_strict',
         lambda w: ['build-tfrecord', '--format', 'coco', '--annotations',
                    w.bomb_json, '--images', w.bomb_images, '--output',
                    w.out__f, '--strict', '--quiet', '--num-workers', '1'],
         r'{w.bomb_images__bomb_png}: image declares 20000 x 20000 pixels '
         r'\(width x height; 400000000 pixels to decode\), above the limit '
         r'of 50000000 pixels \(--max-image-pixels\); not decoded '
         r'\[image_too_large\]'),
    Case('output_under_a_file',
         lambda w: ['build-tfrecord', '--format', 'coco', '--annotations',
                    w.annotations_json, '--images', w.images, '--output',
                    w.notes_txt + '/out', '--quiet', '--num-workers', '1'],
         r'{w.notes_txt}: output directory is not writable'),
    # verify-tfrecord
    Case('verify_matches_nothing',
         lambda w: ['verify-tfrecord', w.nowhere + '/*.tfrecord'],
         r"PATTERN: '{w.nowhere}/\*.tfrecord' matches no file"),
    Case('verify_cut_shard',
         lambda w: ['verify-tfrecord', w.cut + '/train-*.tfrecord'],
         r'1 of 2 shard\(s\) bad, first '
         r'{w.cut__train-00000-of-00002.tfrecord}; rebuild with tf-mtdet '
         r'build-tfrecord --format coco --annotations {w.annotations_json} '
         r'--images {w.images} --output {w.cut__train} --num-shards 2'),
    # make-shapes
    Case('shapes_into_nonempty_dir',
         lambda w: ['make-shapes', '--out', w.nonempty, '--num-images', '1'],
         r"output directory '{w.nonempty}' already exists and is not empty; "
         r'remove it or choose another path'),
    Case('shapes_zero_images',
         lambda w: ['make-shapes', '--out', w.out__g, '--num-images', '0'],
         r'num_images must be a positive integer, got 0'),
    # train
    Case('config_missing',
         lambda w: ['train', '--config', w.missing_yaml, '--model-dir',
                    w.model_dir],
         r'{w.missing_yaml}: no such file, and no shipped config of that '
         r'name. List the \d+ shipped configs with `tf-mtdet configs`.'),
    Case('config_bad_yaml',
         lambda w: ['train', '--config', w.bad_yaml, '--model-dir',
                    w.model_dir],
         r'{w.bad_yaml}: invalid YAML'),
    Case('unknown_key',
         lambda w: _train(w, 'schedule.nope=3'),
         r"--set 'schedule.nope=3': .*nope"),
    Case('set_without_equals',
         lambda w: _train(w, 'schedule.epochs'),
         r"--set 'schedule.epochs': expected key=value"),
    Case('decay_past_the_end',
         lambda w: _train(w, 'schedule.epochs=1'),
         r'schedule.decay_epochs=\[9, 11\]: 9, 11 not inside training: each '
         r'decay epoch must be > 0 and < schedule.epochs \(1\); \[\] keeps '
         r'the learning rate constant'),
    Case('warmup_longer_than_training',
         lambda w: _train(w, 'schedule.total_steps=20'),
         r'schedule.warmup_steps=50: warmup must be shorter than training '
         r'\(20 steps: schedule.total_steps\)'),
    Case('train_pattern_matches_nothing',
         lambda w: _train(w, f'train_data.input_path={w.nowhere}/x-*.tfrecord'),
         r"train_data.input_path: '{w.nowhere}/x-\*.tfrecord' matches no "
         r'file'),
    Case('train_cut_shard',
         lambda w: _train(w, f'train_data.input_path={w.cut}/train-*.tfrecord'),
         r'train_data.input_path: {w.cut__train-00000-of-00002.tfrecord}: '
         r'\d+ bytes but {w.cut__train-summary.json} recorded \d+ \(truncated '
         r'since it was built\); rebuild with tf-mtdet build-tfrecord '
         r'--format coco --annotations {w.annotations_json} --images '
         r'{w.images} --output {w.cut__train} --num-shards 2'),
    Case('train_foreign_tfrecord',
         lambda w: _train(w, f'train_data.input_path={w.foreign_tfrecord}'),
         r'train_data.input_path: {w.foreign_tfrecord}: record 0: not a '
         r'detection example: it lacks image/encoded, .*image/object/class/'
         r'label \(its keys: image/raw, label\); rebuild with tf-mtdet '
         r'build-tfrecord'),
    Case('train_shards_without_masks',
         lambda w: _train(w, f'train_data.input_path={w.good}/train-*.tfrecord'),
         r'train_data.input_path: {w.good__train-00000-of-00002.tfrecord}: '
         r'record 0 has instances but no masks \(image/object/mask\), and the '
         r'model trains a mask branch: build the shards with --include-masks '
         r'\(--box-masks for box-only data such as VOC\), or turn the mask '
         r'branch off; rebuild with tf-mtdet build-tfrecord --format coco '
         r'--annotations {w.annotations_json} --images {w.images} --output '
         r'{w.good__train} --num-shards 2'),
    Case('train_semantic_head_without_semantic_or_masks',
         lambda w: _train(w, f'train_data.input_path={w.good}/train-*.tfrecord',
                          'model.two_stage.include_mask=false',
                          'model.two_stage.dense_aux_heads=[{type: semantic}]'),
         r'train_data.input_path: {w.good__train-00000-of-00002.tfrecord}: '
         r'record 0 has instances but neither a semantic map '
         r'\(image/segmentation/class/encoded\) nor instance masks to paint '
         r'one from, and the model trains a semantic head: build the shards '
         r'with --semantic or --include-masks .*; rebuild with tf-mtdet '
         r'build-tfrecord'),
    Case('train_json_as_shard',
         lambda w: _train(w, f'train_data.input_path={w.good}/train-*'),
         r'train_data.input_path: {w.good__train-annotations.json}: not a '
         r'TFRecord file \(the first record header fails its checksum\)'),
    # evaluate
    Case('evaluate_no_checkpoint',
         lambda w: ['evaluate', '--config', TINY_CONFIG, '--checkpoint',
                    w.missing_ckpt],
         r'{w.missing_ckpt}: not a checkpoint \(no {w.missing_ckpt}.index\)'),
    Case('evaluate_cut_shard',
         lambda w: _eval(w, f'eval_data.input_path={w.cut}/train-*.tfrecord'),
         r'eval_data.input_path: {w.cut__train-00000-of-00002.tfrecord}: '
         r'\d+ bytes but .* \(truncated since it was built\)'),
    # export
    Case('export_empty_checkpoint_dir',
         lambda w: ['export', '--config', TINY_CONFIG, '--checkpoint',
                    w.images, '--out', w.export],
         r'{w.images}: no checkpoint found in this directory'),
    Case('export_label_map_missing',
         lambda w: ['export', '--config', TINY_CONFIG, '--checkpoint', w.ckpt,
                    '--out', w.export, '--set',
                    f'train_data.label_map={w.missing_label_map_json}'],
         r'{w.missing_label_map_json}: cannot read label map: No such file'),
    Case('export_unknown_signature',
         lambda w: ['export', '--config', TINY_CONFIG, '--checkpoint', w.ckpt,
                    '--out', w.export, '--signatures', 'image_bytes,jpeg'],
         r'signatures: jpeg: choose from serving_default, image_bytes, '
         r'tf_example'),
    # predict
    Case('predict_image_missing',
         lambda w: ['predict', '--saved-model', w.export, '--image',
                    w.missing_jpg, '--out', w.out_png],
         r'{w.missing_jpg}: cannot read image: No such file or directory'),
    Case('predict_png_bomb',
         lambda w: ['predict', '--saved-model', w.export, '--image',
                    w.bomb_images__bomb_png, '--out', w.out_png],
         r'{w.bomb_images__bomb_png}: image declares 20000 x 20000 pixels '
         r'.* not decoded'),
    Case('predict_jpeg_bomb',
         lambda w: ['predict', '--saved-model', w.export, '--image',
                    w.jpeg_bomb_jpg, '--out', w.out_png],
         r'{w.jpeg_bomb_jpg}: image declares 20000 x 20000 pixels'),
    Case('predict_own_limit',
         lambda w: ['predict', '--saved-model', w.export, '--image',
                    w.small_png, '--out', w.out_png, '--max-image-pixels',
                    '1000'],
         r'{w.small_png}: image declares 40 x 30 pixels \(width x height; '
         r'1200 pixels to decode\), above the limit of 1000 pixels '
         r'\(--max-image-pixels\)'),
    Case('predict_no_saved_model',
         lambda w: ['predict', '--saved-model', w.images, '--image',
                    w.small_png, '--out', w.out_png],
         r'{w.images}.*(SavedModel|saved_model)'),
    # profile
    Case('profile_bad_yaml',
         lambda w: ['profile', '--config', w.bad_yaml],
         r'{w.bad_yaml}: invalid YAML'),
    # show-data
    Case('show_data_matches_nothing',
         lambda w: ['show-data', w.nowhere + '/x-*.tfrecord', '--out',
                    w.pictures],
         r'{w.nowhere}/x-\*.tfrecord'),
    Case('show_data_foreign_tfrecord',
         lambda w: ['show-data', w.foreign_tfrecord, '--out', w.pictures],
         r'{w.foreign_tfrecord}: record 0: cannot read or decode it: .*'
         r'Feature: image/encoded \(data type: string\) is required but '
         r'could not be found.'),
    # analyze-logs
    Case('analyze_logs_missing_run',
         lambda w: ['analyze-logs', w.nowhere, '--json'],
         r'{w.nowhere}: no such run directory'),
    # data-stats
    Case('data_stats_foreign_tfrecord',
         lambda w: ['data-stats', w.foreign_tfrecord],
         r'PATTERN: {w.foreign_tfrecord}: record 0: .*'),
    # quickstart
    Case('quickstart_workdir_is_a_file',
         lambda w: ['quickstart', '--workdir', w.notes_txt, '--steps', '1'],
         r'{w.notes_txt}'),
    # convert-weights
    Case('convert_weights_missing_file',
         lambda w: ['convert-weights', '--source', 'detectron', '--arch',
                    'resnet50', w.nowhere + '/R-50.pkl', w.weights__r50],
         r'{w.nowhere}/R-50.pkl: no such file'),
]


def _fill(pattern: str, w: World) -> str:
  return re.sub(r'\{w\.([\w.-]+)\}',
                lambda m: re.escape(getattr(w, m.group(1))), pattern)


# Bad command lines: argparse's usage line, then its one error line.
ARGPARSE_CASES = [
    (['train', '--config', TINY_CONFIG],
     'tf-mtdet train: error: the following arguments are required: '
     '--model-dir'),
    (['configs', '--bogus'], 'tf-mtdet: error: unrecognized arguments: '
     '--bogus'),
    (['predict', '--image', 'x.jpg', '--out', 'y.png', '--saved-model', 'm',
      '--score-threshold', 'high'],
     "tf-mtdet predict: error: argument --score-threshold: invalid float "
     "value: 'high'"),
]


def test_cases_cover_every_command():
  assert len(CASES) >= 20
  parser = cli.build_parser()
  (commands,) = [a.choices for a in parser._actions  # pylint: disable=protected-access
                 if isinstance(a, argparse._SubParsersAction)]  # pylint: disable=protected-access
  covered = {c.argv(World('/w'))[0] for c in CASES}
  covered |= {argv[0] for argv, _ in ARGPARSE_CASES}
  assert covered == set(commands)


@pytest.mark.parametrize('argv, message', ARGPARSE_CASES)
def test_bad_command_line_is_argparse_usage_and_one_line(argv, message,
                                                        capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.main(argv)
  assert exit_.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[0].startswith('usage: tf-mtdet') and err[-1] == message


@pytest.mark.parametrize('case', CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line(case, world, capsys):
  argv = case.argv(world)
  code = cli.main(argv)
  out, err = capsys.readouterr()
  assert code != 0, (out, err)
  assert 'Traceback' not in out + err
  ours = [line for line in err.splitlines() if line.startswith('tf-mtdet ')]
  assert len(ours) == 1, err
  prefix = f'tf-mtdet {argv[0]}: error: '
  assert ours[0].startswith(prefix), ours[0]
  assert re.fullmatch(_fill(case.message, world) + '.*',
                      ours[0][len(prefix):]), ours[0]
  # No output was left behind by a failed build, training or export.
  for path in (world.model_dir, world.export, world.out_png):
    assert not os.path.exists(path), path


def test_verify_tfrecord_reports_each_shard(world, capsys):
  assert cli.main(['verify-tfrecord', world.good + '/train-*.tfrecord']) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines == [
      f'{world.good}/train-0000{i}-of-00002.tfrecord: ok, 2 records, '
      f'{os.path.getsize(f"{world.good}/train-0000{i}-of-00002.tfrecord")} '
      'bytes, matches train-summary.json' for i in range(2)] + [
          '2 shard(s), 4 records: all ok']
  assert cli.main(['verify-tfrecord', world.cut + '/train-*.tfrecord']) == 1
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith(f'{world.cut}/train-00000-of-00002.tfrecord: '
                             'BAD after 1 records: ')
  assert 'truncated since it was built' in lines[0]
  assert lines[1].endswith('ok, 2 records, ' + str(os.path.getsize(
      f'{world.cut}/train-00001-of-00002.tfrecord')) + ' bytes, matches '
                           'train-summary.json')


def _run_cli(*argv: str) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, '-m', 'tf_mtdet.cli', *argv], capture_output=True,
      text=True, cwd=conftest.REPO_ROOT, timeout=300,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})


def test_traceback_only_with_debug(world):
  # A command that fails before importing TensorFlow keeps this test fast;
  # the in-process cases above cover the others.
  argv = ['make-shapes', '--out', world.nonempty, '--num-images', '1']
  plain = _run_cli(*argv)
  assert plain.returncode == 1
  assert plain.stderr.strip() == (
      f"tf-mtdet make-shapes: error: output directory '{world.nonempty}' "
      'already exists and is not empty; remove it or choose another path')
  debug = _run_cli('--debug', *argv)
  assert debug.returncode == 1
  assert debug.stderr.startswith('Traceback (most recent call last)')
  assert 'FileExistsError' in debug.stderr
  assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()
  # --debug after the command works too.
  assert cli.build_parser().parse_args(argv + ['--debug']).debug
  assert not cli.build_parser().parse_args(argv).debug


def test_unexpected_errors_say_so(monkeypatch, capsys):
  def broken(args):
    del args
    raise ZeroDivisionError('division by zero')
  monkeypatch.setattr(cli, '_run_make_shapes', broken)
  assert cli.main(['make-shapes', '--out', 'x']) == 2
  assert capsys.readouterr().err.strip() == (
      'tf-mtdet make-shapes: error: internal error ZeroDivisionError: '
      'division by zero (run with --debug for the traceback)')


def test_one_line_reports():
  from tf_mtdet import errors  # pylint: disable=g-import-not-at-top
  graph_error = tf.errors.InvalidArgumentError(
      None, None, 'Graph execution error:\n\nDetected at node Assert/Assert '
      'defined at (most recent call last):\n  File "x.py", line 9\n\n'
      '{{function_node __wrapped__IteratorGetNext}} assertion failed: '
      '[image_bytes: input 0: too big]\n\t [[{{node Assert/Assert}}]] '
      '[Op:IteratorGetNext] name: ')
  assert errors.one_line(graph_error) == (
      'assertion failed: [image_bytes: input 0: too big]')
  assert errors.one_line(FileNotFoundError(2, 'No such file or directory',
                                           'a/b.json')) == (
                                               'a/b.json: No such file or '
                                               'directory')
  assert errors.one_line(ValueError('two\nlines')) == 'two lines'
  assert errors.one_line(KeyError('k')) == (
      "internal error KeyError: 'k' (run with --debug for the traceback)")
  assert errors.is_expected(graph_error) and not errors.is_expected(
      TypeError())
