"""Input pipeline: batches from real shards, resizing rules, flip consistency,
distribution."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests import conftest
from tf_mtdet import cli
from tf_mtdet.config import data as data_config
from tf_mtdet.data import pipeline
from tf_mtdet.data.parsers import two_stage


@pytest.fixture(scope='module')
def coco128_shards(tmp_path_factory):
  data = conftest.shared_path('coco128')
  prefix = str(tmp_path_factory.mktemp('shards') / 'coco128')
  assert cli.main([
      'build-tfrecord', '--quiet', '--format', 'coco', '--annotations',
      os.path.join(data, 'annotations', 'instances.json'), '--images',
      os.path.join(data, 'images'), '--output', prefix, '--num-shards', '2',
      '--include-masks', '--semantic']) == 0
  return prefix


def _config(prefix, training, **parser):
  cfg = data_config.DataConfig(input_path=prefix + '-*.tfrecord',
                               global_batch_size=2, is_training=training)
  cfg.parser.output_size = [256, 320]
  cfg.parser.include_semantic = True
  cfg.parser.override(parser)
  return cfg


def test_training_batch_shapes_and_dtypes(coco128_shards):
  images, labels = next(iter(pipeline.two_stage_dataset(
      _config(coco128_shards, True))))
  assert images.shape == (2, 256, 320, 3) and images.dtype == tf.float32
  assert labels['image_info'].shape == (2, 4, 2)
  assert labels['gt_boxes'].shape == (2, 100, 4)
  assert labels['gt_classes'].shape == (2, 100)
  assert labels['gt_masks'].shape == (2, 100, 112, 112)
  assert labels['gt_semantic'].shape == (2, 256, 320)
  assert labels['gt_semantic'].dtype == tf.int32
  assert sorted(labels['anchor_boxes']) == ['2', '3', '4', '5', '6']
  for level in range(2, 7):
    stride = 2**level
    assert labels['anchor_boxes'][str(level)].shape == (
        2, 256 // stride, 320 // stride, 12)
    assert labels['rpn_score_targets'][str(level)].shape == (
        2, 256 // stride, 320 // stride, 3)
  classes = labels['gt_classes'].numpy()
  valid = classes > 0
  assert valid.any() and set(np.unique(classes[~valid])) <= {-1}
  boxes = labels['gt_boxes'].numpy()[valid]
  assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
  assert boxes.max() <= 320 + 1e-3
  masks = labels['gt_masks'].numpy()[valid]
  assert masks.min() >= 0 and masks.max() <= 1 and masks.mean() > 0.2
  semantic = labels['gt_semantic'].numpy()
  assert set(np.unique(semantic)) <= set(range(91)) | {255}


def test_eval_batch_carries_ids_and_groundtruth(coco128_shards):
  images, labels = next(iter(pipeline.two_stage_dataset(
      _config(coco128_shards, False))))
  assert images.shape == (2, 256, 320, 3)
  assert labels['source_id'].dtype == tf.int64
  assert labels['groundtruths']['boxes'].shape == (2, 100, 4)
  info = labels['image_info'].numpy()
  # 480x640 coco images fitted into 256x320: scale 0.5.
  np.testing.assert_allclose(info[0, 2], [0.5, 0.5], atol=1e-3)


def test_short_side_resize_with_long_side_cap(coco128_shards):
  cfg = _config(coco128_shards, False, resize_mode='short_side',
                short_side=[320], long_side=400)
  images, labels = next(iter(pipeline.two_stage_dataset(cfg)))
  # Stride 64 pads the 400 cap to 448 in both directions.
  assert images.shape == (2, 448, 448, 3)
  info = labels['image_info'].numpy()[0]
  h, w = info[0]
  scale = min(320 / min(h, w), 400 / max(h, w))
  np.testing.assert_allclose(info[1], np.round([h * scale, w * scale]),
                             atol=1)
  semantic = labels['gt_semantic'].numpy()[0]
  assert (semantic[int(info[1][0]) + 1:, :] == 255).all()  # padding ignored


def test_multiscale_training_draws_several_sizes(coco128_shards):
  cfg = _config(coco128_shards, True, resize_mode='short_side',
                short_side=[160, 320], long_side=400)
  cfg.global_batch_size = 1
  drawn = set()
  for _, labels in pipeline.two_stage_dataset(cfg).take(16):
    info = labels['image_info'].numpy()[0]
    h, w = info[0]
    candidates = {
        s: np.round(np.array([h, w]) * min(s / min(h, w), 400 / max(h, w)))
        for s in (160, 320)}
    matches = [s for s, size in candidates.items()
               if np.abs(size - info[1]).max() <= 1]
    assert matches, (info, candidates)
    drawn.add(matches[0])
  assert drawn == {160, 320}


def _synthetic_example():
  """A 64x96 image with one bright 20x30 object on its left side."""
  image = np.zeros((64, 96, 3), np.uint8)
  image[10:30, 5:35] = 255
  mask = np.zeros((1, 64, 96), np.float32)
  mask[0, 10:30, 5:35] = 1
  semantic = np.zeros((64, 96), np.uint8)
  semantic[10:30, 5:35] = 7
  return {
      'source_id': tf.constant('1'),
      'image': tf.constant(image),
      'height': tf.constant(64, tf.int64),
      'width': tf.constant(96, tf.int64),
      'groundtruth_classes': tf.constant([7], tf.int64),
      'groundtruth_is_crowd': tf.constant([False]),
      'groundtruth_difficult': tf.constant([False]),
      'groundtruth_area': tf.constant([600.0]),
      'groundtruth_boxes': tf.constant([[10 / 64, 5 / 96, 30 / 64, 35 / 96]]),
      'groundtruth_instance_masks': tf.constant(mask),
      'groundtruth_semantic': tf.constant(semantic),
  }


def test_flip_moves_image_boxes_masks_and_semantic_together():
  parser = two_stage.TwoStageParser(
      output_size=[64, 96], min_level=2, max_level=4, num_scales=1,
      aspect_ratios=[1.0], anchor_size=4, include_mask=True,
      include_semantic=True, aug_rand_hflip=True, mask_crop_size=28)
  parse = parser.parse_fn(is_training=True)
  example = _synthetic_example()
  sides = set()
  for _ in range(16):
    image, labels = parse(example)
    ymin, xmin, ymax, xmax = labels['gt_boxes'].numpy()[0]
    flipped = xmin > 48
    sides.add(flipped)
    expected_cols = slice(61, 91) if flipped else slice(5, 35)
    np.testing.assert_allclose([ymin, xmin, ymax, xmax],
                               [10, expected_cols.start, 30, expected_cols.stop],
                               atol=1e-4)
    bright = image.numpy()[..., 0] > 1.0
    assert bright[12:28, expected_cols.start + 2:expected_cols.stop - 2].all()
    assert bright.sum() == 600
    semantic = labels['gt_semantic'].numpy()
    assert (semantic[10:30, expected_cols] == 7).all()
    assert (semantic == 7).sum() == 600
    # The mask crop inside the box is the object whatever the side (the
    # outermost samples of the bilinear crop straddle the object's edge).
    assert labels['gt_masks'].numpy()[0][3:-3, 3:-3].min() > 0.99
  assert sides == {True, False}


def test_crowd_and_difficult_are_dropped_in_training():
  example = _synthetic_example()
  example.update(
      groundtruth_classes=tf.constant([7, 3, 4], tf.int64),
      groundtruth_is_crowd=tf.constant([False, True, False]),
      groundtruth_difficult=tf.constant([False, False, True]),
      groundtruth_area=tf.constant([600.0, 1.0, 1.0]),
      groundtruth_boxes=tf.constant([[0.1, 0.1, 0.5, 0.5]] * 3),
      groundtruth_instance_masks=tf.ones([3, 64, 96]))
  parser = two_stage.TwoStageParser(
      output_size=[64, 96], min_level=2, max_level=4, num_scales=1,
      aspect_ratios=[1.0], anchor_size=4, include_mask=True)
  _, labels = parser.parse_fn(is_training=True)(example)
  assert list(labels['gt_classes'].numpy()[:3]) == [7, -1, -1]


def test_distribute_datasets_from_function_two_replicas(coco128_shards,
                                                        tmp_path):
  """Runs in a subprocess: logical devices must be set before TF starts."""
  script = textwrap.dedent(f"""
      import tensorflow as tf
      cpu = tf.config.list_physical_devices('CPU')[0]
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      from tf_mtdet.config import data as data_config
      from tf_mtdet.data import pipeline
      strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
      cfg = data_config.DataConfig(input_path={coco128_shards!r} + '-*.tfrecord',
                                   global_batch_size=4, is_training=True)
      cfg.parser.output_size = [128, 160]
      ds = strategy.distribute_datasets_from_function(
          lambda ctx: pipeline.two_stage_dataset(cfg, input_context=ctx))
      images, labels = next(iter(ds))
      per_replica = strategy.experimental_local_results(images)
      print('REPLICAS', len(per_replica), [tuple(x.shape) for x in per_replica])
      """)
  out = subprocess.run([sys.executable, '-c', script], capture_output=True,
                       text=True, cwd=conftest.REPO_ROOT, timeout=300,
                       env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert out.returncode == 0, out.stderr[-3000:]
  # 160 pads to 192, the next multiple of the top stride 64.
  assert 'REPLICAS 2 [(2, 128, 192, 3), (2, 128, 192, 3)]' in out.stdout
