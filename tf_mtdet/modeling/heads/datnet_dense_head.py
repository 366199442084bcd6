"""DATNet's dense auxiliary head trunk (Levinshtein et al., Sec. 3.3).

"The auxiliary image tasks take as input the four FPN feature maps
(P2, ..., P5) and an extra coarse (P6) resolution ... All feature maps,
excluding P2, are upsampled to quarter resolution using a sequence of
convolution, ReLU, and x2 bilinear upsampling operations. The upsampled
feature maps are summed together and further processed using a sequence of
two convolutions with ReLU. This yields the features F ... one final
convolution ... All convolutions are 3x3 with 256 channels, except the final
one." Level l so takes l - min_level stages of [conv3x3 + ReLU + bilinear
x2]; no normalisation is named, none is used. Both the DT and the semantic
head are this trunk with their own weights (`architecture: datnet`).
"""

from typing import Mapping, Optional

import tensorflow as tf
import tf_keras

from tf_mtdet.modeling import layer_config


def _conv(filters: int, name: str, kernel_initializer,
          kernel_regularizer) -> tf_keras.layers.Conv2D:
  return tf_keras.layers.Conv2D(
      filters, 3, padding='same', kernel_initializer=kernel_initializer,
      kernel_regularizer=kernel_regularizer, name=name)


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class DATNetDenseHead(layer_config.RegularizedLayerConfig,
                      tf_keras.layers.Layer):
  """Pyramid {level: [B, H_l, W_l, C]} -> `logits` [B, H_min, W_min, K] and
  `fusion_features` F [B, H_min, W_min, num_filters].

  Level l in [min_level, max_level] goes through l - min_level stages of
  conv3x3 + ReLU + bilinear x2 (to the next finer level's size); the maps
  are summed, `num_fused_convs` conv3x3 + ReLU give F, and a conv3x3 gives
  the K logits.
  """

  def __init__(self, num_classes: int, min_level: int = 2, max_level: int = 6,
               num_filters: int = 256, num_fused_convs: int = 2,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    super().__init__(**kwargs)
    self._config_dict = dict(
        num_classes=num_classes, min_level=min_level, max_level=max_level,
        num_filters=num_filters, num_fused_convs=num_fused_convs,
        kernel_regularizer=kernel_regularizer)
    # He initialisation: up to 4 + 2 conv + ReLU layers in a row without
    # normalisation keep their activations' scale.
    he = lambda: tf_keras.initializers.VarianceScaling(
        scale=2.0, mode='fan_out', distribution='untruncated_normal')
    self._upsampling_convs = {
        str(l): [_conv(num_filters, f'level_{l}_conv_{i}', he(),
                       kernel_regularizer)
                 for i in range(l - min_level)]
        for l in range(min_level, max_level + 1)}
    self._fused_convs = [
        _conv(num_filters, f'fused_conv_{i}', he(), kernel_regularizer)
        for i in range(num_fused_convs)]
    # Small logits at the start: a near-uniform softmax.
    self._classifier = _conv(
        num_classes, 'classifier',
        tf_keras.initializers.RandomNormal(stddev=0.01), kernel_regularizer)

  def call(self, features: Mapping[str, tf.Tensor], training=None
           ) -> dict[str, tf.Tensor]:
    del training
    cfg = self._config_dict
    fused = None
    channels = features[str(cfg['min_level'])].shape[-1]
    if channels is not None and channels != cfg['num_filters']:
      # The finest level joins the sum as it is (no conv).
      raise ValueError(
          f'{self.name}: num_filters is {cfg["num_filters"]} but pyramid '
          f'level {cfg["min_level"]} has {channels} channels; they must be '
          'equal')
    for level in range(cfg['min_level'], cfg['max_level'] + 1):
      x = features[str(level)]
      for i, conv in enumerate(self._upsampling_convs[str(level)]):
        finer = features[str(level - i - 1)]
        x = tf.image.resize(tf.nn.relu(conv(x)), tf.shape(finer)[1:3],
                            method='bilinear')
      fused = x if fused is None else fused + x
    for conv in self._fused_convs:
      fused = tf.nn.relu(conv(fused))
    return {'logits': self._classifier(fused), 'fusion_features': fused}
