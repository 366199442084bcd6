"""DATNet's res5 RoI heads: shapes, the res5 stage's size, Heavy's mask head
and the shared trunk the factory wires into both poolers."""

import numpy as np
import tensorflow as tf

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.modeling import factory  # noqa: F401  # registers the parts
from tf_mtdet.modeling import registry
from tf_mtdet.modeling.heads import res5_head


def _cfg(filters=8):
  cfg = two_stage_config.TwoStageModel(num_classes=5)
  cfg.res5.filters = filters
  return cfg


def test_res5_box_head_shapes_and_size():
  head = registry.build('box_head', 'res5', _cfg(), None)
  classes, boxes = head(tf.random.normal([2, 3, 7, 7, 16]))
  assert classes.shape == (2, 3, 5) and boxes.shape == (2, 3, 20)
  features = head.res5(tf.random.normal([2, 3, 7, 7, 16]))
  assert features.shape == (2, 3, 4, 4, 32)  # stride 2, 4 x filters
  # Bottlenecks (conv weights; BN gamma/beta): block 0 with a projection
  # from 16 channels, two more from 32: 1x1 f, 3x3 f, 1x1 4f.
  f, c = 8, 16
  block = lambda cin: (cin * f + 9 * f * f + f * 4 * f) + 2 * (f + f + 4 * f)
  expected = block(c) + (c * 4 * f + 2 * 4 * f) + 2 * block(4 * f)
  assert sum(w.shape.num_elements()
             for w in head.res5.trainable_weights) == expected
  assert sum(w.shape.num_elements()
             for w in head.predictor.trainable_weights) == (
                 4 * f * 5 + 5 + 4 * f * 20 + 20)


def test_avg_pool_box_head_averages():
  cfg = _cfg()
  cfg.detection_head.class_agnostic_bbox_pred = True
  head = registry.build('box_head', 'avg_pool', cfg, None)
  x = tf.random.normal([1, 2, 4, 4, 6])
  classes, boxes = head(x)
  assert boxes.shape == (1, 2, 4)
  kernel, bias = head.weights[0:2]
  np.testing.assert_allclose(
      classes.numpy(),
      tf.reduce_mean(x, [2, 3]).numpy() @ kernel.numpy() + bias.numpy(),
      rtol=1e-5, atol=1e-6)


def test_conv_deconv_mask_head_doubles_the_size_and_picks_the_class():
  cfg = _cfg()
  cfg.mask_head.num_filters, cfg.mask_head.num_convs = 8, 2
  head = registry.build('mask_head', 'conv_deconv', cfg, None)
  x = tf.random.normal([2, 3, 7, 7, 32])
  classes = tf.constant([[1, 2, 4], [0, 3, 3]])
  masks = head([x, classes])
  assert masks.shape == (2, 3, 14, 14)
  assert len(head._convs) == 2  # pylint: disable=protected-access
  # maskrcnn-benchmark's order: the convs on the pooled RoI (C = 32 in),
  # then the upsampling; no normalisation.
  assert head._convs[0].kernel.shape == (3, 3, 32, 8)  # pylint: disable=protected-access
  assert not head.non_trainable_weights
  # Every class's map, then the RoI's class: compare with class 4 for RoI 2.
  all_classes = head([x, tf.fill([2, 3], 4)])
  np.testing.assert_allclose(masks[0, 2].numpy(), all_classes[0, 2].numpy(),
                             atol=1e-6)
  assert not np.allclose(masks[1, 0].numpy(), all_classes[1, 0].numpy())


def test_roi_trunk_is_shared_by_box_and_mask_branches():
  cfg = two_stage_config.TwoStageModel(num_classes=3)
  cfg.backbone.resnet.model_id, cfg.backbone.resnet.depth_multiplier = 18, 0.25
  cfg.decoder.fpn.num_filters = 64
  cfg.res5.filters = 16
  cfg.roi_aligner.type = 'multi_scale_attention'
  cfg.roi_aligner.crop_size = 14
  cfg.mask_roi_aligner.type = 'multi_scale_attention'
  cfg.detection_head.type = 'avg_pool'
  cfg.mask_head.type = 'conv_deconv'
  cfg.roi_trunk.type = 'res5'
  model = factory.build_two_stage_model(cfg)
  assert model.roi_aligner is model.mask_roi_aligner
  assert isinstance(model.roi_aligner.refinement, res5_head.RoIRes5)
  cfg.roi_trunk.share_pooler = False
  model = factory.build_two_stage_model(cfg)
  assert model.roi_aligner is not model.mask_roi_aligner
  assert model.roi_aligner.refinement is model.mask_roi_aligner.refinement


def test_resnext_res5_groups_its_3x3_convs():
  cfg = _cfg(filters=8)
  cfg.res5.cardinality, cfg.res5.bottleneck_width = 4, 16
  head = registry.build('box_head', 'res5', cfg, None)
  classes, _ = head(tf.random.normal([1, 2, 6, 6, 12]))
  assert classes.shape == (1, 2, 5)
  grouped = [w for w in head.res5.weights if 'conv2' in w.name and
             'kernel' in w.name]
  assert [w.shape.as_list() for w in grouped] == [[3, 3, 4, 16]] * 3
  assert head.res5(tf.zeros([1, 2, 6, 6, 12])).shape == (1, 2, 3, 3, 32)
