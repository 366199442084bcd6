"""Input pipeline: batches from real shards, resizing rules, flip and scale
consistency of the shared augmentation with the mask and semantic targets,
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
from tf_mtdet.data import augment
from tf_mtdet.data import parser as parser_lib
from tf_mtdet.data import pipeline
from tf_mtdet.data.targets import masks as mask_targets
from tf_mtdet.data.targets import rpn
from tf_mtdet.data.targets import semantic as semantic_targets

# Mask R-CNN's pyramid P2-P6: padded sizes are multiples of 2**6.
STRIDE = 64


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
  cfg.parser.override(parser)
  return cfg


def _parser(cfg: data_config.DataConfig, with_masks: bool = True,
            with_semantic: bool = True) -> parser_lib.DetectionParser:
  """Mask R-CNN's targets on P2-P6 (3 aspect ratios): RPN labels, 112x112
  mask crops, the semantic map."""
  needs, generators = [], [rpn.RpnTargets(
      min_level=2, max_level=6, num_scales=1, aspect_ratios=[0.5, 1.0, 2.0],
      anchor_size=8)]
  if with_masks:
    needs.append(augment.MASKS)
    generators.append(mask_targets.MaskCropTargets(
        112, cfg.parser.max_num_instances))
  if with_semantic:
    needs.append(augment.SEMANTIC)
    generators.append(semantic_targets.SemanticTargets())
  return parser_lib.DetectionParser(
      augment.Augmenter(cfg.parser, STRIDE, needs=needs), generators)


def _dataset(cfg: data_config.DataConfig, **kwargs) -> tf.data.Dataset:
  return pipeline.dataset(cfg, _parser(cfg, **kwargs))


def test_training_batch_shapes_and_dtypes(coco128_shards):
  images, labels = next(iter(_dataset(_config(coco128_shards, True))))
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


def test_only_what_the_targets_need_is_parsed(coco128_shards):
  """Without mask or semantic targets the decoder skips both: the batch has
  boxes, classes and RPN targets only."""
  _, labels = next(iter(_dataset(_config(coco128_shards, True),
                                 with_masks=False, with_semantic=False)))
  assert sorted(labels) == ['anchor_boxes', 'gt_boxes', 'gt_classes',
                            'image_info', 'rpn_box_targets',
                            'rpn_score_targets']
  cfg = _config(coco128_shards, True)
  record = next(iter(tf.data.TFRecordDataset(
      tf.io.gfile.glob(cfg.input_path))))
  for with_masks, with_semantic in ((False, False), (True, False),
                                    (False, True)):
    decoded = pipeline.build_decoder(
        cfg, _parser(cfg, with_masks, with_semantic)).decode(record)
    assert ('groundtruth_instance_masks' in decoded) == with_masks
    assert ('groundtruth_semantic' in decoded) == with_semantic


def test_eval_batch_carries_ids_and_groundtruth(coco128_shards):
  images, labels = next(iter(_dataset(_config(coco128_shards, False))))
  assert images.shape == (2, 256, 320, 3)
  assert labels['source_id'].dtype == tf.int64
  assert labels['groundtruths']['boxes'].shape == (2, 100, 4)
  info = labels['image_info'].numpy()
  # 480x640 coco images fitted into 256x320: scale 0.5.
  np.testing.assert_allclose(info[0, 2], [0.5, 0.5], atol=1e-3)


def test_short_side_resize_with_long_side_cap(coco128_shards):
  cfg = _config(coco128_shards, False, resize_mode='short_side',
                short_side=[320], long_side=400)
  images, labels = next(iter(_dataset(cfg)))
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
  for _, labels in _dataset(cfg).take(16):
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


def _small_parser(with_semantic: bool = True, **augmentation
                  ) -> parser_lib.DetectionParser:
  """A parser for 64x96 images: anchors on P2-P4, 28x28 mask crops, and the
  semantic map unless `with_semantic` is False."""
  config = data_config.Augmentation(output_size=[64, 96], **augmentation)
  needs = [augment.MASKS]
  generators = [
      rpn.RpnTargets(min_level=2, max_level=4, num_scales=1,
                     aspect_ratios=[1.0], anchor_size=4),
      mask_targets.MaskCropTargets(28, config.max_num_instances)]
  if with_semantic:
    needs.append(augment.SEMANTIC)
    generators.append(semantic_targets.SemanticTargets())
  return parser_lib.DetectionParser(augment.Augmenter(config, 16, needs=needs),
                                    generators)


def test_flip_moves_image_boxes_masks_and_semantic_together():
  parse = _small_parser(aug_rand_hflip=True).parse_fn(is_training=True)
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


def _four_shapes_example():
  """A 96x128 image with a rectangle (class 1, left), a disk (class 2,
  right), a triangle (class 3) and a rectangle on the bottom edge (class 4,
  cut by the crops of scale jitter), their tight boxes, full-resolution masks
  and semantic map. The disk's centre and the triangle stay inside every
  crop, so their visible parts keep their box's extent."""
  height, width = 96, 128
  yy, xx = np.mgrid[:height, :width]
  masks = np.stack([
      (yy >= 30) & (yy < 60) & (xx >= 20) & (xx < 50),
      (yy - 45)**2 + (xx - 95)**2 < 14**2,
      (yy >= 62) & (yy < 76) & (np.abs(xx + 0.5 - 45) < (yy + 0.5 - 62)),
      (yy >= 74) & (yy < 94) & (xx >= 70) & (xx < 110),
  ]).astype(np.float32)
  classes = np.array([1, 2, 3, 4])
  semantic = np.zeros((height, width), np.uint8)
  boxes = []
  for mask, label in zip(masks, classes):
    semantic[mask > 0] = label
    rows, cols = np.nonzero(mask)
    boxes.append([rows.min() / height, cols.min() / width,
                  (rows.max() + 1) / height, (cols.max() + 1) / width])
  image = np.repeat(semantic[..., None] * 60, 3, axis=-1).astype(np.uint8)
  return {
      'source_id': tf.constant('1'),
      'image': tf.constant(image),
      'height': tf.constant(height, tf.int64),
      'width': tf.constant(width, tf.int64),
      'groundtruth_classes': tf.constant(classes, tf.int64),
      'groundtruth_is_crowd': tf.constant([False] * 4),
      'groundtruth_difficult': tf.constant([False] * 4),
      'groundtruth_area': tf.constant(masks.sum(axis=(1, 2))),
      'groundtruth_boxes': tf.constant(boxes, tf.float32),
      'groundtruth_instance_masks': tf.constant(masks),
      'groundtruth_semantic': tf.constant(semantic),
  }


