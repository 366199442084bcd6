"""`tf-mtdet convert-weights`: random weights saved in each source's own
names and format, converted, restored through `--init-checkpoint` into the
backbone a config builds with the switches the weights need, must compute
what a numpy reference of the source architecture computes (C2-C5 within a
relative 1e-4). Bad files fail in one line and write nothing."""

import json
import os
import pickle
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.vision.modeling.backbones import factory as mg_backbones

from tests import conftest as root
from tests.tools import numpy_resnet
from tf_mtdet import cli
from tf_mtdet.config import experiment
from tf_mtdet.modeling import factory  # noqa: F401  # registers 'resnext'
from tf_mtdet.modeling.backbones import resnext
from tf_mtdet.tools import convert_weights
from tf_mtdet.training import train

TINY = os.path.join(root.REPO_ROOT, 'configs', 'mask_rcnn',
                    'mask_rcnn_tiny_shapes.yaml')

# (source, --arch, reduced arch: depth and width multiplier): the stem and 1
# block per stage (stride-1 and stride-2 projections), 2 per stage for the
# X101s (also identity blocks), widths scaled down, the 32 groups of 32x8d
# kept. The full archs' names are checked below.
CASES = [
    ('torchvision', 'resnet50', dict(model_id=14, depth_multiplier=0.0625)),
    ('timm', 'resnet101', dict(model_id=14, depth_multiplier=0.0625)),
    ('torchvision', 'resnext101_32x8d',
     dict(model_id=26, depth_multiplier=0.125)),
    ('detectron', 'resnet50', dict(model_id=14, depth_multiplier=0.0625)),
    ('detectron', 'resnext101_32x8d',
     dict(model_id=26, depth_multiplier=0.125)),
]


def _arch(arch, reduced):
  return {**convert_weights.ARCHS[arch], **reduced}


def _source_weights(source, kwargs, seed=0):
  m, card, wpg = (kwargs['depth_multiplier'], kwargs['cardinality'],
                  kwargs['width_per_group'])
  widths = [resnext.stage_width(s, card, wpg, m) for s in range(2, 6)]
  outs = [int(256 * 2**(s - 2) * m) for s in range(2, 6)]
  return numpy_resnet.random_weights(
      source, resnext.DEPTHS[kwargs['model_id']], int(64 * m), widths, outs,
      card, seed=seed)


def _save(weights, source, path):
  if source == 'detectron':
    with open(path + '.pkl', 'wb') as f:
      pickle.dump({'blobs': weights}, f, protocol=2)
    return path + '.pkl'
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
  safetensors_numpy.save_file(weights, path + '.safetensors')
  return path + '.safetensors'


def _value(v):
  if isinstance(v, float):
    return f'{v:.8f}'  # YAML reads 1e-05 as a string
  return json.dumps(v) if isinstance(v, list) else v


def _config_backbone(out, kwargs):
  """The backbone a config builds with the switches of `out.json`."""
  with open(out + '.json', encoding='utf-8') as f:
    meta = json.load(f)
  overrides = [f'model.two_stage.{k}={_value(v)}'
               for k, v in meta['config_overrides'].items()]
  overrides += [f'model.two_stage.backbone.resnext.{k}={v}'
                for k, v in kwargs.items()]
  config = experiment.load_config(TINY, overrides)
  model = config.model.two_stage
  backbone = mg_backbones.build_backbone(
      tf_keras.layers.InputSpec(shape=[None, None, None, 3]),
      model.backbone, model.norm_activation)
  return backbone, model.backbone


@pytest.mark.parametrize('source,arch,reduced', CASES,
                         ids=[f'{s}-{a}' for s, a, _ in CASES])
