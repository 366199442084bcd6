"""What build_training_state restores, without training: an initial
checkpoint (`init_checkpoint_modules=all`), a resume checkpoint that wins
over it, and the mixed_float16 loss-scale state through a save and restore."""

import numpy as np
import tensorflow as tf
import tf_keras

from tests.training import conftest
from tf_mtdet.config import experiment
from tf_mtdet.training import train


def _config(records, **extra):
  return experiment.load_config(conftest.TINY_CONFIG, conftest.tiny_overrides(
      records, **{'runtime.strategy': 'one_device', 'schedule.total_steps': 10,
                  **extra}))


def _state(config, write_dir):
  return train.build_training_state(
      config, tf.distribute.OneDeviceStrategy('/cpu:0'), write_dir)


def _head_kernel(model) -> np.ndarray:
  return model.detection_head[0].trainable_weights[0].numpy()


def test_init_all_then_resume_wins(shapes_records, tmp_path):
  # A checkpoint of another model of the same config: the init source.
  source = train.build_model(_config(shapes_records))
  source_path = tf.train.Checkpoint(model=source).write(
      str(tmp_path / 'init' / 'ckpt'))
  config = _config(shapes_records, **{
      'runtime.init_checkpoint': source_path,
      'runtime.init_checkpoint_modules': 'all'})
  write_dir = str(tmp_path / 'run')
  state = _state(config, write_dir)
  assert state.resumed_from is None
  # 'all': heads too, not only the backbone.
  np.testing.assert_array_equal(_head_kernel(state.model),
                                _head_kernel(source))
  for a, b in zip(source.backbone.weights, state.model.backbone.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())

  # Training moved on and checkpointed at step 7.
  kernel = state.model.detection_head[0].trainable_weights[0]
  kernel.assign_add(tf.ones_like(kernel))
  state.optimizer.iterations.assign(7)
  state.manager.save(checkpoint_number=7)
  trained = kernel.numpy()

  # A restart with the same config (init_checkpoint still set) resumes.
  state = _state(config, write_dir)
  assert state.resumed_from.endswith('ckpt-7')
  assert int(state.optimizer.iterations.numpy()) == 7
  np.testing.assert_array_equal(_head_kernel(state.model), trained)
  assert not np.array_equal(_head_kernel(state.model), _head_kernel(source))


def test_mixed_float16_loss_scale_survives_a_restart(shapes_records,
                                                     tmp_path):
  config = _config(shapes_records, **{
      'runtime.mixed_precision': 'mixed_float16'})
  write_dir = str(tmp_path / 'run')
  try:
    state = _state(config, write_dir)
    optimizer = state.optimizer
    assert isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    assert state.model.backbone.compute_dtype == 'float16'
    # Slots are made before the first (traced) step, through the wrapper.
    variables = state.model.trainable_variables
    assert all(optimizer.get_slot(v, 'momentum').shape == v.shape
               for v in variables)
    # As after some overflows and good steps.
    optimizer._loss_scale._current_loss_scale.assign(1024.0)  # pylint: disable=protected-access
    optimizer.dynamic_counter.assign(123)
    optimizer.iterations.assign(5)
    state.manager.save(checkpoint_number=5)

    state = _state(config, write_dir)
    assert state.resumed_from.endswith('ckpt-5')
    assert float(state.optimizer.loss_scale) == 1024.0
    assert int(state.optimizer.dynamic_counter.numpy()) == 123
    assert int(state.optimizer.iterations.numpy()) == 5
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')
