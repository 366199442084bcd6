"""Model Garden's RPN and box heads without their normalisation layers.

maskrcnn-benchmark's RPN head (conv3x3 + ReLU, 1x1 scores and boxes) and its
box heads (2fc: FC + ReLU twice; 4conv1fc) have no normalisation; Model
Garden's `RPNHead` and `DetectionHead` put a batch norm after every conv and
FC. DATNet builds on maskrcnn-benchmark (Sec. 3.3) without synchronized BN
(Sec. 4), so its configs switch those norms off (`rpn_head.use_norm`,
`detection_head.use_norm`). These classes are Model Garden's heads with each
norm replaced by the identity: same weights otherwise, same outputs contract.
"""

import tf_keras

from official.vision.modeling.heads import dense_prediction_heads
from official.vision.modeling.heads import instance_heads


def _identities(norms, prefix: str) -> list[tf_keras.layers.Layer]:
  # Replaced before any call, so the norms never make variables.
  return [tf_keras.layers.Identity(name=f'{prefix}_{i}')
          for i in range(len(norms))]


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class NormFreeRPNHead(dense_prediction_heads.RPNHead):
  """Model Garden's `RPNHead` (shared convs, per-level outputs
  {level: [B, H_l, W_l, A]} scores and {level: [B, H_l, W_l, 4A]} boxes)
  with no normalisation after its convs."""

  def build(self, input_shape):
    super().build(input_shape)
    self._norms = [_identities(level, f'rpn-no-norm_{i}')
                   for i, level in enumerate(self._norms)]


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class NormFreeDetectionHead(instance_heads.DetectionHead):
  """Model Garden's `DetectionHead` ([B, N, k, k, C] -> class logits, box
  deltas) with no normalisation after its convs and FCs."""

  def build(self, input_shape):
    super().build(input_shape)
    self._conv_norms = _identities(self._conv_norms, 'conv-no-norm')
    self._fc_norms = _identities(self._fc_norms, 'fc-no-norm')
