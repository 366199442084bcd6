"""The single-shot family: dense per-level heads on a pyramid, no proposals.

RetinaNet from Model Garden's parts is its baseline; IvaNet (SSD head, LTD
neck, segmentation head) plugs its parts in. Targets and losses are the dense
head's (anchor labels; focal + box loss for 'retinanet').
"""

from typing import Any, Mapping

import tf_keras

from tf_mtdet.families import base
from tf_mtdet.losses import total
from tf_mtdet.modeling import factory
from tf_mtdet.modeling import registry


@base.register('single_shot')
class SingleShotFamily(base.Family):
  """Backbone -> neck -> dense head -> multilevel detection generator."""

  def build_model(self) -> tf_keras.Model:
    return factory.build_single_shot_model(self.model_config,
                                           self.config.schedule.weight_decay)

  def call_inference(self, model, images, image_info):
    return model(images, image_shape=image_info[:, 1, :], training=False)

  @property
  def stride(self) -> int:
    """SSD inputs are a fixed size (`size_divisor` 1), not a multiple of
    2^max_level."""
    return self.model_config.size_divisor or 2**self.model_config.max_level

  def target_generators(self):
    cfg = self.model_config
    generators = []
    if cfg.head.type:
      generators.append(registry.targets('dense_head', cfg.head.type, cfg))
    if cfg.seg_head.type:
      generators.append(registry.targets('dense_aux_head', cfg.seg_head.type,
                                         cfg.seg_head.get(), cfg))
    return [g for g in generators if g is not None]

  def build_losses(self) -> total.TotalLoss:
    cfg = self.model_config
    terms = (registry.losses('dense_head', cfg.head.type, cfg)
             if cfg.head.type else [])
    if cfg.seg_head.type:
      terms += registry.losses('dense_aux_head', cfg.seg_head.type,
                               cfg.seg_head.get(), cfg)
    return total.TotalLoss(terms, cfg.loss_weight)

  def detections(self, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The base detections, plus the model's own `semantic` class map (the
    segmentation head's logits are already resized to the input)."""
    result = super().detections(
        {k: v for k, v in outputs.items() if k != 'semantic/logits'})
    if 'semantic' in outputs:
      result['semantic'] = outputs['semantic']
    return result

  @property
  def semantic_classes(self) -> int:
    seg = self.model_config.seg_head
    if not seg.type:
      return 0
    return seg.get().num_classes or self.model_config.num_classes

  def model_inputs(self, labels: Mapping[str, Any],
                   training: bool) -> dict[str, Any]:
    if training:
      return {}
    return {'image_shape': labels['image_info'][:, 1, :],
            'anchor_boxes': labels.get('anchor_boxes')}