def test_converted_backbone_matches_the_source_forward(tmp_path, source, arch,
                                                       reduced):
  kwargs = _arch(arch, reduced)
  weights = _source_weights(source, kwargs)
  path = _save(weights, source, str(tmp_path / 'weights'))
  out = str(tmp_path / 'ckpt')
  report = convert_weights.convert(source, arch, path, out, arch_kwargs=kwargs)
  depths = resnext.DEPTHS[kwargs['model_id']]
  ignored = 2 + (0 if source == 'detectron' else 1 + 3 * sum(depths) +
                 sum(1 for d in depths if d))
  assert (report.tensors_used, report.tensors_ignored) == (
      len(weights) - ignored, ignored)

  backbone, backbone_cfg = _config_backbone(out, kwargs)
  switches = convert_weights.switches(source, arch)
  assert backbone_cfg.resnext.stride_in_1x1 == switches.stride_in_1x1
  train.restore_init_checkpoint(types.SimpleNamespace(backbone=backbone), out,
                                'backbone')
  image = np.random.default_rng(1).normal(size=(1, 64, 48, 3)).astype(
      np.float32)
  ours = backbone(image, training=False)
  want = numpy_resnet.forward(weights, source, depths, kwargs['cardinality'],
                              switches.stride_in_1x1,
                              image.transpose(0, 3, 1, 2).astype(np.float64))
  for level in ('2', '3', '4', '5'):
    got = ours[level].numpy().transpose(0, 3, 1, 2)
    assert got.shape == want[level].shape
    error = np.abs(got - want[level]).max() / np.abs(want[level]).max()
    assert error < 1e-4, (level, error)
  if (source, arch) == ('torchvision', 'resnet50'):
    # The switches matter: TensorFlow's 'same' padding shifts every strided
    # window of the same weights.
    shifted = resnext.ResNeXt(**{**backbone.get_config(), 'padding': 'same'})
    shifted(image)
    shifted.set_weights(backbone.get_weights())
    c5 = shifted(image, training=False)['5'].numpy().transpose(0, 3, 1, 2)
    assert np.abs(c5 - want['5']).max() / np.abs(want['5']).max() > 1e-2


def test_full_arch_name_maps_match_the_sources_key_counts():
  # torchvision resnet50 state dict: 320 keys = 53 convs + 53 BNs x 5
  # (with num_batches_tracked) + fc weight and bias; resnet101 and
  # resnext101_32x8d: 104 convs and BNs, 626 keys. Detectron: 53 (104) convs
  # with a scale and bias per BN.
  for arch, convs in (('resnet50', 53), ('resnet101', 104),
                      ('resnext101_32x8d', 104)):
    depths = resnext.DEPTHS[convert_weights.ARCHS[arch]['model_id']]
    torch_names = convert_weights.expected_tensors('torchvision', depths)
    assert len(torch_names) == len(set(torch_names)) == convs * 5
    assert len(torch_names) + convs + 2 == (320 if convs == 53 else 626)
    c2_names = convert_weights.expected_tensors('detectron', depths)
    assert len(set(c2_names)) == convs * 3
  assert 'layer4.2.bn3.running_var' in torch_names
  assert 'layer3.22.conv2.weight' in torch_names
  assert 'res5_0_branch1_bn_s' in c2_names and 'res_conv1_bn_b' in c2_names


SMALL = _arch('resnet50', dict(model_id=14, depth_multiplier=0.0625))


@pytest.fixture(scope='module')
def small_files(tmp_path_factory):
  """A small ResNet (1 block per stage) in torchvision and caffe2 format."""
  directory = str(tmp_path_factory.mktemp('weights'))
  return {s: (_source_weights(s, SMALL),
              _save(_source_weights(s, SMALL), s,
                    os.path.join(directory, s)))
          for s in ('torchvision', 'detectron')}


def _convert_cli(capsys, source, path, out, arch='resnet50', kwargs=SMALL):
  # The CLI's --arch names full-size archs; the test's files are small.
  real = convert_weights.ARCHS[arch]
  convert_weights.ARCHS[arch] = kwargs
  try:
    code = cli.main(['convert-weights', '--source', source, '--arch', arch,
                     path, out])
  finally:
    convert_weights.ARCHS[arch] = real
  return code, capsys.readouterr()


