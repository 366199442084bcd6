"""Starting from converted ImageNet weights: a caffe2 checkpoint made by
`convert-weights` restores through `runtime.init_checkpoint` (by its
`imagenet/` name), trains two steps with frozen BN and a frozen stem and
res2, fills DATNet's res5 RoI head from the backbone's res5, and says what
it did in one line; configs name their weights; the input is normalised as
the weights expect."""

import json
import os
import pickle

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests import conftest as root
from tests.tools import numpy_resnet
from tests.training import conftest
from tf_mtdet.config import backbones as backbone_config
from tf_mtdet.config import data as data_config
from tf_mtdet.config import experiment
from tf_mtdet.config import zoo
from tf_mtdet.data import augment
from tf_mtdet.modeling.backbones import resnext
from tf_mtdet.tools import convert_weights
from tf_mtdet.training import init_checkpoint
from tf_mtdet.training import train

DATNET_TINY = os.path.join(root.REPO_ROOT, 'configs', 'datnet',
                           'datnet_tiny_shapes.yaml')
NAME = 'imagenet/resnet50_msra'
# A ResNet of 1 block per stage at a quarter width (C4: 256 channels, as
# the tiny DATNet's 4 x 64-channel MSPwA output its res5 head reads).
ARCH = dict(model_id=14, cardinality=1, width_per_group=64,
            depth_multiplier=0.25)


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """(weights dir holding imagenet/resnet50_msra, the caffe2 blobs)."""
  root_dir = tmp_path_factory.mktemp('weights')
  weights = numpy_resnet.random_weights(
      'detectron', [1, 1, 1, 1], 16, [16, 32, 64, 128], [64, 128, 256, 512],
      1, seed=3)
  path = str(root_dir / 'R-14.pkl')
  with open(path, 'wb') as f:
    pickle.dump(weights, f, protocol=2)
  convert_weights.convert('detectron', 'resnet50', path,
                          str(root_dir / 'weights' / NAME), arch_kwargs=ARCH)
  return str(root_dir / 'weights'), weights


def _overrides(weights_dir, frozen=True):
  with open(os.path.join(weights_dir, NAME + '.json'), encoding='utf-8') as f:
    meta = json.load(f)
  values = {f'model.two_stage.{k}': v
            for k, v in meta['config_overrides'].items()}
  values.update({f'model.two_stage.backbone.resnext.{k}': v
                 for k, v in ARCH.items()})
  values['model.two_stage.norm_activation.norm_epsilon'] = '0.00001'
  if frozen:
    values['model.two_stage.backbone.resnext.frozen_bn'] = True
    values['model.two_stage.backbone.resnext.freeze_at'] = 2
  return {k: json.dumps(v) if isinstance(v, (list, bool)) else v
          for k, v in values.items()}


def _expected(weights, layer: str, variable: tf.Variable) -> np.ndarray:
  """The value the caffe2 blobs give our variable in `layer` (a backbone
  path such as 'stage5_block0/conv1')."""
  field = variable.name.split(':')[0].rsplit('/', 1)[-1]
  theirs = convert_weights.source_layer_names('detectron', [1, 1, 1, 1])[layer]
  name = convert_weights.tensor_name('detectron', theirs, field)
  if name is None:
    return (np.zeros(variable.shape) if field == 'moving_mean' else
            np.full(variable.shape, 1 - convert_weights.BN_EPSILON))
  value = weights[name]
  return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value


def _backbone_values(backbone, weights):
  for variable in backbone.weights:
    layer = variable.name.split(':')[0].rsplit('/', 1)[0]
    yield layer, variable, _expected(weights, layer, variable)


def _norm_layers(layer):
  return [l for l in layer.submodules
          if isinstance(l, tf_keras.layers.BatchNormalization)]


