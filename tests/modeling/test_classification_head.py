"""The classification-only box head (CoMask's 2fc head, `with_reg=False`):
Model Garden's trunk and classifier, zero deltas that decode to the RoIs,
no box regressor weights, config round trip."""

import numpy as np
import tensorflow as tf

from official.vision.modeling.heads import instance_heads
from official.vision.ops import box_ops

from tf_mtdet.modeling.heads import classification_head


def _count(layer):
  return sum(int(np.prod(v.shape)) for v in layer.trainable_variables)


def test_scores_match_the_fc_head_and_deltas_decode_to_the_rois():
  tf.random.set_seed(0)
  kwargs = dict(num_classes=5, num_fcs=2, fc_dims=32)
  head = classification_head.ClassificationHead(**kwargs)
  reference = instance_heads.DetectionHead(**kwargs)
  features = tf.random.normal([2, 3, 7, 7, 8])
  classes, deltas = head(features)
  reference(features)
  # Same trunk and classifier: with the reference's weights, same scores.
  for mine, theirs in ((head._fcs, reference._fcs),  # pylint: disable=protected-access
                       ([head._classifier], [reference._classifier])):  # pylint: disable=protected-access
    for a, b in zip(mine, theirs):
      a.set_weights(b.get_weights())
  np.testing.assert_allclose(head(features)[0].numpy(),
                             reference(features)[0].numpy(), rtol=1e-5)
  assert classes.shape == (2, 3, 5) and deltas.shape == (2, 3, 20)
  rois = tf.constant([[[10., 20., 50., 80.]] * 3] * 2)
  decoded = box_ops.decode_boxes(deltas[..., :4], rois,
                                 weights=[10., 10., 5., 5.])
  np.testing.assert_allclose(decoded.numpy(), rois.numpy(), atol=1e-4)
  # No box regressor: 32 x 20 + 20 fewer parameters than the fc head.
  assert _count(reference) - _count(head) == 32 * 20 + 20
  assert not [v for v in head.weights if 'detection-boxes' in v.name]
  clone = classification_head.ClassificationHead.from_config(head.get_config())
  assert clone.get_config() == head.get_config()
  agnostic = classification_head.ClassificationHead(
      **kwargs, class_agnostic_bbox_pred=True)
  assert agnostic(features)[1].shape == (2, 3, 4)
