"""ResNeXt in Model Garden's backbone registry: torchvision's parameter
count, the FPN endpoints, and `--init-checkpoint` restoring it."""

import os
import types

import numpy as np
import tensorflow as tf
import tf_keras

from official.vision.modeling.backbones import factory as mg_backbones

from tests import conftest as root
from tf_mtdet.config import experiment
from tf_mtdet.modeling import factory  # noqa: F401  # registers 'resnext'
from tf_mtdet.modeling.backbones import resnext
from tf_mtdet.training import train

TINY = os.path.join(root.REPO_ROOT, 'configs', 'mask_rcnn',
                    'mask_rcnn_tiny_shapes.yaml')


def test_resnext50_32x4d_matches_torchvision_parameter_count():
  # torchvision resnext50_32x4d: 25,028,904 with its 2048 x 1000 + 1000 FC.
  # (101 32x8d builds the same blocks: 86,742,336 = 88,791,336 - 2,049,000,
  # measured once; too slow to build in a unit test.)
  model = resnext.ResNeXt(50, cardinality=32, width_per_group=4)
  count = sum(w.shape.num_elements() for w in model.trainable_weights)
  assert count == 25_028_904 - 2_049_000
  assert {k: v[-1] for k, v in model.output_specs.items()} == {
      '2': 256, '3': 512, '4': 1024, '5': 2048}


def _tiny_backbone():
  config = experiment.load_config(TINY, [
      'model.two_stage.backbone.type=resnext',
      'model.two_stage.backbone.resnext.model_id=50',
      'model.two_stage.backbone.resnext.cardinality=4',
      'model.two_stage.backbone.resnext.width_per_group=4',
      'model.two_stage.backbone.resnext.depth_multiplier=0.125'])
  model_cfg = config.model.two_stage
  return mg_backbones.build_backbone(
      tf_keras.layers.InputSpec(shape=[None, None, None, 3]),
      model_cfg.backbone, model_cfg.norm_activation)


def test_registered_builder_and_init_checkpoint(tmp_path):
  source = _tiny_backbone()
  assert isinstance(source, resnext.ResNeXt)
  source(tf.zeros([1, 32, 32, 3]))
  # Grouped 3x3 convs: kernel [3, 3, width / cardinality, width].
  grouped = [w for w in source.weights if 'conv2' in w.name]
  assert grouped and all(w.shape[2] * 4 == w.shape[3] for w in grouped)
  path = tf.train.Checkpoint(backbone=source).write(str(tmp_path / 'ckpt'))

  # What `--init-checkpoint` runs on a model (only its backbone is read).
  target = types.SimpleNamespace(backbone=_tiny_backbone())
  before = [w.numpy() for w in target.backbone.weights]
  train.restore_init_checkpoint(target, path, 'backbone')
  for want, got in zip(source.weights, target.backbone.weights):
    np.testing.assert_array_equal(got.numpy(), want.numpy())
  assert any(not np.array_equal(old, w.numpy())
             for old, w in zip(before, source.weights))
