"""IvaNet's segmentation head (PCM, BlitzNet's shape plus IvaNet's fused conv).

Every pyramid level gets a conv + ReLU (`level_filters` wide, kernel
`level_kernel_size`; BlitzNet's code: 64 wide, 1x1 by default) at its own
resolution and is resized bilinearly to the largest level's size; the levels
are concatenated, a conv3x3 + ReLU fuses them (IvaNet's PCM; `num_filters`)
and a conv3x3 gives per-class logits at the largest level's resolution. A
registered 'dense_aux_head' ('pcm') that owns its target (the semantic map)
and its loss (pixel softmax cross-entropy at the logits' resolution, labels
resized nearest, 255 ignored).
"""

from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from tf_mtdet.data.targets import semantic as semantic_targets
from tf_mtdet.modeling import registry


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class PCMHead(tf_keras.layers.Layer):
  """Pyramid {level: [B, H_l, W_l, C_l]} -> `logits` [B, H_max, W_max, K]
  (H_max, W_max: the largest level's size).

  Args:
    num_classes: K, semantic classes.
    min_level: Finest level (its size is the logits' size).
    max_level: Coarsest level.
    level_filters: Width of the per-level conv (0: none, the raw levels are
      concatenated).
    num_filters: Width of the fused conv3x3 over the concatenation.
    level_kernel_size: Kernel of the per-level conv (3 is the layer's
      default so older saved configs keep their shape; the config's is 1).
    kernel_regularizer: Applied to every conv kernel.
    **kwargs: `tf_keras.layers.Layer` arguments.
  """

  def __init__(self, num_classes: int, min_level: int, max_level: int,
               level_filters: int = 64, num_filters: int = 256,
               level_kernel_size: int = 3,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    super().__init__(**kwargs)
    self._config_dict = dict(
        num_classes=num_classes, min_level=min_level, max_level=max_level,
        level_filters=level_filters, num_filters=num_filters,
        level_kernel_size=level_kernel_size,
        kernel_regularizer=kernel_regularizer)
    # Per-level convs run at each level's own size, before the resize, so
    # only the finest level's costs much (38x38 is 3/4 of the pixels at 300).
    conv = lambda filters, name, size=3: tf_keras.layers.Conv2D(
        filters, size, padding='same', kernel_regularizer=kernel_regularizer,
        name=name)
    self._levels = [str(l) for l in range(min_level, max_level + 1)]
    self._level_convs = ({l: conv(level_filters, f'level_{l}_conv',
                                    level_kernel_size)
                          for l in self._levels} if level_filters else {})
    self._fuse = conv(num_filters, 'fuse_conv')
    self._classifier = conv(num_classes, 'classifier')

  def call(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    size = tf.shape(features[self._levels[0]])[1:3]
    parts = []
    for level in self._levels:
      x = features[level]
      if self._level_convs:
        x = tf.nn.relu(self._level_convs[level](x))
      if level != self._levels[0]:
        x = tf.image.resize(x, size, method='bilinear')
      parts.append(x)
    fused = tf.nn.relu(self._fuse(tf.concat(parts, axis=-1)))
    return {'logits': self._classifier(fused)}

  def get_config(self) -> Mapping[str, Any]:
    config = dict(self._config_dict)
    config['kernel_regularizer'] = tf_keras.regularizers.serialize(
        config['kernel_regularizer']) if config['kernel_regularizer'] else None
    return {**super().get_config(), **config}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    if config.get('kernel_regularizer'):
      config['kernel_regularizer'] = tf_keras.regularizers.deserialize(
          config['kernel_regularizer'])
    return cls(**config)


def cross_entropy_at_logits(logits: tf.Tensor, labels: tf.Tensor,
                            ignore_label: int = 255) -> tf.Tensor:
  """Mean softmax cross-entropy over labelled pixels at the logits' size.

  Args:
    logits: [B, h, w, K].
    labels: [B, H, W] int class ids, resized nearest to [h, w].
    ignore_label: Label of pixels without a class.

  Returns:
    Scalar loss (0 when no pixel is labelled).
  """
  logits = tf.cast(logits, tf.float32)
  labels = tf.image.resize(labels[..., tf.newaxis], tf.shape(logits)[1:3],
                           method='nearest')[..., 0]
  valid = tf.not_equal(labels, ignore_label)
  safe = tf.where(valid, labels, 0)
  per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(safe, logits)
  valid = tf.cast(valid, tf.float32)
  return tf.reduce_sum(per_pixel * valid) / tf.maximum(
      tf.reduce_sum(valid), 1.0)


def num_classes(part, model_cfg) -> int:
  return part.num_classes or model_cfg.num_classes


def _losses(part, model_cfg) -> list[registry.LossTerm]:
  del model_cfg
  return [registry.LossTerm(
      'semantic', part.loss_weight,
      lambda outputs, labels: cross_entropy_at_logits(
          outputs['semantic/logits'], labels['gt_semantic']))]


@registry.register(
    'dense_aux_head', 'pcm',
    targets=lambda part, model_cfg: semantic_targets.SemanticTargets(),
    losses=_losses)
def build_pcm_head(part, model_cfg, l2_regularizer=None) -> PCMHead:
  return PCMHead(num_classes(part, model_cfg), model_cfg.min_level,
                 model_cfg.max_level, level_filters=part.level_filters,
                 num_filters=part.num_filters,
                 level_kernel_size=part.level_kernel_size,
                 kernel_regularizer=l2_regularizer, name='segmentation')
