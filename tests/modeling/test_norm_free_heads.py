"""Model Garden's RPN and box heads with `use_norm: false` (DATNet's
maskrcnn-benchmark heads): no norm variables, and the outputs are the convs
and FCs with ReLU alone, by hand."""

import numpy as np
import tensorflow as tf

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.modeling import factory
from tf_mtdet.modeling import registry
from tf_mtdet.modeling.heads import norm_free


def _cfg():
  cfg = two_stage_config.TwoStageModel(num_classes=3, min_level=2,
                                       max_level=3)
  cfg.rpn_head.num_filters, cfg.rpn_head.use_norm = 4, False
  cfg.detection_head.fc_dims, cfg.detection_head.use_norm = 6, False
  return cfg


def test_norm_free_rpn_head_by_hand():
  head = factory.build_rpn_head(_cfg(), None)
  assert isinstance(head, norm_free.NormFreeRPNHead)
  features = {'2': tf.random.normal([1, 8, 8, 4]),
              '3': tf.random.normal([1, 4, 4, 4])}
  scores, boxes = head(features)
  assert not head.non_trainable_weights
  # conv3x3, scores and boxes: kernel + bias each, nothing else.
  assert len(head.weights) == 6
  conv = head._convs[0]  # pylint: disable=protected-access
  for level, x in features.items():
    hidden = tf.nn.relu(conv(x))
    np.testing.assert_allclose(scores[level], head._classifier(hidden),  # pylint: disable=protected-access
                               atol=1e-6)
    np.testing.assert_allclose(boxes[level], head._box_regressor(hidden),  # pylint: disable=protected-access
                               atol=1e-6)
    assert scores[level].shape[-1] == 3  # 3 aspect ratios x 1 scale


def test_norm_free_2fc_box_head_by_hand():
  cfg = _cfg()
  head = registry.build('box_head', 'fc', cfg, None)
  assert isinstance(head, norm_free.NormFreeDetectionHead)
  rois = tf.random.normal([1, 2, 3, 3, 5])
  classes, boxes = head(rois)
  assert not head.non_trainable_weights
  x = tf.reshape(rois, [1, 2, 45])
  for fc in head._fcs:  # pylint: disable=protected-access
    x = tf.nn.relu(fc(x))
  np.testing.assert_allclose(classes, head._classifier(x), atol=1e-6)  # pylint: disable=protected-access
  np.testing.assert_allclose(boxes, head._box_regressor(x), atol=1e-6)  # pylint: disable=protected-access
  # The default keeps Model Garden's norms (other families).
  cfg.detection_head.use_norm = True
  normed = registry.build('box_head', 'fc', cfg, None)
  normed(rois)
  assert normed.non_trainable_weights
