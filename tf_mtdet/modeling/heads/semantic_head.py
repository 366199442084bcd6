"""Semantic segmentation head on the pyramid (Panoptic FPN's shape).

Each level P_l (l in `levels`) gets a conv3x3 + norm + ReLU and is resized
bilinearly to the finest level's size; the levels are summed, `num_fused_convs`
conv3x3 + ReLU layers give the features F that fusion can add back into the
pyramid, and a 1x1 conv gives per-class logits at the finest level's stride.
A registered 'dense_aux_head' that owns its target (the semantic map) and its
loss (pixel softmax cross-entropy, ignore label skipped).
"""

from typing import Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import tf_utils

from tf_mtdet.config import two_stage as two_stage_config
from tf_mtdet.data.targets import semantic as semantic_targets
from tf_mtdet.losses import pixel_focal
from tf_mtdet.modeling import layer_config
from tf_mtdet.modeling import registry
from tf_mtdet.modeling.heads import datnet_dense_head


@tf_keras.utils.register_keras_serializable(package='tf_mtdet')
class SemanticHead(layer_config.RegularizedLayerConfig,
                   tf_keras.layers.Layer):
  """Pyramid {level: [B, H_l, W_l, C]} -> `logits` [B, H_min, W_min, K] and
  `fusion_features` [B, H_min, W_min, num_filters]."""

  def __init__(self, num_classes: int, min_level: int = 2, max_level: int = 5,
               num_filters: int = 256, num_fused_convs: int = 2,
               use_sync_bn: bool = False, norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001, activation: str = 'relu',
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    super().__init__(**kwargs)
    self._config_dict = dict(
        num_classes=num_classes, min_level=min_level, max_level=max_level,
        num_filters=num_filters, num_fused_convs=num_fused_convs,
        use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon, activation=activation,
        kernel_regularizer=kernel_regularizer)
    conv = lambda filters, size, name: tf_keras.layers.Conv2D(
        filters, size, padding='same', kernel_regularizer=kernel_regularizer,
        kernel_initializer=tf_keras.initializers.RandomNormal(stddev=0.01),
        name=name)
    norm = (tf_keras.layers.experimental.SyncBatchNormalization if use_sync_bn
            else tf_keras.layers.BatchNormalization)
    self._activation = tf_utils.get_activation(activation)
    self._level_convs = {
        str(l): conv(num_filters, 3, f'level_{l}_conv')
        for l in range(min_level, max_level + 1)}
    self._level_norms = {
        str(l): norm(momentum=norm_momentum, epsilon=norm_epsilon,
                     name=f'level_{l}_norm')
        for l in range(min_level, max_level + 1)}
    self._fused_convs = [conv(num_filters, 3, f'fused_conv_{i}')
                         for i in range(num_fused_convs)]
    self._classifier = conv(num_classes, 1, 'classifier')

  def call(self, features: Mapping[str, tf.Tensor], training=None
           ) -> dict[str, tf.Tensor]:
    cfg = self._config_dict
    finest = features[str(cfg['min_level'])]
    size = tf.shape(finest)[1:3]
    fused = None
    for level in range(cfg['min_level'], cfg['max_level'] + 1):
      x = self._level_convs[str(level)](features[str(level)])
      x = self._activation(self._level_norms[str(level)](x, training=training))
      if level > cfg['min_level']:
        x = tf.image.resize(x, size, method='bilinear')
      fused = x if fused is None else fused + x
    for conv in self._fused_convs:
      fused = self._activation(conv(fused))
    return {'logits': self._classifier(fused), 'fusion_features': fused}


def pixel_cross_entropy(logits: tf.Tensor, labels: tf.Tensor,
                        ignore_label: int = 255, upsample: int = 1,
                        name: str = 'semantic') -> tf.Tensor:
  """Mean softmax cross-entropy over labelled pixels.

  Args:
    logits: [B, h, w, K].
    labels: [B, h * upsample, w * upsample] int class ids; `ignore_label`
      pixels do not count.
    ignore_label: Label of pixels without a class.
    upsample: The labels' resolution over the logits' (the logits are
      upsampled bilinearly by it; any other size is an error).
    name: The loss, for the error message.

  Returns:
    Scalar loss (0 when no pixel is labelled).
  """
  logits = pixel_focal.logits_at_label_size(logits, labels, upsample, name)
  valid = tf.not_equal(labels, ignore_label)
  safe = tf.where(valid, labels, 0)
  per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(safe, logits)
  valid = tf.cast(valid, tf.float32)
  return tf.reduce_sum(per_pixel * valid) / tf.maximum(
      tf.reduce_sum(valid), 1.0)


def _num_classes(part: two_stage_config.SemanticHead, model_cfg) -> int:
  return part.num_classes or model_cfg.num_classes


def _semantic_losses(part: two_stage_config.SemanticHead, model_cfg,
                     name: str = 'semantic') -> list[registry.LossTerm]:
  del model_cfg
  # The target (`SemanticTargets`) is at the output size, the logits at the
  # head's stride 2**levels[0].
  upsample = 2**part.levels[0]
  if part.loss == 'focal':
    # DATNet's focal-style categorical loss (Eqn. 1-2).
    return [registry.LossTerm(
        name, part.loss_weight,
        lambda outputs, labels: pixel_focal.categorical_focal_loss(
            outputs[f'{name}/logits'], labels['gt_semantic'],
            gamma=part.focal_gamma,
            alpha_background=part.focal_alpha_background,
            upsample=upsample, name=name))]
  if part.loss != 'cross_entropy':
    raise ValueError(f"semantic head loss must be 'cross_entropy' or "
                     f"'focal', got {part.loss!r}")
  return [registry.LossTerm(
      name, part.loss_weight,
      lambda outputs, labels: pixel_cross_entropy(
          outputs[f'{name}/logits'], labels['gt_semantic'], upsample=upsample,
          name=name))]


def build_trunk(part, num_classes: int, model_cfg, l2_regularizer,
                name: str) -> tf_keras.layers.Layer:
  """A dense head's trunk by `part.architecture`: 'panoptic_fpn'
  (`SemanticHead`) or 'datnet' (`DATNetDenseHead`, DATNet Sec. 3.3)."""
  if part.architecture == 'datnet':
    return datnet_dense_head.DATNetDenseHead(
        num_classes=num_classes, min_level=part.levels[0],
        max_level=part.levels[1], num_filters=part.num_filters,
        num_fused_convs=part.num_fused_convs,
        kernel_regularizer=l2_regularizer, name=name)
  if part.architecture != 'panoptic_fpn':
    raise ValueError(f"{name}.architecture must be 'panoptic_fpn' or "
                     f"'datnet', got {part.architecture!r}")
  norm = model_cfg.norm_activation
  return SemanticHead(
      num_classes=num_classes, min_level=part.levels[0],
      max_level=part.levels[1], num_filters=part.num_filters,
      num_fused_convs=part.num_fused_convs, use_sync_bn=norm.use_sync_bn,
      norm_momentum=norm.norm_momentum, norm_epsilon=norm.norm_epsilon,
      activation=norm.activation, kernel_regularizer=l2_regularizer,
      name=name)


@registry.register(
    'dense_aux_head', 'semantic',
    targets=lambda part, model_cfg: semantic_targets.SemanticTargets(),
    losses=_semantic_losses)
def build_semantic_head(part: two_stage_config.SemanticHead, model_cfg,
                        l2_regularizer=None) -> tf_keras.layers.Layer:
  return build_trunk(part, _num_classes(part, model_cfg), model_cfg,
                     l2_regularizer, 'semantic')