def test_cli_converts_and_reports(tmp_path, small_files, capsys):
  out = str(tmp_path / 'imagenet' / 'r14')
  code, printed = _convert_cli(capsys, 'detectron',
                               small_files['detectron'][1], out)
  assert code == 0, printed.err
  # 17 convs (stem, 4 x 3 in blocks, 4 projections) with a BN scale and
  # bias each; 2 classifier blobs; 17 kernels and 17 x 4 BN variables.
  assert 'used 51 tensors (ignored 2' in printed.out
  assert 'set 85 backbone variables' in printed.out
  assert sorted(os.listdir(tmp_path / 'imagenet')) == [
      'r14.data-00000-of-00001', 'r14.index', 'r14.json']
  reader = tf.train.load_checkpoint(out)
  scale = small_files['detectron'][0]['res3_0_branch2b_bn_s']
  key = [k for k in reader.get_variable_to_shape_map()
         if 'gamma' in k and reader.get_tensor(k).shape == scale.shape and
         np.array_equal(reader.get_tensor(k), scale)]
  assert key, 'the caffe2 BN scale is not in the checkpoint'


def _bad(weights, **changes):
  weights = dict(weights)
  for name, value in changes.items():
    if value is None:
      del weights[name]
    else:
      weights[name] = value
  return weights


@pytest.mark.parametrize('case,expected', [
    ('leftover', 'tensor layer1.0.extra.weight not used by a resnet50 '
     'backbone'),
    ('unset', 'no tensor layer2.0.bn1.running_var for backbone variable '
     'stage3_block0/bn1/moving_variance'),
    ('shape', 'tensor layer4.0.conv3.weight of shape [128, 31, 1, 1] does not '
     'fit backbone variable stage5_block0/conv3/kernel'),
    ('arch', 'the file holds a 1/1/1/1 blocks per stage with 1-group 3x3 '
     'convs, not --arch resnext101_32x8d'),
    ('source', 'no detectron ResNet block tensors (e.g. res2_0_branch2a_w); '
     'is --source detectron right?'),
    ('garbage', 'not a readable .safetensors weights file'),
    ('pth', 'reading a PyTorch file needs torch, which is not installed'),
    ('pickle_code', 'it refers to os.system'),
])
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, small_files,
                                                   capsys, case, expected):
  weights, good = small_files['torchvision']
  source, arch, path = 'torchvision', 'resnet50', good
  if case in ('leftover', 'unset', 'shape'):
    bad = _bad(weights, **{
        'leftover': {'layer1.0.extra.weight': np.zeros([1], np.float32)},
        'unset': {'layer2.0.bn1.running_var': None},
        'shape': {'layer4.0.conv3.weight': np.zeros([128, 31, 1, 1],
                                                    np.float32)},
    }[case])
    path = _save(bad, 'torchvision', str(tmp_path / case))
  elif case == 'arch':
    arch = 'resnext101_32x8d'
  elif case == 'source':
    source = 'detectron'
    path = str(tmp_path / 'tv.pkl')
    with open(path, 'wb') as f:
      pickle.dump(weights, f)
  elif case == 'garbage':
    path = str(tmp_path / 'garbage.safetensors')
    with open(path, 'wb') as f:
      f.write(b'\x10\x00\x00\x00\x00\x00\x00\x00not json at all')
  elif case == 'pth':
    try:
      import torch  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
      pytest.skip('torch is installed here')
    except ImportError:
      pass
    path = str(tmp_path / 'w.pth')
    open(path, 'wb').write(b'PK')
  elif case == 'pickle_code':
    path = str(tmp_path / 'evil.pkl')
    with open(path, 'wb') as f:
      f.write(b'cos\nsystem\n(S"true"\ntR.')
    source = 'detectron'
  out = str(tmp_path / 'out' / 'ckpt')
  kwargs = (SMALL if arch == 'resnet50' else
            _arch(arch, dict(model_id=26, depth_multiplier=0.125)))
  code, printed = _convert_cli(capsys, source, path, out, arch, kwargs)
  assert code == 1
  lines = printed.err.strip().splitlines()
  assert len(lines) == 1, printed.err
  assert lines[0].startswith(f'tf-mtdet convert-weights: error: {path}: ')
  assert expected in lines[0]
  assert not os.path.exists(tmp_path / 'out') or not os.listdir(
      tmp_path / 'out')
