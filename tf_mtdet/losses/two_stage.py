"""Mask R-CNN family losses from Model Garden's `maskrcnn_losses`.

The same terms and weighting as Model Garden's `MaskRCNNTask.build_losses`:
RPN objectness + box, Fast R-CNN class + box averaged over cascade stages, and
mask BCE. Dense auxiliary heads contribute through `extra_loss_fns`.
"""

from typing import Any, Callable, Mapping, Optional

import tensorflow as tf

from official.vision.losses import maskrcnn_losses

from tf_mtdet.config import experiment as experiment_config

ExtraLossFn = Callable[[Mapping[str, Any], Mapping[str, Any]], tf.Tensor]


class TwoStageLoss:
  """Callable `(outputs, labels) -> {name: scalar}` with 'model_loss'.

  Attributes:
    component_names: Names of the per-term losses, in order.
  """

  def __init__(self, losses: experiment_config.Losses, num_stages: int,
               class_agnostic_bbox_pred: bool, include_mask: bool,
               extra_loss_fns: Optional[Mapping[str, tuple[float, ExtraLossFn]]]
               = None):
    """Initializes the loss.

    Args:
      losses: Loss weights and Huber deltas.
      num_stages: Detection heads (1 + cascade stages).
      class_agnostic_bbox_pred: Box regression is class agnostic.
      include_mask: The model has a mask branch.
      extra_loss_fns: Name -> (weight, fn(outputs, labels)) for dense
        auxiliary heads.
    """
    self._cfg = losses
    self._num_stages = num_stages
    self._include_mask = include_mask
    self._extra = dict(extra_loss_fns or {})
    self._rpn_box = maskrcnn_losses.RpnBoxLoss(losses.rpn_huber_loss_delta)
    self._frcnn_class = maskrcnn_losses.FastrcnnClassLoss(
        use_binary_cross_entropy=losses.frcnn_class_use_binary_cross_entropy,
        top_k_percent=losses.frcnn_class_loss_top_k_percent)
    self._frcnn_box = maskrcnn_losses.FastrcnnBoxLoss(
        losses.frcnn_huber_loss_delta, class_agnostic_bbox_pred)
    self._mask = maskrcnn_losses.MaskrcnnLoss()
    self.component_names = ['rpn_score_loss', 'rpn_box_loss',
                            'frcnn_cls_loss', 'frcnn_box_loss']
    if include_mask:
      self.component_names.append('mask_loss')
    self.component_names += [f'{name}_loss' for name in self._extra]

  def __call__(self, outputs: Mapping[str, Any],
               labels: Mapping[str, Any]) -> dict[str, tf.Tensor]:
    cfg = self._cfg
    rpn_score = maskrcnn_losses.RpnScoreLoss(
        tf.shape(outputs['box_outputs'])[1])
    result = {
        'rpn_score_loss': tf.reduce_mean(
            rpn_score(outputs['rpn_scores'], labels['rpn_score_targets'])),
        'rpn_box_loss': tf.reduce_mean(
            self._rpn_box(outputs['rpn_boxes'], labels['rpn_box_targets'])),
    }
    cls_loss = box_loss = 0.0
    for stage in range(self._num_stages):
      suffix = f'_{stage}' if stage else ''
      cls_loss += tf.reduce_mean(self._frcnn_class(
          outputs['class_outputs' + suffix], outputs['class_targets' + suffix],
          cfg.class_weights))
      box_loss += tf.reduce_mean(self._frcnn_box(
          outputs['box_outputs' + suffix], outputs['class_targets' + suffix],
          outputs['box_targets' + suffix]))
    result['frcnn_cls_loss'] = cls_loss / self._num_stages
    result['frcnn_box_loss'] = box_loss / self._num_stages
    model_loss = (cfg.rpn_score_weight * result['rpn_score_loss'] +
                  cfg.rpn_box_weight * result['rpn_box_loss'] +
                  cfg.frcnn_class_weight * result['frcnn_cls_loss'] +
                  cfg.frcnn_box_weight * result['frcnn_box_loss'])
    if self._include_mask:
      result['mask_loss'] = tf.reduce_mean(self._mask(
          outputs['mask_outputs'], outputs['mask_targets'],
          outputs['mask_class_targets']))
      model_loss += cfg.mask_weight * result['mask_loss']
    for name, (weight, fn) in self._extra.items():
      result[f'{name}_loss'] = fn(outputs, labels)
      model_loss += weight * result[f'{name}_loss']
    result['model_loss'] = cfg.loss_weight * model_loss
    return result
