"""Model assembly: paper-size parameter counts, cascade, seams, configs."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests import conftest as root
from tf_mtdet.config import experiment
from tf_mtdet.modeling import factory
from tf_mtdet.modeling import registry
from tf_mtdet.modeling import two_stage

CONFIGS = os.path.join(root.REPO_ROOT, 'configs')


def _trainable(model) -> int:
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def _build(config, size=128):
  model = factory.build_model(config.model, config.schedule.weight_decay)
  outputs = model(tf.zeros([1, size, size, 3]),
                  tf.constant([[float(size)] * 2]), training=False)
  return model, outputs


def test_every_config_loads():
  paths = sorted(glob.glob(os.path.join(CONFIGS, '*', '*.yaml')))
  assert len(paths) >= 6
  for path in paths:
    config = experiment.load_config(path)
    assert config.model.num_classes > 1, path


def test_r50_fpn_81_class_has_paper_parameter_count():
  config = experiment.load_config(
      os.path.join(CONFIGS, 'mask_rcnn', 'mask_rcnn_r50_fpn_1x_coco.yaml'),
      ['model.num_classes=81'])
  model, outputs = _build(config)
  # DATNet Table 7: 44.4M. Model Garden's FPN makes P6 with a 3x3 stride-2
  # conv (0.59M) where the FPN paper max-pools; the rest matches.
  assert _trainable(model) == pytest.approx(44.4e6, rel=0.02)
  assert outputs['detection_masks'].shape[-2:] == (28, 28)
  # 2fc box head on 7x7x256 RoIs: 12544 -> 1024 -> 1024.
  head = model.detection_head[0]
  assert [w.shape for w in head.trainable_weights[:2]] == [(12544, 1024),
                                                          (1024,)]


def test_r101_and_cascade_build():
  r101 = experiment.load_config(
      os.path.join(CONFIGS, 'mask_rcnn', 'mask_rcnn_r101_fpn_1x_coco.yaml'),
      ['model.num_classes=81'])
  model, _ = _build(r101)
  # R101 adds 17 bottleneck blocks to R50's res4 stage (+19.0M).
  assert _trainable(model) == pytest.approx(64.0e6, rel=0.01)
  cascade = experiment.load_config(
      os.path.join(CONFIGS, 'mask_rcnn',
                   'cascade_mask_rcnn_r50_fpn_1x_coco.yaml'),
      ['model.num_classes=81'])
  model, outputs = _build(cascade)
  assert len(model.detection_head) == 3
  # Two more class-agnostic 2fc heads: 2 x (12544*1024 + 1024*1024 + ...).
  assert _trainable(model) == pytest.approx(72.6e6, rel=0.01)
  assert outputs['detection_boxes'].shape == (1, 100, 4)
  schedule = experiment.load_config(os.path.join(
      CONFIGS, 'mask_rcnn', 'mask_rcnn_r50_fpn_2x_coco.yaml')).schedule
  assert (schedule.epochs, schedule.decay_epochs) == (24, [16, 22])


class _ConstantAuxHead(tf_keras.layers.Layer):
  """Toy dense head: per-level mean feature plus a feature map to fuse."""

  def call(self, features):
    level = sorted(features)[0]
    return {'logits': tf.reduce_mean(features[level], axis=-1),
            'fusion_features': tf.ones_like(features[level][..., :1])}


class _AddFusion(tf_keras.layers.Layer):

  def __init__(self, value, **kwargs):
    super().__init__(**kwargs)
    self.value = value

  def call(self, features, aux):
    del aux
    return {k: v + self.value for k, v in features.items()}


def test_dense_aux_head_seam(monkeypatch):
  config = experiment.load_config(
      os.path.join(CONFIGS, 'mask_rcnn', 'mask_rcnn_tiny_shapes.yaml'))
  name = 'toy_aux_for_test'
  if name not in registry.names('dense_aux_head'):
    registry.register('dense_aux_head', name)(lambda c, r: _ConstantAuxHead())
    registry.register('feature_fusion', name)(
        lambda c, r: _AddFusion(1000.0))
  plain = factory.build_model(config.model)
  config.model.dense_aux_heads = [name]
  config.model.feature_fusion = name
  fused = factory.build_model(config.model)
  images = tf.random.uniform([1, 128, 128, 3])
  shape = tf.constant([[128.0, 128.0]])
  plain_out = plain(images, shape, training=False)
  fused(images, shape, training=False)  # creates the weights
  fused.set_weights(plain.get_weights())
  fused_out = fused(images, shape, training=False)
  assert fused_out[f'{name}/logits'].shape == (1, 32, 32)
  # The fused pyramid reaches the RPN: same weights, different proposals.
  assert not np.allclose(plain_out['rpn_scores']['3'].numpy(),
                         fused_out['rpn_scores']['3'].numpy())
  with pytest.raises(ValueError, match="unknown box_head 'nope'"):
    config.model.detection_head.type = 'nope'
    factory.build_model(config.model)


def test_two_stage_model_config_round_trip():
  config = experiment.load_config(
      os.path.join(CONFIGS, 'mask_rcnn', 'mask_rcnn_tiny_shapes.yaml'))
  model = factory.build_model(config.model)
  clone = two_stage.TwoStageModel.from_config(model.get_config())
  images = tf.random.uniform([1, 128, 128, 3])
  shape = tf.constant([[128.0, 128.0]])
  a = model(images, shape, training=False)
  b = clone(images, shape, training=False)  # shares the layers
  np.testing.assert_allclose(a['detection_boxes'], b['detection_boxes'])


def test_config_errors_name_the_source(tmp_path):
  bad = tmp_path / 'bad.yaml'
  bad.write_text('model: {num_clases: 3}\n')
  with pytest.raises(ValueError, match='bad.yaml'):
    experiment.load_config(str(bad))
  with pytest.raises(ValueError, match='--set'):
    experiment.load_config(None, ['schedule.epochs'])
  child = tmp_path / 'child.yaml'
  child.write_text('base: parent.yaml\nschedule: {epochs: 3}\n')
  (tmp_path / 'parent.yaml').write_text(
      'schedule: {epochs: 5, decay_epochs: [2]}\n')
  config = experiment.load_config(str(child), ['schedule.momentum=0.5'])
  assert (config.schedule.epochs, config.schedule.decay_epochs,
          config.schedule.momentum) == (3, [2], 0.5)
