"""SSD's MultiBox loss: softmax cross-entropy on positives and the hardest
negatives (neg_pos_ratio per positive, per image, ranked by their
background loss) plus smooth L1 on the positives' box offsets, each summed
and divided by the number of positives in the batch (Liu et al., SSD)."""

import tensorflow as tf

from tf_mtdet.modeling import registry
from tf_mtdet.modeling import ssd_anchors


def hard_negatives(ce: tf.Tensor, positive: tf.Tensor,
                   neg_pos_ratio: float) -> tf.Tensor:
  """The mined negatives.

  Args:
    ce: [B, N] cross-entropy of every prior against its target.
    positive: [B, N] bool.
    neg_pos_ratio: Negatives kept per positive.

  Returns:
    [B, N] bool: per image the min(ratio * positives, negatives) negatives
    of highest loss.
  """
  ce = tf.stop_gradient(ce)
  negative_loss = tf.where(positive, -1.0, ce)
  # Rank of each prior by descending loss (positives rank last).
  order = tf.argsort(negative_loss, axis=1, direction='DESCENDING')
  rank = tf.argsort(order, axis=1)
  num_pos = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1, keepdims=True)
  num_neg = tf.reduce_sum(1 - tf.cast(positive, tf.int32), axis=1,
                          keepdims=True)
  keep = tf.minimum(
      tf.cast(tf.cast(num_pos, tf.float32) * neg_pos_ratio, tf.int32), num_neg)
  return tf.logical_and(rank < keep, tf.logical_not(positive))


def smooth_l1(x: tf.Tensor) -> tf.Tensor:
  """Elementwise smooth L1 (Huber, delta 1)."""
  x = tf.abs(x)
  return tf.where(x < 1.0, 0.5 * x * x, x - 0.5)


def multibox_terms(config) -> list[registry.LossTerm]:
  """'cls' and 'box' terms of a single-shot config with an 'ssd' head."""
  loss_cfg, num_classes = config.head.ssd_loss, config.num_classes

  def num_positives(labels):
    positive = tf.cast(labels['ssd_cls_targets'] > 0, tf.float32)
    return tf.maximum(tf.reduce_sum(positive), 1.0)

  def cls_loss(outputs, labels):
    targets = labels['ssd_cls_targets']
    logits = ssd_anchors.flatten(outputs['cls_outputs'], num_classes)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)
    positive = targets > 0
    counted = tf.logical_or(
        positive, hard_negatives(ce, positive, loss_cfg.neg_pos_ratio))
    return tf.reduce_sum(tf.where(counted, ce, 0.0)) / num_positives(labels)

  def box_loss(outputs, labels):
    pred = ssd_anchors.flatten(outputs['box_outputs'], 4)
    per_prior = tf.reduce_sum(smooth_l1(pred - labels['ssd_box_targets']),
                              axis=-1)
    positive = labels['ssd_cls_targets'] > 0
    return (tf.reduce_sum(tf.where(positive, per_prior, 0.0)) /
            num_positives(labels))

  return [registry.LossTerm('cls', 1.0, cls_loss),
          registry.LossTerm('box', loss_cfg.box_weight, box_loss)]
