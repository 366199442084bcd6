"""IvaNet configs: every Table 1 ablation builds the parts it claims, with
the targets and loss terms of those parts only."""

import os

import numpy as np
import pytest

from tests import conftest as root
from tf_mtdet import families
from tf_mtdet.config import experiment
from tf_mtdet.modeling.necks import local_top_down

CONFIGS = os.path.join(root.REPO_ROOT, 'configs', 'ivanet')
# Narrow trunk: the parts, not the widths, are under test.
NARROW = ['model.single_shot.backbone.resnet.depth_multiplier=0.125',
          'model.single_shot.extra_levels.filters=8',
          'train_data.label_map=']


@pytest.mark.parametrize('name,neck,det,seg', [
    ('ivanet_r50_300_voc', True, True, True),
    ('ivanet_no_ltd_r50_300_voc', False, True, True),
    ('ivanet_det_r50_300_voc', True, True, False),
    ('ivanet_seg_r50_300_voc', True, False, True)])
def test_ablation_builds_its_parts(name, neck, det, seg):
  config = experiment.load_config(os.path.join(CONFIGS, f'{name}.yaml'),
                                  NARROW)
  family = families.get(config)
  model = family.build_model()
  assert isinstance(model.decoder, local_top_down.LocalTopDown) == neck
  assert (model.decoder is None) == (not neck)
  assert (model.head is not None) == det
  assert (model.seg_head is not None) == seg
  losses = family.build_losses().component_names
  assert ('cls_loss' in losses and 'box_loss' in losses) == det
  assert ('semantic_loss' in losses) == seg
  assert family.semantic_classes == (21 if seg else 0)
  if det:
    # SSD inference: score 0.01, top 400 per class, NMS 0.45, 200 per image.
    generator = model.detection_generator.get_config()
    assert (generator['pre_nms_score_threshold'], generator['pre_nms_top_k'],
            generator['nms_iou_threshold'],
            generator['max_num_detections']) == (0.01, 400, 0.45, 200)
  if neck:
    assert {s[-1] for s in model.decoder.output_specs.values()} == {384}


def test_paper_schedule_is_adam_beta1_half_with_two_steps():
  from tf_mtdet.training import schedules  # pylint: disable=g-import-not-at-top
  config = experiment.load_config(
      os.path.join(CONFIGS, 'ivanet_r50_300_voc.yaml'),
      ['train_data.label_map='])
  schedule = config.schedule
  assert schedules.total_steps(schedule, 32) == 65000
  optimization = schedules.optimization_config(schedule, 32)
  assert optimization.optimizer.type == 'adam'
  assert optimization.optimizer.adam.beta_1 == 0.5
  assert optimization.optimizer.adam.beta_2 == 0.999
  assert optimization.learning_rate.stepwise.boundaries == [35000, 50000]
  np.testing.assert_allclose(optimization.learning_rate.stepwise.values,
                             [1e-4, 1e-5, 1e-6])
  optimizer, _ = schedules.build_optimizer(schedule, 32)
  assert 'Adam' in type(optimizer).__name__


def test_pcm_head_at_300_has_blitznet_level_convs_and_a_128_wide_fuse():
  """The shipped head (configs/ivanet/README.md's 0.61M): 6 levels x 384
  channels -> 1x1 x 64 each, conv3x3 384 -> 128, conv3x3 128 -> 21."""
  from tf_mtdet.modeling.heads import pcm_head  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  config = experiment.load_config(
      os.path.join(CONFIGS, 'ivanet_r50_300_voc.yaml'),
      ['train_data.label_map='])
  model_cfg = config.model.single_shot
  head = pcm_head.build_pcm_head(model_cfg.seg_head.pcm, model_cfg)
  sizes = {'3': 38, '4': 19, '5': 10, '6': 5, '7': 3, '8': 1}
  logits = head({l: tf.zeros([1, s, s, 384]) for l, s in sizes.items()})[
      'logits']
  assert logits.shape == (1, 38, 38, 21)
  levels = 6 * (1 * 1 * 384 * 64 + 64)
  fuse = 3 * 3 * (6 * 64) * 128 + 128
  classifier = 3 * 3 * 128 * 21 + 21
  assert head.count_params() == levels + fuse + classifier == 614549