def test_res5_head_starts_from_the_backbone_res5_and_bn_is_frozen(
    converted, monkeypatch):
  weights_dir, weights = converted
  monkeypatch.setenv(init_checkpoint.WEIGHTS_ENV, weights_dir)
  config = experiment.load_config(DATNET_TINY, [
      f'{k}={v}' for k, v in {
          **_overrides(weights_dir), 'model.two_stage.res5.filters': 128,
          'model.two_stage.num_classes': 3}.items()])
  model = train.build_model(config)
  path = init_checkpoint.resolve(NAME)
  line = train.restore_init_checkpoint(model, path, 'backbone',
                                       config.family_model, 'model.two_stage')
  # 17 convs and 17 BNs (4 variables each); the head's block: 4 convs, 4 BNs.
  assert line.startswith(f'init checkpoint {path}: restored 85 of 85 '
                         'backbone variables; 20 res5 RoI head variables '
                         'from the backbone res5; left at init: ')
  for layer, variable, want in _backbone_values(model.backbone, weights):
    np.testing.assert_allclose(variable.numpy(), want, rtol=1e-6,
                               err_msg=variable.name)
  (head,) = init_checkpoint.res5_heads(model)
  for variable in head.weights:
    # 'res5/block_0/conv1/kernel:0' <- the ImageNet res5_0_branch2a_w.
    sub = variable.name.split(':')[0].split('/')[-2]
    want = _expected(weights, f'stage5_block0/{sub}', variable)
    np.testing.assert_allclose(variable.numpy(), want, rtol=1e-6,
                               err_msg=variable.name)

  # Frozen BN reaches every norm layer of the backbone and the res5 head.
  norms = _norm_layers(model.backbone) + _norm_layers(head)
  assert len(norms) == 17 + 4
  assert all(isinstance(n, resnext.FrozenBatchNormalization) and
             not n.trainable_weights for n in norms)
  images = tf.random.normal([1, 64, 64, 3])
  for a, b in zip(model.backbone(images, training=True).values(),
                  model.backbone(images, training=False).values()):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
  rois = tf.random.normal([1, 2, 14, 14, 256])
  np.testing.assert_allclose(head(rois, training=True).numpy(),
                             head(rois, training=False).numpy(), atol=1e-5)
  # Stem and res2 take no gradient; res3 on do.
  trainable = {v.name.split('/')[0] for v in model.backbone.trainable_weights}
  assert trainable == {'stage3_block0', 'stage4_block0', 'stage5_block0'}


def test_two_steps_from_converted_weights(converted, shapes_records, tmp_path,
                                          monkeypatch, capsys, caplog):
  weights_dir, weights = converted
  monkeypatch.setenv(init_checkpoint.WEIGHTS_ENV, weights_dir)
  config = experiment.load_config(conftest.TINY_CONFIG, conftest.tiny_overrides(
      shapes_records, **_overrides(weights_dir), **{
          'runtime.init_checkpoint': NAME, 'runtime.strategy': 'one_device',
          'schedule.total_steps': 2, 'schedule.steps_per_epoch': 2,
          'model.two_stage.max_level': 4}))
  result = train.train(config, str(tmp_path / 'run'), verbose=0)
  assert result['step'] == 2
  printed = capsys.readouterr()
  lines = [l for l in printed.out.splitlines()
           if l.startswith('init checkpoint')]
  assert len(lines) == 1, printed.out
  assert 'restored 85 of 85 backbone variables; left at init: ' in lines[0]
  for text in (printed.err, caplog.text):
    assert 'Value in checkpoint could not be found' not in text
    assert 'unrestored values' not in text
  # Frozen parts still hold the ImageNet values; res3-5 convs trained.
  moved = []
  for layer, variable, want in _backbone_values(result['model'].backbone,
                                                weights):
    frozen = (not layer.startswith(('stage3', 'stage4', 'stage5')) or
              'kernel' not in variable.name)
    if frozen:
      np.testing.assert_allclose(variable.numpy(), want, rtol=1e-6,
                                 err_msg=variable.name)
    else:
      moved.append(not np.allclose(variable.numpy(), want, rtol=1e-7))
  assert moved and all(moved)


def test_missing_weights_train_from_scratch_with_the_command(tmp_path,
                                                              monkeypatch):
  monkeypatch.setenv(init_checkpoint.WEIGHTS_ENV, str(tmp_path))
  assert init_checkpoint.resolve(NAME) is None
  line = init_checkpoint.from_scratch_line(NAME)
  assert line == (
      f'training from scratch: this config starts from {NAME} (MSRA\'s caffe2 '
      'ResNet-50 (Detectron ImageNetPretrained/MSRA, as maskrcnn-benchmark '
      f'loads it)), not found in {tmp_path} ($TF_MTDET_WEIGHTS); make it '
      'with: tf-mtdet convert-weights --source detectron --arch resnet50 '
      f'R-50.pkl {tmp_path}/{NAME}')
  mg = 'imagenet/resnet50_model_garden'  # a TensorFlow checkpoint: copied
  assert init_checkpoint.from_scratch_line(mg).endswith(
      f'make it with: cp ckpt-N.index {tmp_path}/{mg}.index; cp '
      f'ckpt-N.data-00000-of-00001 {tmp_path}/{mg}.data-00000-of-00001 (the '
      "checkpoint's own files, renamed)")
  with pytest.raises(ValueError, match="'imagenet/resnet51': unknown"):
    init_checkpoint.resolve('imagenet/resnet51')
  assert init_checkpoint.resolve('some/path') == 'some/path'


