"""Training with `model.fit` under `tf.distribute`."""
