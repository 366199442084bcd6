"""A classification-only box head: Model Garden's `DetectionHead` trunk and
classifier without its box regressor.

CoMask's public config (`CoMask_r50_mfpn_2x.py`, `with_reg=False`) keeps the
2fc head for scores only: the boxes come from the collaborative head. The
head returns all-zero box deltas, which decode to the RoIs themselves, so
Model Garden's detection generator (per-class NMS) and RoI sampler run
unchanged and the detections are the scored proposals.
"""

from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras

from official.vision.modeling.heads import instance_heads

from tf_mtdet.config import two_stage as model_config
from tf_mtdet.modeling import registry
from tf_mtdet.modeling import standard_parts


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class ClassificationHead(instance_heads.DetectionHead):
  """RoI features [B, N, k, k, C] -> (class logits [B, N, num_classes],
  zero box deltas [B, N, 4] or [B, N, 4 * num_classes])."""

  def build(self, input_shape):
    super().build(input_shape)
    del self._box_regressor  # never called: no weights, no parameters

  def call(self, inputs: tf.Tensor, training: Optional[bool] = None
           ) -> tuple[tf.Tensor, tf.Tensor]:
    _, num_rois, height, width, filters = inputs.get_shape().as_list()
    x = tf.reshape(inputs, [-1, height, width, filters])
    for conv, norm in zip(self._convs, self._conv_norms):
      x = self._activation(norm(conv(x)))
    x = tf.reshape(x, [-1, num_rois, int(np.prod(x.shape[1:]))])
    for fc, norm in zip(self._fcs, self._fc_norms):
      x = self._activation(norm(fc(x)))
    classes = self._classifier(x)
    num_deltas = 4 * (1 if self._config_dict['class_agnostic_bbox_pred']
                      else self._config_dict['num_classes'])
    deltas = tf.zeros(tf.concat([tf.shape(classes)[:2], [num_deltas]], 0),
                      classes.dtype)
    return classes, deltas


@registry.register('box_head', 'fc_classification')
def build_classification_head(
    config: model_config.TwoStageModel,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer],
    name: str = 'detection_head') -> tf_keras.layers.Layer:
  """The 'fc' head's trunk and classifier (`detection_head` fields), no box
  regression."""
  fc_head = standard_parts.build_fc_box_head(config, l2_regularizer, name)
  return ClassificationHead(**fc_head.get_config(), name=name)