def test_full_resolution_masks_line_up_with_boxes_under_scale_and_flip():
  """`masks_at_output_size` of the augmented example's full-resolution masks
  matches its output-pixel boxes and semantic map, whatever the scale jitter
  (crops and padding included) and flip."""
  config = data_config.Augmentation(output_size=[96, 128], aug_rand_hflip=True,
                                    aug_scale_min=0.8, aug_scale_max=1.25)
  augmenter = augment.Augmenter(config, 32,
                                needs=[augment.MASKS, augment.SEMANTIC])
  example = _four_shapes_example()
  # Seeded: the draws below must include both flips, down- and up-scaling
  # and a crop through the bottom rectangle (asserted at the end).
  tf.random.set_seed(0)
  sides, scales, worst, cut = set(), [], 0.0, False
  for _ in range(24):
    out = augmenter.train(example)
    boxes, classes = out['boxes'].numpy(), out['classes'].numpy()
    info = out['image_info'].numpy()
    assert out['masks'].shape == (4, 96, 128)  # full resolution
    masks = augment.masks_at_output_size(out, augmenter.padded_size).numpy()
    semantic = out['semantic'].numpy()
    assert masks.shape == (4, 96, 128) and semantic.shape == (96, 128)
    # Every shape keeps some pixels at these scales: none is dropped.
    assert classes.tolist() == [1, 2, 3, 4]
    scales.append(info[2, 0])
    cut |= bool(boxes[3, 2] < 94 * info[2, 0] - info[3, 0] - 1)
    # The rectangle starts left of centre unless flipped.
    sides.add((boxes[0, 1] + boxes[0, 3]) / 2 > 64)
    for mask, box in zip(masks, boxes):
      rows, cols = np.nonzero(mask > 0.5)
      mask_box = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
      error = np.abs(np.array(mask_box) - box).max()
      worst = max(worst, error)
      # Nearest-neighbour rendering is within half a pixel of the box, plus
      # at most one skipped source row or column (scale s < 1): the
      # triangle's one-pixel tip and base corners, s + 0.5 < 1.5 pixels.
      assert error <= 1.5, (mask_box, box, info)
    # The semantic map is the masks' classes, background elsewhere in the
    # image and the ignore label in the padding.
    expected = np.zeros((96, 128), np.int32)
    for mask, label in zip(masks, classes):
      expected[mask > 0.5] = label
    valid_h, valid_w = np.minimum(np.floor(info[0] * info[2] - info[3]),
                                  [96, 128]).astype(int)
    expected[valid_h:, :] = 255
    expected[:, valid_w:] = 255
    agree = semantic == expected
    # Rounding of the scaled size may shift the padding edge by a pixel.
    agree[valid_h - 1:valid_h + 1, :] = True
    agree[:, valid_w - 1:valid_w + 1] = True
    assert agree.all(), np.argwhere(~agree)[:5]
    assert (semantic[:valid_h - 1, :valid_w - 1] != 255).all()
  assert sides == {True, False}
  # Both down-scaling (padding) and up-scaling (cropping) were drawn, and
  # the crops cut the bottom rectangle.
  assert min(scales) < 0.95 and max(scales) > 1.1
  assert cut
  assert worst > 0  # Sub-pixel box coordinates were actually compared.


