"""IvaNet's parts: trunk sizes, LTD wiring, SSD priors, MultiBox matching
and hard negative mining, the PCM head and its loss."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.vision.modeling.backbones import resnet as mg_resnet
from official.vision.modeling.layers import nn_blocks

from tf_mtdet import families
from tf_mtdet.config import experiment
from tf_mtdet.config import single_shot as single_shot_config
from tf_mtdet.data.targets import ssd_matching
from tf_mtdet.losses import ssd as ssd_losses
from tf_mtdet.modeling import factory  # noqa: F401  # registers the parts
from tf_mtdet.modeling import ssd_anchors
from tf_mtdet.modeling import ssd_extra_levels
from tf_mtdet.modeling.heads import pcm_head
from tf_mtdet.modeling.necks import local_top_down

# LTD-SSD / SSD prototxt numbers.
VOC300 = dict(min_sizes=[30., 60., 111., 162., 213., 264.],
              max_sizes=[60., 111., 162., 213., 264., 315.],
              aspect_ratios=['2', '2,3', '2,3', '2,3', '2', '2'],
              steps=[8., 16., 32., 64., 100., 300.])
VOC512 = dict(min_sizes=[35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8],
              max_sizes=[76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6],
              aspect_ratios=['2', '2,3', '2,3', '2,3', '2,3', '2', '2'],
              steps=[8., 16., 32., 64., 128., 256., 512.])


@pytest.mark.parametrize('name,size,expected,extra_levels', [
    ('ivanet_r50_300_voc', 300, [38, 19, 10, 5, 3, 1], 2),
    ('ivanet_r50_512_voc', 512, [64, 32, 16, 8, 4, 2, 1], 3)])
def test_trunk_is_resnet50_through_conv5_x_then_blitznet_extras(
    name, size, expected, extra_levels):
  """The shipped configs' trunk: Model Garden's whole ResNet-50 (levels 3-5
  = conv3_x..conv5_x), then the extra levels in their own sub-module
  (narrowed for speed: the widths do not change the sizes)."""
  config = experiment.load_config(f'ivanet/{name}', [
      'train_data.label_map=',
      'model.single_shot.backbone.resnet.depth_multiplier=0.125'])
  model_cfg = config.model.single_shot
  # BlitzNet's extra blocks: 2 bottleneck units of 512 (outputs 2048).
  extra = model_cfg.extra_levels
  assert (extra.num_levels, extra.filters, extra.blocks,
          extra.global_pool_level) == (extra_levels, 512, 2, True)
  model_cfg.extra_levels.filters = 8
  model = families.get(config).build_model()
  assert isinstance(model.backbone, mg_resnet.ResNet)
  assert isinstance(model.extra_levels, ssd_extra_levels.SSDExtraLevels)
  features = model.trunk_features(tf.zeros([1, size, size, 3]))
  levels = [str(l) for l in range(3, 3 + len(expected))]
  assert sorted(features, key=int) == levels
  assert [features[l].shape[1] for l in levels] == expected
  assert [s for s, _ in ssd_extra_levels.feature_sizes(
      [size, size], 3, 2 + len(expected), True).values()] == expected
  # conv3_x / conv4_x / conv5_x bottleneck outputs (x0.125), extras 4 x 8.
  assert [features[l].shape[3] for l in levels] == (
      [64, 128, 256] + [32] * (len(expected) - 3))
  # conv2_x..conv5_x: ResNet-50's 3 + 4 + 6 + 3 bottleneck units, all in
  # the backbone; the extras are 2 units per level, outside it.
  units = lambda m: [l for l in m.layers
                     if isinstance(l, nn_blocks.BottleneckBlock)]
  assert len(units(model.backbone)) == 16
  assert len(units(model.extra_levels)) == 2 * extra_levels
  assert not any(l.name.startswith('extra_')
                 for l in model.backbone.layers)


def _ltd_inputs(sizes=(10, 5, 3, 2, 1), channels=8, seed=0):
  rng = np.random.default_rng(seed)
  return {str(3 + i): tf.constant(rng.normal(size=[1, s, s, channels]),
                                  tf.float32)
          for i, s in enumerate(sizes)}


def test_ltd_each_level_sees_itself_and_its_two_coarser_neighbours():
  inputs = _ltd_inputs()
  specs = {k: v.shape for k, v in inputs.items()}
  neck = local_top_down.LocalTopDown(specs, min_level=3, max_level=7,
                                     num_filters=4, output_filters=384)
  base = neck(inputs, training=False)
  for key, value in base.items():
    assert value.shape[-1] == 384
    assert value.shape[1:3] == inputs[key].shape[1:3]
  for perturbed in range(3, 8):
    changed = dict(inputs)
    changed[str(perturbed)] = inputs[str(perturbed)] + 1.0
    out = neck(changed, training=False)
    moved = {int(k) for k in out
             if not np.allclose(out[k].numpy(), base[k].numpy())}
    expected = {l for l in (perturbed, perturbed - 1, perturbed - 2) if l >= 3}
    assert moved == expected, (perturbed, moved)


def test_ltd_registered_as_a_neck():
  from official.vision.modeling.decoders import factory as decoder_factory  # pylint: disable=g-import-not-at-top
  config = single_shot_config.SingleShotModel(min_level=3, max_level=7)
  config.decoder.type = 'ltd'
  inputs = _ltd_inputs()
  neck = decoder_factory.build_decoder({k: v.shape for k, v in inputs.items()},
                                       config)
  assert isinstance(neck, local_top_down.LocalTopDown)
  assert {v.shape[-1] for v in neck(inputs).values()} == {384}


@pytest.mark.parametrize('numbers,sizes,per_location,total', [
    (VOC300, [38, 19, 10, 5, 3, 1], [4, 6, 6, 6, 4, 4], 8732),
    (VOC512, [64, 32, 16, 8, 4, 2, 1], [4, 6, 6, 6, 6, 4, 4], 24564)])
def test_prior_counts_per_level(numbers, sizes, per_location, total):
  config = single_shot_config.SSDAnchors(**numbers)
  assert ssd_anchors.num_anchors_per_location(config) == per_location
  anchors = ssd_anchors.multilevel_anchors(
      config, {str(3 + i): (s, s) for i, s in enumerate(sizes)})
  for i, s in enumerate(sizes):
    assert anchors[str(3 + i)].shape == (s, s, 4 * per_location[i])
  assert ssd_anchors.flatten(anchors, 4).shape == (total, 4)


def test_prior_sizes_and_centres_match_ssd_300():
  config = single_shot_config.SSDAnchors(**VOC300)
  anchors = ssd_anchors.multilevel_anchors(
      config, {str(3 + i): (s, s) for i, s in enumerate([38, 19, 10, 5, 3, 1])})
  first = anchors['3'][0, 0].numpy().reshape(-1, 4)
  heights, widths = first[:, 2] - first[:, 0], first[:, 3] - first[:, 1]
  r2 = math.sqrt(2.0)
  np.testing.assert_allclose(heights, [30, math.sqrt(1800), 30 / r2, 30 * r2],
                             rtol=1e-5)
  np.testing.assert_allclose(widths, [30, math.sqrt(1800), 30 * r2, 30 / r2],
                             rtol=1e-5)
  np.testing.assert_allclose((first[:, 0] + first[:, 2]) / 2, 4.0)
  # Level 4, location (1, 2): centre (24, 40), ratio 3 prior 60*sqrt(3) wide.
  loc = anchors['4'][1, 2].numpy().reshape(-1, 4)
  np.testing.assert_allclose((loc[:, 0] + loc[:, 2]) / 2, 24.0)
  np.testing.assert_allclose((loc[:, 1] + loc[:, 3]) / 2, 40.0)
  np.testing.assert_allclose(loc[4, 3] - loc[4, 1], 60 * math.sqrt(3), rtol=1e-5)
  # The last level: one location centred in the 300 image.
  last = anchors['8'][0, 0].numpy().reshape(-1, 4)
  np.testing.assert_allclose((last[:, 1] + last[:, 3]) / 2, 150.0)
  np.testing.assert_allclose(last[1, 2] - last[1, 0], math.sqrt(264 * 315),
                             rtol=1e-5)


def test_matching_threshold_and_best_prior_per_ground_truth():
  priors = tf.constant([[0., 0., 10., 10.],     # IoU 1 with gt 0
                        [0., 0., 10., 14.],     # IoU 10/14 = 0.71 with gt 0
                        [0., 0., 10., 25.],     # IoU 0.4 with gt 0
                        [50., 50., 60., 60.],   # IoU 0.25 with gt 1: its best
                        [65., 65., 85., 85.],   # IoU 25 / 775 with gt 1
                        [100., 100., 110., 110.]])  # nothing
  gt = tf.constant([[0., 0., 10., 10.], [50., 50., 70., 70.]])
  classes, matched = ssd_matching.match_priors(priors, gt, tf.constant([3, 5]))
  # Prior 3 overlaps gt 1 by only 0.25 but is its best prior: positive.
  assert classes.numpy().tolist() == [3, 3, 0, 5, 0, 0]
  np.testing.assert_allclose(matched.numpy()[3], [50, 50, 70, 70])
  np.testing.assert_allclose(matched.numpy()[2], 0.0)
  # No ground truth: all background.
  classes, _ = ssd_matching.match_priors(priors, tf.zeros([0, 4]),
                                         tf.zeros([0], tf.int32))
  assert classes.numpy().tolist() == [0] * 6


def test_targets_encode_with_ssd_variances():
  config = single_shot_config.SSDAnchors(
      min_sizes=[20.], max_sizes=[0.], aspect_ratios=[''], steps=[40.])
  generator = ssd_matching.SSDTargets(config, lambda size: {'3': (1, 1)})
  # One prior: centre (20, 20), 20x20. GT centre (22, 18), 10 high 40 wide.
  example = {'image': tf.zeros([40, 40, 3]),
             'boxes': tf.constant([[17., -2., 27., 38.]]),
             'classes': tf.constant([2])}
  out = generator.train(example)
  assert out['ssd_cls_targets'].numpy().tolist() == [2]
  np.testing.assert_allclose(
      out['ssd_box_targets'].numpy()[0],
      [2 / 20 / 0.1, -2 / 20 / 0.1, math.log(0.5) / 0.2, math.log(2.0) / 0.2],
      rtol=1e-5)


def test_hard_negative_mining_keeps_three_per_positive():
  # Image 0: 1 positive (prior 0), 6 negatives -> the 3 highest losses.
  # Image 1: no positive -> no negative counts.
  ce = tf.constant([[9., 1., 5., 2., 7., 0.5, 6.],
                    [3., 4., 5., 6., 7., 8., 9.]])
  positive = tf.constant([[True] + [False] * 6, [False] * 7])
  mined = ssd_losses.hard_negatives(ce, positive, 3.0).numpy()
  assert mined[0].tolist() == [False, False, True, False, True, False, True]
  assert not mined[1].any()
  # More negatives wanted than exist: all negatives.
  mined = ssd_losses.hard_negatives(ce[:1, :3], positive[:1, :3], 3.0).numpy()
  assert mined.tolist() == [[False, True, True]]


def test_multibox_loss_on_a_hand_built_case():
  config = single_shot_config.SingleShotModel(num_classes=2)
  cls_term, box_term = ssd_losses.multibox_terms(config)
  # One level, 1x1 location, 5 priors, 2 classes. Prior 0 is positive.
  logits = np.array([[0., 1.], [2., 0.], [0., 3.], [0., 0.5], [0., 2.]],
                    np.float32)
  deltas = np.zeros([5, 4], np.float32)
  deltas[0] = [0.5, -2.0, 0.0, 1.0]
  outputs = {'cls_outputs': {'3': tf.constant(logits.reshape(1, 1, 1, 10))},
             'box_outputs': {'3': tf.constant(deltas.reshape(1, 1, 1, 20))}}
  labels = {'ssd_cls_targets': tf.constant([[1, 0, 0, 0, 0]]),
            'ssd_box_targets': tf.zeros([1, 5, 4])}
  ce = -np.log(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
  # Positive prior 0 (class 1) + the 3 hardest background priors 2, 4, 3.
  expected = ce[0, 1] + ce[2, 0] + ce[4, 0] + ce[3, 0]
  np.testing.assert_allclose(cls_term.fn(outputs, labels), expected, rtol=1e-5)
  # Smooth L1 of (0.5, -2, 0, 1): 0.125 + 1.5 + 0 + 0.5, over 1 positive.
  np.testing.assert_allclose(box_term.fn(outputs, labels), 2.125, rtol=1e-5)


def test_pcm_head_resizes_to_the_largest_level_and_ignores_255():
  head = pcm_head.PCMHead(num_classes=3, min_level=3, max_level=5,
                          level_filters=4, num_filters=8)
  features = {'3': tf.ones([2, 10, 12, 5]), '4': tf.ones([2, 5, 6, 7]),
              '5': tf.ones([2, 1, 1, 9])}
  assert head(features)['logits'].shape == (2, 10, 12, 3)
  # Loss at the logits' size: labels resized nearest, 255 skipped.
  logits = tf.constant([[[[0., 0.], [5., 0.]]]])  # [1, 1, 2, 2]
  labels = tf.constant([[[0, 0, 255, 255], [0, 0, 255, 255]]])
  loss = pcm_head.cross_entropy_at_logits(logits, labels)
  np.testing.assert_allclose(loss, math.log(2.0), rtol=1e-5)


@pytest.mark.parametrize('level_kernel_size,reach', [(1, 2), (3, 3)])
def test_pcm_level_kernel_sets_the_reach_of_a_finest_level_pixel(
    level_kernel_size, reach):
  """Logits see a finest-level pixel through the per-level conv, the fused
  conv3x3 and the classifier conv3x3: +-2 pixels with 1x1 per-level convs
  (BlitzNet's default), +-3 with 3x3 ones."""
  tf_keras.utils.set_random_seed(0)
  head = pcm_head.PCMHead(num_classes=2, min_level=3, max_level=4,
                          level_filters=4, num_filters=4,
                          level_kernel_size=level_kernel_size)
  base = tf.random.uniform([1, 15, 15, 3], seed=1)
  coarse = tf.random.uniform([1, 8, 8, 3], seed=2)
  bumped = tf.tensor_scatter_nd_add(base, [[0, 7, 7, 0]], [10.0])
  changed = tf.reduce_any(tf.abs(
      head({'3': bumped, '4': coarse})['logits'] -
      head({'3': base, '4': coarse})['logits']) > 0, axis=[0, 3]).numpy()
  rows, cols = np.nonzero(changed)
  assert changed[7, 7]
  assert max(np.abs(rows - 7).max(), np.abs(cols - 7).max()) == reach
  assert {k.shape[0] for k in (head._level_convs['3'].kernel,
                               head._level_convs['4'].kernel)} == {
                                   level_kernel_size}
  clone = tf_keras.utils.deserialize_keras_object(
      tf_keras.utils.serialize_keras_object(head))
  assert clone.get_config()['level_kernel_size'] == level_kernel_size


def test_pcm_logits_add_every_level_resized_bilinearly():
  """With unit per-level 1x1 convs and centre-tap fuse/classifier weights
  1 / 10 / 100 per level, each logit is f3 + 10 up(f4) + 100 f5, where up
  is the 2x2 -> 4x4 bilinear resize (half-pixel centres) worked by hand:
  output rows/columns take the source 0 | .75/.25 | .25/.75 | 1."""
  head = pcm_head.PCMHead(num_classes=1, min_level=3, max_level=5,
                          level_filters=1, level_kernel_size=1, num_filters=1)
  f3 = np.arange(16, dtype=np.float32).reshape(4, 4) / 16
  f4 = np.array([[1., 2.], [3., 4.]], np.float32)
  f5 = np.array([[0.5]], np.float32)
  features = {l: tf.constant(f[np.newaxis, ..., np.newaxis])
              for l, f in (('3', f3), ('4', f4), ('5', f5))}
  head(features)
  for level in '345':
    head._level_convs[level].set_weights([np.ones([1, 1, 1, 1]),
                                          np.zeros([1])])
  fuse = np.zeros([3, 3, 3, 1], np.float32)
  fuse[1, 1, :, 0] = [1., 10., 100.]
  head._fuse.set_weights([fuse, np.zeros([1])])
  classifier = np.zeros([3, 3, 1, 1], np.float32)
  classifier[1, 1, 0, 0] = 1.
  head._classifier.set_weights([classifier, np.zeros([1])])
  up = np.array([[1., 0.], [.75, .25], [.25, .75], [0., 1.]])
  expected = f3 + 10 * up @ f4 @ up.T + 100 * f5[0, 0]
  np.testing.assert_allclose(head(features)['logits'][0, ..., 0], expected,
                             rtol=1e-5)


def test_extra_levels_round_trip_and_sizes():
  extra = ssd_extra_levels.SSDExtraLevels(
      tf.TensorShape([None, 10, 10, 16]), first_level=6, num_levels=2,
      filters=4, blocks=2, global_pool_level=True,
      kernel_regularizer=tf_keras.regularizers.l2(1e-4))
  assert extra.input_level == 5
  out = extra(tf.ones([1, 10, 10, 16]))
  assert {l: tuple(v.shape) for l, v in out.items()} == {
      '6': (1, 5, 5, 16), '7': (1, 3, 3, 16), '8': (1, 1, 1, 16)}
  clone = tf_keras.utils.deserialize_keras_object(
      tf_keras.utils.serialize_keras_object(extra))
  assert clone.get_config() == extra.get_config()
  assert clone.output_specs.keys() == extra.output_specs.keys()
  with pytest.raises(ValueError, match='num_levels and blocks'):
    ssd_extra_levels.SSDExtraLevels(tf.TensorShape([None, 4, 4, 8]),
                                    first_level=6, num_levels=0)
