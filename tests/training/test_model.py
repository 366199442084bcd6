"""Model assembly: paper-size parameter counts, cascade, seams, configs."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import conftest as root
from tf_mtdet import families
from tf_mtdet.config import experiment
from tf_mtdet.data.targets import base as targets_base
from tf_mtdet.modeling import factory
from tf_mtdet.modeling import registry
from tf_mtdet.modeling import two_stage

CONFIGS = os.path.join(root.REPO_ROOT, 'configs')


def _trainable(model) -> int:
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def _build(config, size=128):
  if config.model.type == 'two_stage':
    # Fewer RoIs to run eagerly; parameters do not depend on them.
    generator = config.family_model.roi_generator
    generator.test_pre_nms_top_k, generator.test_num_proposals = 100, 20
  family = families.get(config)
  model = family.build_model()
  info = tf.constant([[[size, size], [size, size], [1, 1], [0, 0]]],
                     tf.float32)
  outputs = family.call_inference(model, tf.zeros([1, size, size, 3]), info)
  return model, outputs


def test_every_config_loads():
  paths = sorted(glob.glob(os.path.join(CONFIGS, '*', '*.yaml')))
  assert len(paths) >= 8
  for path in paths:
    config = experiment.load_config(path)
    assert config.family_model.num_classes > 1, path
    assert families.get(config).name == config.model.type


def test_retinanet_r50_81_class_parameter_count():
  config = experiment.load_config(
      os.path.join(CONFIGS, 'retinanet', 'retinanet_r50_fpn_1x_coco.yaml'),
      ['model.single_shot.num_classes=81'])
  model, outputs = _build(config)
  # mmdetection's RetinaNet R50-FPN: 37.74M. Model Garden's FPN makes P6 from
  # P5 (256 -> 256 3x3 conv) where the RetinaNet paper (and mmdetection) read
  # C5 (2048 -> 256): 9 * (2048 - 256) * 256 fewer weights; the rest (BN in
  # FPN and head, a background column in the classifier) is under 0.3M.
  p6_from_c5 = 9 * (2048 - 256) * 256
  assert _trainable(model) + p6_from_c5 == pytest.approx(37.74e6, rel=0.01)
  assert outputs['detection_boxes'].shape == (1, 100, 4)
  assert len(families.get(config).build_losses().component_names) == 2


def test_r50_fpn_81_class_has_paper_parameter_count():
  config = experiment.load_config(
      os.path.join(CONFIGS, 'mask_rcnn', 'mask_rcnn_r50_fpn_1x_coco.yaml'),
      ['model.two_stage.num_classes=81'])
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
      ['model.two_stage.num_classes=81'])
  model, _ = _build(r101)
  # R101 adds 17 bottleneck blocks to R50's res4 stage (+19.0M).
  assert _trainable(model) == pytest.approx(64.0e6, rel=0.01)
  cascade = experiment.load_config(
      os.path.join(CONFIGS, 'mask_rcnn',
                   'cascade_mask_rcnn_r50_fpn_1x_coco.yaml'),
      ['model.two_stage.num_classes=81'])
  model, outputs = _build(cascade)
  assert len(model.detection_head) == 3
  # Two more class-agnostic 2fc heads: 2 x (12544*1024 + 1024*1024 + ...).
  assert _trainable(model) == pytest.approx(72.6e6, rel=0.01)
  assert outputs['detection_boxes'].shape == (1, 100, 4)
  schedule = experiment.load_config(os.path.join(
      CONFIGS, 'mask_rcnn', 'mask_rcnn_r50_fpn_2x_coco.yaml')).schedule
  assert (schedule.epochs, schedule.decay_epochs) == (24, [16, 22])


class _CountTargets(targets_base.TargetGenerator):
  """Toy target: the number of boxes per image."""

  def train(self, example):
    return {'toy_count': tf.shape(example['boxes'])[0]}


def test_dense_aux_head_owns_targets_and_losses():
  """A registered head brings its generator into the parser and its loss
  term into the family's total; fusion reaches the RPN."""
  config = experiment.load_config(
      os.path.join(CONFIGS, 'mask_rcnn', 'mask_rcnn_tiny_shapes.yaml'))
  plain = families.get(config).build_model()
  config.model.two_stage.override({
      'dense_aux_heads': [{'type': 'semantic',
                           'semantic': {'num_filters': 64, 'loss_weight': 0.5}}],
      'feature_fusion': {'type': 'sum'}})
  family = families.get(config)
  generators = family.target_generators()
  assert [type(g).__name__ for g in generators] == [
      'RpnTargets', 'MaskCropTargets', 'SemanticTargets']
  assert family.augmentation_needs() == {'masks', 'semantic'}
  terms = {t.name: t.weight for t in family.build_losses().terms}
  assert terms['semantic'] == 0.5 and terms['mask'] == 1.0
  fused = family.build_model()
  images = tf.random.uniform([1, 128, 128, 3])
  shape = tf.constant([[128.0, 128.0]])
  plain_out = plain(images, shape, training=False)
  fused(images, shape, training=False)  # creates the weights
  # Same weights where the models share parts, so only fusion differs.
  for layer in ('backbone', 'decoder', 'rpn_head', 'mask_head'):
    getattr(fused, layer).set_weights(getattr(plain, layer).get_weights())
  fused.detection_head[0].set_weights(plain.detection_head[0].get_weights())
  fused_out = fused(images, shape, training=False)
  assert fused_out['semantic/logits'].shape == (1, 32, 32, 4)
  assert not np.allclose(plain_out['rpn_scores']['3'].numpy(),
                         fused_out['rpn_scores']['3'].numpy())
  # The sum fusion has no weights of its own.
  assert not fused.feature_fusion.weights
  with pytest.raises(ValueError, match="unknown box_head 'nope'"):
    config.model.two_stage.detection_head.type = 'nope'
    families.get(config).build_model()


