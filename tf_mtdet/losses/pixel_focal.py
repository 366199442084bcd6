"""DATNet's focal-style categorical pixel loss (Levinshtein et al., Eqn. 1-2).

Per pixel i with true class y: L_i = -alpha_y (1 - p_y)^gamma log p_y, p the
softmax; the loss is the mean of L_i over the labelled pixels (the paper's
1/BWH; pixels with the ignore label, e.g. padding, do not count). alpha is
`alpha_background` for class 0 and `alpha_foreground` for every other class.
"""

import tensorflow as tf


def categorical_focal_loss(logits: tf.Tensor, labels: tf.Tensor,
                           gamma: float = 2.0, alpha_background: float = 0.2,
                           alpha_foreground: float = 1.0,
                           ignore_label: int = 255) -> tf.Tensor:
  """Mean focal-style softmax loss over labelled pixels.

  Args:
    logits: [B, h, w, K], resized bilinearly to the labels' size.
    labels: [B, H, W] int class ids in [0, K) or `ignore_label`.
    gamma: Focusing exponent.
    alpha_background: Weight of class-0 pixels.
    alpha_foreground: Weight of the other classes' pixels.
    ignore_label: Label of pixels that do not count.

  Returns:
    Scalar float32 loss (0 when no pixel is labelled).
  """
  # Same size: bilinear resizing is the identity.
  logits = tf.image.resize(tf.cast(logits, tf.float32), tf.shape(labels)[1:3],
                           method='bilinear')
  labels = tf.cast(labels, tf.int32)
  valid = tf.not_equal(labels, ignore_label)
  safe = tf.where(valid, labels, 0)
  log_p = -tf.nn.sparse_softmax_cross_entropy_with_logits(safe, logits)
  p = tf.exp(log_p)
  alpha = tf.where(safe == 0, alpha_background, alpha_foreground)
  per_pixel = -alpha * tf.pow(1.0 - p, gamma) * log_p
  valid = tf.cast(valid, tf.float32)
  return tf.reduce_sum(per_pixel * valid) / tf.maximum(
      tf.reduce_sum(valid), 1.0)