def test_parser_refuses_an_augmenter_without_what_its_targets_need():
  config = data_config.Augmentation(output_size=[64, 96])
  crops = mask_targets.MaskCropTargets(28, 10)
  with pytest.raises(ValueError, match="need \\['masks'\\]"):
    parser_lib.DetectionParser(augment.Augmenter(config, 16), [crops])
  with pytest.raises(ValueError, match="need \\['semantic'\\]"):
    parser_lib.DetectionParser(
        augment.Augmenter(config, 16, needs=[augment.MASKS]),
        [crops, semantic_targets.SemanticTargets()])
  with pytest.raises(ValueError, match='unknown augmentation outputs'):
    augment.Augmenter(config, 16, needs=['depth'])
  parser = parser_lib.DetectionParser(
      augment.Augmenter(config, 16, needs=[augment.MASKS]), [crops])
  assert parser.augmenter.needs == {augment.MASKS}


def test_crowd_and_difficult_are_dropped_in_training():
  example = _synthetic_example()
  example.update(
      groundtruth_classes=tf.constant([7, 3, 4], tf.int64),
      groundtruth_is_crowd=tf.constant([False, True, False]),
      groundtruth_difficult=tf.constant([False, False, True]),
      groundtruth_area=tf.constant([600.0, 1.0, 1.0]),
      groundtruth_boxes=tf.constant([[0.1, 0.1, 0.5, 0.5]] * 3),
      groundtruth_instance_masks=tf.ones([3, 64, 96]))
  _, labels = _small_parser(with_semantic=False).parse_fn(is_training=True)(
      example)
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
      from tf_mtdet.data import augment
      from tf_mtdet.data import parser as parser_lib
      from tf_mtdet.data import pipeline
      from tf_mtdet.data.targets import masks
      from tf_mtdet.data.targets import rpn
      strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
      cfg = data_config.DataConfig(input_path={coco128_shards!r} + '-*.tfrecord',
                                   global_batch_size=4, is_training=True)
      cfg.parser.output_size = [128, 160]
      parser = parser_lib.DetectionParser(
          augment.Augmenter(cfg.parser, {STRIDE}, needs=[augment.MASKS]),
          [rpn.RpnTargets(2, 6, 1, [0.5, 1.0, 2.0], 8),
           masks.MaskCropTargets(112, cfg.parser.max_num_instances)])
      ds = strategy.distribute_datasets_from_function(
          lambda ctx: pipeline.dataset(cfg, parser, input_context=ctx))
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


def test_parser_mask_crops_follow_boxes_under_scale_jitter():
  """Through the whole parser (augmenter, mask crop targets, semantic
  targets) with scale jitter 0.8-1.25 and flips: the rectangle's 28x28 crop
  is the object (all ones inside), and the semantic map under its box is its
  class, whatever scale and crop were drawn."""
  config = data_config.Augmentation(output_size=[96, 128], aug_rand_hflip=True,
                                    aug_scale_min=0.8, aug_scale_max=1.25)
  parser = parser_lib.DetectionParser(
      augment.Augmenter(config, 32, needs=[augment.MASKS, augment.SEMANTIC]),
      [mask_targets.MaskCropTargets(28, config.max_num_instances),
       semantic_targets.SemanticTargets()])
  parse = parser.parse_fn(is_training=True)
  example = _four_shapes_example()
  tf.random.set_seed(1)
  scales = []
  for _ in range(12):
    _, labels = parse(example)
    classes = labels['gt_classes'].numpy()
    assert classes[:4].tolist() == [1, 2, 3, 4]
    scales.append(float(labels['image_info'][2, 0]))
    rect = labels['gt_masks'].numpy()[0]
    # Bilinear samples on the crop's outer ring straddle the edge.
    assert rect[2:-2, 2:-2].min() > 0.99, scales[-1]
    # The disk fills pi/4 of its box: the crop agrees.
    assert abs(labels['gt_masks'].numpy()[1].mean() - np.pi / 4) < 0.05
    ymin, xmin, ymax, xmax = labels['gt_boxes'].numpy()[0]
    inner = labels['gt_semantic'].numpy()[int(np.ceil(ymin)) + 1:
                                          int(ymax) - 1,
                                          int(np.ceil(xmin)) + 1:int(xmax) - 1]
    assert inner.size and (inner == 1).all()
  assert min(scales) < 0.95 and max(scales) > 1.1
