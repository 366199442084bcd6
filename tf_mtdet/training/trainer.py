"""`tf_keras.Model` wrapper whose `train_step`/`test_step` run a detection
model and its family's losses, so `compile` + `fit` train it under any
strategy."""

from typing import Any, Mapping

import tensorflow as tf
import tf_keras

from tf_mtdet.families import base as family_base


class DetectionTrainer(tf_keras.Model):
  """Trains `model` with `loss_fn` in `fit`; predicts detections otherwise.

  `train_step` reports every loss component as a metric (shown in the
  progress bar and TensorBoard), plus the L2 penalty and the total. The total
  per replica is divided by the number of replicas, since gradients are summed
  across them. `predict_step` returns the model's detections with `source_id`
  and `image_info` for the evaluators.

  A training wrapper, not a layer: it is rebuilt from the experiment config,
  and checkpoints hold the detection model and optimizer.
  """

  def __init__(self, model: tf_keras.Model, family: family_base.Family,
               **kwargs):
    super().__init__(**kwargs)
    self.model = model
    self.family = family
    self.loss_fn = family.build_losses()
    loss_fn = self.loss_fn
    names = [*loss_fn.component_names, 'l2_loss', 'total_loss']
    self._trackers = {n: tf_keras.metrics.Mean(name=n) for n in names}

  @property
  def metrics(self):
    return list(self._trackers.values())

  def call(self, inputs, training: bool = False):
    images, labels = inputs
    return self.model(images, **self.family.model_inputs(labels, training),
                      training=training)

  def _compute_losses(self, images, labels, training: bool) -> dict[str, tf.Tensor]:
    outputs = self.model(images, **self.family.model_inputs(labels, True),
                         training=training)
    # Under a mixed precision policy the heads emit float16/bfloat16.
    outputs = tf.nest.map_structure(
        lambda x: tf.cast(x, tf.float32) if x.dtype.is_floating else x,
        outputs)
    losses = self.loss_fn(outputs, labels)
    l2 = (tf.add_n([tf.cast(x, tf.float32) for x in self.model.losses])
          if self.model.losses else tf.constant(0.0))
    losses['l2_loss'] = l2
    losses['total_loss'] = losses['model_loss'] + l2
    return losses

  def train_step(self, data):
    images, labels = data
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tf.GradientTape() as tape:
      losses = self._compute_losses(images, labels, training=True)
      scaled = losses['total_loss'] / replicas
      if isinstance(self.optimizer,
                    tf_keras.mixed_precision.LossScaleOptimizer):
        scaled = self.optimizer.get_scaled_loss(scaled)
    variables = self.model.trainable_variables
    grads = tape.gradient(scaled, variables)
    if isinstance(self.optimizer,
                  tf_keras.mixed_precision.LossScaleOptimizer):
      grads = self.optimizer.get_unscaled_gradients(grads)
    self.optimizer.apply_gradients(zip(grads, variables))
    return self._update_trackers(losses)

  def test_step(self, data):
    """Validation losses on batches parsed with training targets."""
    images, labels = data
    return self._update_trackers(self._compute_losses(images, labels, training=False))

  def predict_step(self, data):
    images, labels = data if isinstance(data, tuple) else (data, {})
    outputs = self.model(images, **self.family.model_inputs(labels, False),
                         training=False)
    result = self.family.detections(outputs)
    for key in ('source_id', 'image_info', 'gt_semantic',
                'gt_semantic_original'):
      if key in labels:
        result[key] = labels[key]
    return result

  def _update_trackers(self, losses: Mapping[str, tf.Tensor]):
    for name, tracker in self._trackers.items():
      tracker.update_state(losses[name])
    return {name: t.result() for name, t in self._trackers.items()}