def test_model_garden_resnet50_checkpoint_restores_through_init_checkpoint(
    tmp_path, monkeypatch):
  """`--init-checkpoint` (runtime.init_checkpoint) with a Model Garden
  ResNet-50 checkpoint into the shipped IvaNet 300: every backbone weight
  (stem, conv2_x..conv5_x) becomes the checkpoint's, the extra levels keep
  their own initial values (they used to collide with conv5_x by position)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from official.vision.modeling.backbones import resnet as mg_resnet  # pylint: disable=g-import-not-at-top
  from official.vision.modeling.layers import nn_blocks  # pylint: disable=g-import-not-at-top
  from tf_mtdet.training import train  # pylint: disable=g-import-not-at-top
  pretrained = mg_resnet.ResNet(model_id=50)
  for w in pretrained.weights:  # not the values a fresh build would draw
    w.assign(tf.random.uniform(w.shape, 0.5, 1.5, seed=7))
  path = tf.train.Checkpoint(backbone=pretrained).write(
      str(tmp_path / 'resnet50' / 'ckpt'))
  config = experiment.load_config(
      os.path.join(CONFIGS, 'ivanet_r50_300_voc.yaml'),
      ['train_data.label_map=', f'runtime.init_checkpoint={path}',
       # The whole ResNet-50 as shipped; narrow extras and neck for speed.
       'model.single_shot.extra_levels.filters=8',
       'model.single_shot.decoder.ltd.num_filters=8',
       'model.single_shot.decoder.ltd.output_filters=16'])
  before = {}
  restore = train.restore_init_checkpoint

  def recording_restore(model, checkpoint, *args):
    before['backbone'] = [w.numpy() for w in model.backbone.weights]
    before['extra'] = [w.numpy() for w in model.extra_levels.weights]
    return restore(model, checkpoint, *args)

  monkeypatch.setattr(train, 'restore_init_checkpoint', recording_restore)
  state = train.build_training_state(config, tf.distribute.get_strategy(),
                                     str(tmp_path / 'model'))
  backbone = state.model.backbone
  assert len(backbone.weights) == len(pretrained.weights) == len(
      before['backbone'])
  # 16 bottleneck units (conv2_x..conv5_x) + the stem, all restored.
  for ours, theirs, old in zip(backbone.weights, pretrained.weights,
                               before['backbone']):
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert not np.array_equal(old, theirs.numpy())
  units = [l for l in backbone.layers
           if isinstance(l, nn_blocks.BottleneckBlock)]
  assert len(units) == 16  # conv5_x is the last 3, 2048 wide
  assert units[-1].compute_output_shape([1, 10, 10, 2048])[-1] == 2048
  extra = state.model.extra_levels.weights
  assert len(extra) == len(before['extra']) > 0
  for ours, old in zip(extra, before['extra']):
    np.testing.assert_array_equal(ours.numpy(), old)


def test_weight_decay_is_blitznets_l2_term_on_every_conv_kernel():
  """BlitzNet (config.py, resnet.py, training.py): weight decay 5e-5 as
  slim's l2_regularizer(5e-5) on every conv kernel, i.e. 5e-5 * l2_loss(w) =
  5e-5 / 2 * |w|^2, summed into the loss Adam minimises. The shipped config
  says 5e-5; the tiny model's L2 term is that sum over all its kernels
  (trunk, extra levels, LTD incl. deconvolutions, SSD and PCM heads)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  shipped = experiment.load_config(
      os.path.join(CONFIGS, 'ivanet_r50_300_voc.yaml'),
      ['train_data.label_map='])
  assert shipped.schedule.weight_decay == 5e-5
  config = experiment.load_config(
      os.path.join(CONFIGS, 'ivanet_tiny_shapes.yaml'),
      ['train_data.label_map=', 'schedule.weight_decay=0.00005'])
  family = families.get(config)
  model = family.build_model()
  family.build_weights(model)
  kernels = [v for v in model.trainable_variables
             if v.name.split('/')[-1].startswith(('kernel', 'depthwise'))]
  parts = {'backbone', 'extra_levels', 'decoder', 'head', 'seg_head'}
  assert all(any(k is v for v in getattr(model, p).trainable_variables
                 for k in kernels) for p in parts)
  expected = 5e-5 / 2 * sum(float(tf.reduce_sum(k**2)) for k in kernels)
  assert len(model.losses) == len(kernels)
  np.testing.assert_allclose(float(tf.add_n(model.losses)), expected,
                             rtol=1e-5)


@pytest.mark.parametrize('name', [
    'ivanet_r50_300_voc', 'ivanet_no_ltd_r50_300_voc', 'ivanet_det_r50_300_voc',
    'ivanet_seg_r50_300_voc', 'ivanet_r50_512_voc',
    'ivanet_no_ltd_r50_512_voc', 'ivanet_det_r50_512_voc',
    'ivanet_seg_r50_512_voc'])
def test_voc_configs_train_on_difficult_objects_with_blitznet_decay(name):
  """LTD-SSD's data layer: `use_difficult_gt: true`; BlitzNet: 5e-5."""
  config = experiment.load_config(os.path.join(CONFIGS, f'{name}.yaml'),
                                  ['train_data.label_map='])
  assert config.train_data.parser.skip_difficult_during_training is False
  assert config.schedule.weight_decay == 5e-5
