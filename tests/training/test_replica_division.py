"""The trainer's loss division by the replica count, and SyncBN, checked
where they are deterministic: a toy model and family through the real
`DetectionTrainer` give the same weights on 2 replicas as on 1 at the same
global batch. Without the division the 2-replica gradient is twice as large."""

import json
import textwrap

import numpy as np

from tests.training import conftest

_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import tf_keras
    from tf_mtdet.losses import total
    from tf_mtdet.modeling import registry
    from tf_mtdet.training import trainer

    class ToyFamily:
      # A family's training surface: losses and model inputs.
      def build_losses(self):
        mse = lambda outputs, labels: tf.reduce_mean(
            tf.square(outputs['y'] - labels['y']))
        return total.TotalLoss([registry.LossTerm('mse', 1.0, mse)])
      def model_inputs(self, labels, training):
        return {}

    class ToyModel(tf_keras.Model):
      def __init__(self):
        super().__init__()
        self.dense = tf_keras.layers.Dense(
            3, kernel_initializer=tf_keras.initializers.Constant(0.1))
        self.bn = tf_keras.layers.BatchNormalization(synchronized=True)
        self.out = tf_keras.layers.Dense(
            1, kernel_initializer=tf_keras.initializers.Constant(0.2))
      def call(self, x, training=None):
        return {'y': self.out(self.bn(self.dense(x), training=training))}

    rng = np.random.default_rng(0)
    x = rng.normal(size=[8, 4]).astype(np.float32)
    y = rng.normal(size=[8, 1]).astype(np.float32)
    devices = ['/cpu:0', '/cpu:1'][:int(sys.argv[1])]
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
      model = ToyModel()
      model(tf.zeros([1, 4]))
      wrapper = trainer.DetectionTrainer(model, ToyFamily())
      wrapper.compile(optimizer=tf_keras.optimizers.legacy.SGD(0.5))
    ds = tf.data.Dataset.from_tensor_slices((x, {'y': y})).batch(8).repeat()
    wrapper.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    print('WEIGHTS', json.dumps([w.tolist() for w in model.get_weights()]))
    """)


def _weights(replicas: int) -> list[np.ndarray]:
  out = conftest.run_python(_SCRIPT.replace('sys.argv[1]', str(replicas)))
  line = out.stdout.split('WEIGHTS', 1)[1].strip().splitlines()[0]
  return [np.array(w) for w in json.loads(line)]


def test_two_replicas_train_like_one_at_the_same_global_batch():
  one, two = _weights(1), _weights(2)
  initial_kernel = np.full([4, 3], 0.1)
  assert not np.allclose(one[0], initial_kernel)  # It trained.
  for a, b in zip(one, two):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