def test_registered_part_targets_and_losses_reach_the_family():
  name = 'toy_counter_for_test'
  if name not in registry.names('dense_aux_head'):
    registry.register(
        'dense_aux_head', name,
        targets=lambda part, cfg: _CountTargets(),
        losses=lambda part, cfg: [registry.LossTerm(
            'toy', 2.0, lambda outputs, labels: tf.cast(
                tf.reduce_sum(labels['toy_count']), tf.float32))],
    )(lambda part, cfg, reg: None)
  assert registry.targets('dense_aux_head', name, None, None).__class__ is (
      _CountTargets)
  (term,) = registry.losses('dense_aux_head', name, None, None)
  assert term.weight == 2.0
  assert float(term.fn({}, {'toy_count': tf.constant([2, 3])})) == 5.0
  with pytest.raises(ValueError, match='registered twice'):
    registry.register('dense_aux_head', name)(lambda *a: None)


def test_two_stage_model_config_round_trip():
  config = experiment.load_config(
      os.path.join(CONFIGS, 'mask_rcnn', 'mask_rcnn_tiny_shapes.yaml'))
  model = factory.build_two_stage_model(config.family_model)
  clone = two_stage.TwoStageModel.from_config(model.get_config())
  images = tf.random.uniform([1, 128, 128, 3])
  shape = tf.constant([[128.0, 128.0]])
  a = model(images, shape, training=False)
  b = clone(images, shape, training=False)  # shares the layers
  np.testing.assert_allclose(a['detection_boxes'], b['detection_boxes'])


def test_config_errors_name_the_source(tmp_path):
  bad = tmp_path / 'bad.yaml'
  bad.write_text('model: {two_stage: {num_clases: 3}}\n')
  with pytest.raises(ValueError, match='bad.yaml'):
    experiment.load_config(str(bad))
  with pytest.raises(ValueError, match='--set'):
    experiment.load_config(None, ['schedule.epochs'])
  child = tmp_path / 'child.yaml'
  child.write_text('base: parent.yaml\nschedule: {epochs: 3}\n')
  (tmp_path / 'parent.yaml').write_text(
      'model: {two_stage: {num_classes: 3}}\n'
      'schedule: {epochs: 5, decay_epochs: [2]}\n')
  config = experiment.load_config(str(child), ['schedule.momentum=0.5'])
  assert (config.schedule.epochs, config.schedule.decay_epochs,
          config.schedule.momentum) == (3, [2], 0.5)