def test_converted_weights_refuse_a_config_without_their_switches(converted):
  weights_dir, _ = converted
  overrides = _overrides(weights_dir)
  path = os.path.join(weights_dir, NAME)
  for key, wrong in (
      ('model.two_stage.backbone.resnext.stride_in_1x1', 'false'),
      ('model.two_stage.backbone.input_normalization.channel_order', 'rgb'),
      ('model.two_stage.norm_activation.norm_epsilon', '0.001')):
    config = experiment.load_config(conftest.TINY_CONFIG, [
        f'{k}={v}' for k, v in {**overrides, key: wrong}.items()])
    with pytest.raises(ValueError, match=rf'need {key}='):
      init_checkpoint.check_switches(path, config.family_model,
                                     'model.two_stage')


def test_paper_configs_name_their_weights_and_tiny_ones_none():
  named = {}
  for name in zoo.list_configs():
    config = experiment.load_config(name)
    value = config.runtime.init_checkpoint
    if 'tiny' in name or 'quickstart' in name:
      assert value == '', name
    elif value:
      named[name] = value
      assert value in init_checkpoint.WEIGHTS, name
      backbone = config.family_model.backbone
      w = init_checkpoint.WEIGHTS[value]
      if w.source == init_checkpoint.MODEL_GARDEN:
        assert backbone.type == 'resnet', name
        continue
      switches = convert_weights.switches(w.source, w.arch)
      assert backbone.type == 'resnext', name
      assert backbone.resnext.stride_in_1x1 == switches.stride_in_1x1, name
      assert backbone.resnext.padding == 'symmetric', name
      assert (backbone.input_normalization.channel_order ==
              switches.input_normalization['channel_order']), name
  assert named['datnet/datnet_light_x101_32x8d_fpn_1x_coco'] == (
      'imagenet/resnext101_32x8d_fair')
  assert named['comask/comask_r50_fpn_2x_coco'] == (
      'imagenet/resnet50_torchvision')
  assert named['ivanet/ivanet_r50_512_voc'] == 'imagenet/resnet50_model_garden'


def test_caffe2_normalisation_in_training_and_serving_preprocessing():
  normalization = backbone_config.InputNormalization(
      channel_order='bgr', mean=backbone_config.CAFFE2_MEAN,
      std=backbone_config.CAFFE2_STD)
  augmenter = augment.Augmenter(
      data_config.Augmentation(output_size=[32, 32]), 32,
      normalization=normalization)
  image = tf.constant(np.tile(np.array([200, 100, 50], np.uint8),
                              (32, 32, 1)))
  out, _ = augmenter.preprocess_image(image)
  np.testing.assert_allclose(out[5, 5].numpy(),
                             [50 - 102.9801, 100 - 115.9465, 200 - 122.7717],
                             rtol=1e-5)
  np.testing.assert_allclose(
      augment.denormalize(out[5, 5].numpy(), normalization), [200, 100, 50],
      rtol=1e-5)
  default = augment.Augmenter(data_config.Augmentation(output_size=[32, 32]),
                              32)
  np.testing.assert_allclose(
      default.preprocess_image(image)[0][5, 5].numpy(),
      (np.array([200, 100, 50]) - backbone_config.TORCHVISION_MEAN) /
      backbone_config.TORCHVISION_STD, rtol=1e-5)


def test_converted_weights_restore_into_the_ivanet_trunk(converted,
                                                         monkeypatch):
  """The IvaNet SSD trunk is the configured backbone: converted weights load
  into it by config (`backbone.type: resnext` + the weights' switches), and
  its extra levels, outside the backbone, stay at their initialisation."""
  weights_dir, weights = converted
  monkeypatch.setenv(init_checkpoint.WEIGHTS_ENV, weights_dir)
  overrides = {k.replace('model.two_stage.', 'model.single_shot.'): v
               for k, v in _overrides(weights_dir).items()}
  config = experiment.load_config('ivanet/ivanet_tiny_shapes', [
      f'{k}={v}' for k, v in overrides.items()])
  model = train.build_model(config)
  extra_before = [w.numpy() for w in model.extra_levels.weights]
  line = train.restore_init_checkpoint(
      model, init_checkpoint.resolve(NAME), 'backbone', config.family_model,
      'model.single_shot')
  assert 'restored 85 of 85 backbone variables' in line
  for layer, variable, want in _backbone_values(model.backbone, weights):
    np.testing.assert_allclose(variable.numpy(), want, rtol=1e-6,
                               err_msg=variable.name)
  assert extra_before
  for variable, before in zip(model.extra_levels.weights, extra_before):
    np.testing.assert_array_equal(variable.numpy(), before)
