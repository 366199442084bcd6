"""DATNet's focal-style categorical pixel loss (Levinshtein et al., Eqn. 1-2).

Per pixel i with true class y: L_i = -alpha_y (1 - p_y)^gamma log p_y, p the
softmax; the loss is the mean of L_i over the labelled pixels (the paper's
1/BWH; pixels with the ignore label, e.g. padding, do not count). alpha is
`alpha_background` for class 0 and `alpha_foreground` for every other class.
"""

import tensorflow as tf


def logits_at_label_size(logits: tf.Tensor, labels: tf.Tensor,
                         upsample: int = 1, name: str = 'pixel') -> tf.Tensor:
  """Logits upsampled (bilinear) by exactly `upsample`, checked against the
  labels' size: labels made at any other stride are an error, not resized.

  Args:
    logits: [B, h, w, K].
    labels: [B, h * upsample, w * upsample].
    upsample: Labels' resolution over the logits'.
    name: The loss, for the error message.

  Returns:
    [B, h * upsample, w * upsample, K] float32.

  Raises:
    ValueError (static shapes) or InvalidArgumentError (at run time) when
    the sizes disagree.
  """
  logits = tf.cast(logits, tf.float32)
  static_in = logits.shape[1:3]
  static_out = labels.shape[1:3]
  if static_in.is_fully_defined() and static_out.is_fully_defined():
    want = [d * upsample for d in static_in.as_list()]
    if want != static_out.as_list():
      raise ValueError(
          f'{name} loss: labels are {static_out.as_list()}, logits '
          f'{static_in.as_list()} x {upsample} = {want}: the target was made '
          'at another stride than the head predicts')
  want = tf.shape(logits)[1:3] * upsample
  checks = [tf.debugging.assert_equal(
      want, tf.shape(labels)[1:3],
      message=f'{name} loss: the target was made at another stride than '
      'the head predicts')]
  with tf.control_dependencies(checks):
    if upsample == 1:
      return tf.identity(logits)
    return tf.image.resize(logits, want, method='bilinear')


def categorical_focal_loss(logits: tf.Tensor, labels: tf.Tensor,
                           gamma: float = 2.0, alpha_background: float = 0.2,
                           alpha_foreground: float = 1.0,
                           ignore_label: int = 255, upsample: int = 1,
                           name: str = 'focal') -> tf.Tensor:
  """Mean focal-style softmax loss over labelled pixels.

  Args:
    logits: [B, h, w, K].
    labels: [B, h * upsample, w * upsample] int class ids in [0, K) or
      `ignore_label`.
    gamma: Focusing exponent.
    alpha_background: Weight of class-0 pixels.
    alpha_foreground: Weight of the other classes' pixels.
    ignore_label: Label of pixels that do not count.
    upsample: The labels' resolution over the logits' (`logits_at_label_size`).
    name: The loss, for the error message.

  Returns:
    Scalar float32 loss (0 when no pixel is labelled).
  """
  logits = logits_at_label_size(logits, labels, upsample, name)
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
