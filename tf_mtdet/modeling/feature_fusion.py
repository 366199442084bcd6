"""Fusion of dense auxiliary heads' features back into the pyramid."""

from typing import Any, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras

from tf_mtdet.modeling import registry


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class SumFusion(tf_keras.layers.Layer):
  """P'_l = P_l + sum over heads of resize(F_head, size of P_l); no weights.

  Only levels l in [levels[0], levels[1]] are fused (DATNet: P'_2..P'_5;
  its P6 reaches the RPN unfused); the others pass unchanged.

  Shapes: features {level: [B, H_l, W_l, C]}; each head's
  `fusion_features` [B, h, w, C] (same C) -> {level: [B, H_l, W_l, C]}.
  """

  def __init__(self, levels: Optional[Sequence[int]] = None, **kwargs):
    super().__init__(**kwargs)
    self._levels = list(levels) if levels is not None else None

  def fuses(self, level: str) -> bool:
    """Whether pyramid level `level` is fused."""
    return (self._levels is None or
            self._levels[0] <= int(level) <= self._levels[1])

  def call(self, features: Mapping[str, tf.Tensor],
           aux_outputs: Mapping[str, Mapping[str, tf.Tensor]]
           ) -> dict[str, tf.Tensor]:
    extra = [outputs['fusion_features'] for outputs in aux_outputs.values()
             if 'fusion_features' in outputs]
    fused = {}
    for level, value in features.items():
      if not extra or not self.fuses(level):
        fused[level] = value
        continue
      size = tf.shape(value)[1:3]
      fused[level] = value + tf.add_n([
          tf.cast(tf.image.resize(f, size, method='bilinear'), value.dtype)
          for f in extra])
    return fused

  def get_config(self) -> Mapping[str, Any]:
    return {**super().get_config(), 'levels': self._levels}


@registry.register('feature_fusion', 'sum')
def build_sum_fusion(part, model_cfg, l2_regularizer=None) -> SumFusion:
  del model_cfg, l2_regularizer  # no weights
  return SumFusion(part.levels, name='feature_fusion')
