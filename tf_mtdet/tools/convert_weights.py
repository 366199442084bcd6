"""ImageNet backbone weights from PyTorch and caffe2 files -> a TensorFlow
checkpoint that `--init-checkpoint` restores into the 'resnext' backbone.

Sources and what their weights expect of the model (`SWITCHES`):

* 'torchvision', 'timm': state dicts (`conv1.weight`, `layer1.0.bn1.running_var`,
  `layer2.0.downsample.0.weight`, ...), from `.safetensors` (read with the
  `safetensors` package's numpy API) or `.pth`/`.pt` (through torch, when it
  is installed). Stride in the 3x3 conv, symmetric padding, BN epsilon 1e-5,
  RGB input normalised by the ImageNet mean and deviation.
* 'detectron': Detectron / maskrcnn-benchmark caffe2 `.pkl` files (pickled
  numpy blobs: `res2_0_branch2a_w`, `res2_0_branch2a_bn_s` / `_bn_b`, ...).
  BN is a fixed scale and bias (no running statistics); BGR input minus the
  caffe2 mean. MSRA's R-50/R-101 put the stride in the first 1x1 conv and
  take no deviation; FAIR's X-101-32x8d puts it in the 3x3 and divides by the
  ImageNet deviation.

The converter builds the backbone with those switches, sets every variable
from exactly one tensor (a caffe2 scale/bias sets a BN's four variables:
mean 0 and variance 1 - epsilon make the layer compute `x * s + b`), and
writes `OUT.index` / `OUT.data-*` plus `OUT.json` (source, arch, the config
switches) only when all of it succeeded. A tensor used by nothing (other than
the ImageNet classifier and bookkeeping), a variable no tensor sets, a shape
mismatch, or a file of another arch is an error naming it.
"""

import dataclasses
import json
import os
import pickle
import re
import shutil
import tempfile
from typing import Any, Callable, Mapping, Optional

import numpy as np

from tf_mtdet.config import backbones as backbone_config

SOURCES = ('torchvision', 'timm', 'detectron')
# Backbone kwargs of each --arch (a ResNet is a ResNeXt of one group).
ARCHS = {
    'resnet50': dict(model_id=50, cardinality=1, width_per_group=64),
    'resnet101': dict(model_id=101, cardinality=1, width_per_group=64),
    'resnext101_32x8d': dict(model_id=101, cardinality=32, width_per_group=8),
}
BN_EPSILON = 1e-5


class ConversionError(ValueError):
  """A weights file that cannot become the requested backbone."""


@dataclasses.dataclass(frozen=True)
class Switches:
  """What a source's weights expect of the backbone and the input."""
  stride_in_1x1: bool
  frozen_bn: bool
  input_normalization: dict

  def config_overrides(self) -> dict[str, Any]:
    """{key under `model.<type>`: value} that make a config fit these
    weights."""
    overrides = {'backbone.type': 'resnext',
                 'backbone.resnext.stride_in_1x1': self.stride_in_1x1,
                 'backbone.resnext.padding': 'symmetric',
                 'norm_activation.norm_epsilon': BN_EPSILON}
    for key, value in self.input_normalization.items():
      overrides[f'backbone.input_normalization.{key}'] = value
    return overrides


_TORCH_NORMALIZATION = dict(channel_order='rgb',
                            mean=backbone_config.TORCHVISION_MEAN,
                            std=backbone_config.TORCHVISION_STD)


def switches(source: str, arch: str) -> Switches:
  """The switches the weights of `source` / `arch` were trained with."""
  _check_choice('--source', source, SOURCES)
  _check_choice('--arch', arch, ARCHS)
  if source != 'detectron':
    return Switches(stride_in_1x1=False, frozen_bn=False,
                    input_normalization=_TORCH_NORMALIZATION)
  msra = ARCHS[arch]['cardinality'] == 1
  return Switches(
      stride_in_1x1=msra, frozen_bn=True,
      input_normalization=dict(
          channel_order='bgr', mean=backbone_config.CAFFE2_MEAN,
          std=(backbone_config.CAFFE2_STD if msra else
               backbone_config.FAIR_X101_STD)))


def _check_choice(flag: str, value: str, choices) -> None:
  if value not in choices:
    raise ConversionError(f'{flag} {value!r}: must be one of '
                          f'{", ".join(choices)}')


# Reading ---------------------------------------------------------------------


class _NumpyUnpickler(pickle.Unpickler):
  """Unpickles numpy arrays in dicts and lists, nothing else: a caffe2 `.pkl`
  needs no code to run, so none is allowed to."""
  _ALLOWED = {('numpy.core.multiarray', '_reconstruct'),
              ('numpy._core.multiarray', '_reconstruct'),
              ('numpy.core.multiarray', 'scalar'),
              ('numpy._core.multiarray', 'scalar'),
              ('numpy', 'ndarray'), ('numpy', 'dtype'),
              ('collections', 'OrderedDict'),
              ('_codecs', 'encode')}  # bytes in Python 3's protocol 2

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(
          f'it refers to {module}.{name}, which a file of numpy arrays does '
          f'not')
    return super().find_class(module, name)


def _read_pkl(path: str) -> dict[str, Any]:
  with open(path, 'rb') as f:
    data = _NumpyUnpickler(f, encoding='latin1').load()
  if isinstance(data, dict) and isinstance(data.get('blobs'), dict):
    data = data['blobs']  # Detectron's trained-model layout
  if not isinstance(data, dict):
    raise ConversionError(f'{path}: holds a {type(data).__name__}, not a dict '
                          f'of caffe2 blobs')
  return data


def _read_safetensors(path: str) -> dict[str, Any]:
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
  return safetensors_numpy.load_file(path)


def _read_torch(path: str) -> dict[str, Any]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConversionError(
        f'{path}: reading a PyTorch file needs torch, which is not '
        f'installed; use the .safetensors copy of these weights (the Hugging '
        f"Face hub has timm's and torchvision's, e.g. timm/resnet50.tv_in1k), "
        f'or write one where torch is: python -c "import torch, '
        f'safetensors.torch as st; st.save_file(torch.load(\'{path}\', '
        f'map_location=\'cpu\'), \'weights.safetensors\')"') from None
  data = torch.load(path, map_location='cpu', weights_only=True)
  for key in ('state_dict', 'model'):
    if isinstance(data, dict) and isinstance(data.get(key), dict):
      data = data[key]
  return {k: v.numpy() for k, v in data.items() if hasattr(v, 'numpy')}


_READERS: dict[str, Callable[[str], dict[str, Any]]] = {
    '.safetensors': _read_safetensors, '.pkl': _read_pkl,
    '.pth': _read_torch, '.pt': _read_torch, '.bin': _read_torch}


def read_tensors(path: str) -> dict[str, np.ndarray]:
  """{name: array} of a `.safetensors`, `.pkl`, `.pth`/`.pt`/`.bin` file.

  Raises:
    ConversionError: an unknown suffix, a file that cannot be read or parsed.
  """
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in _READERS:
    raise ConversionError(
        f'{path}: unknown weights format {suffix or "(no suffix)"!r}; '
        f'expected one of {", ".join(_READERS)}')
  if not os.path.isfile(path):
    raise ConversionError(f'{path}: no such file')
  try:
    tensors = _READERS[suffix](path)
  except ConversionError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    reason = ' '.join(str(e).split()) or type(e).__name__
    raise ConversionError(
        f'{path}: not a readable {suffix} weights file ({reason})') from None
  return {str(k): np.asarray(v) for k, v in tensors.items()
          if isinstance(v, np.ndarray) or hasattr(v, '__array__')}


# Names -----------------------------------------------------------------------

_BN = {'torch': {'gamma': 'weight', 'beta': 'bias', 'moving_mean': 'running_mean',
                 'moving_variance': 'running_var'},
       'caffe2': {'gamma': 's', 'beta': 'b'}}


def _style(source: str) -> str:
  return 'caffe2' if source == 'detectron' else 'torch'


def source_layer_names(source: str, depths) -> dict[str, str]:
  """{our layer path: the source's name of that conv / BN}.

  Our paths: 'stem/stem_conv', 'stem/stem_bn', 'stage2_block0/conv1', ...,
  'stage3_block0/shortcut_bn'. torchvision: 'conv1', 'bn1',
  'layer1.0.conv1', 'layer1.0.downsample.1'; caffe2: 'conv1',
  'res_conv1_bn', 'res2_0_branch2a', 'res2_0_branch1_bn'.
  """
  torch = _style(source) == 'torch'
  names = {'stem/stem_conv': 'conv1',
           'stem/stem_bn': 'bn1' if torch else 'res_conv1_bn'}
  for stage, repeats in zip(range(2, 6), depths):
    for i in range(repeats):
      ours = f'stage{stage}_block{i}'
      theirs = f'layer{stage - 1}.{i}' if torch else f'res{stage}_{i}'
      for k, branch in zip((1, 2, 3), 'abc'):
        names[f'{ours}/conv{k}'] = (f'{theirs}.conv{k}' if torch else
                                    f'{theirs}_branch2{branch}')
        names[f'{ours}/bn{k}'] = (f'{theirs}.bn{k}' if torch else
                                  f'{theirs}_branch2{branch}_bn')
      if i == 0:
        names[f'{ours}/shortcut'] = (f'{theirs}.downsample.0' if torch else
                                     f'{theirs}_branch1')
        names[f'{ours}/shortcut_bn'] = (f'{theirs}.downsample.1' if torch else
                                        f'{theirs}_branch1_bn')
  return names


def tensor_name(source: str, layer: str, variable: str) -> Optional[str]:
  """The source tensor of one of our variables (None: a caffe2 BN's mean and
  variance, which the file does not have)."""
  if variable == 'kernel':
    return f'{layer}.weight' if _style(source) == 'torch' else f'{layer}_w'
  field = _BN[_style(source)].get(variable)
  if field is None:
    return None
  return f'{layer}.{field}' if _style(source) == 'torch' else f'{layer}_{field}'


def is_ignored(source: str, name: str) -> bool:
  """Tensors a backbone has no use for: the ImageNet classifier, BN's batch
  counter, caffe2 solver blobs."""
  if _style(source) == 'torch':
    return name.startswith('fc.') or name.endswith('.num_batches_tracked')
  return (name.startswith(('pred_', 'fc1000_')) or name.endswith('_momentum')
          or name in ('lr', 'model_iter', 'weight_order'))


def expected_tensors(source: str, depths) -> list[str]:
  """Every tensor name a backbone of `depths` reads from a `source` file."""
  wanted = []
  for ours, theirs in source_layer_names(source, depths).items():
    last = ours.rsplit('/', 1)[-1]
    is_bn = last.startswith('bn') or last.endswith('_bn')
    for variable in (tuple(_BN['torch']) if is_bn else ('kernel',)):
      name = tensor_name(source, theirs, variable)
      if name is not None:
        wanted.append(name)
  return wanted


def file_blocks(source: str, tensors: Mapping[str, np.ndarray]
                ) -> tuple[list[int], int]:
  """(blocks per stage res2..res5, groups of the 3x3 convs) a file holds."""
  torch = _style(source) == 'torch'
  pattern = r'layer(\d)\.(\d+)\.' if torch else r'res(\d)_(\d+)_'
  blocks = {}
  for name in tensors:
    match = re.match(pattern, name)
    if match:
      stage = int(match.group(1)) + (1 if torch else 0)
      blocks[stage] = max(blocks.get(stage, 0), int(match.group(2)) + 1)
  layers = source_layer_names(source, [1])
  conv1 = tensors.get(tensor_name(source, layers['stage2_block0/conv1'],
                                  'kernel'))
  conv2 = tensors.get(tensor_name(source, layers['stage2_block0/conv2'],
                                  'kernel'))
  groups = 1
  if (conv1 is not None and conv2 is not None and conv2.ndim == 4 and
      conv2.shape[1]):
    groups = max(1, conv1.shape[0] // conv2.shape[1])
  return [blocks.get(stage, 0) for stage in range(2, 6)], groups


def describe(depths, groups: int) -> str:
  """'resnet50' for a known arch, else its blocks and groups."""
  from tf_mtdet.modeling.backbones import resnext  # pylint: disable=g-import-not-at-top
  for arch, kwargs in ARCHS.items():
    if (resnext.DEPTHS[kwargs['model_id']] == list(depths) and
        kwargs['cardinality'] == groups):
      return arch
  return (f'{"/".join(map(str, depths))} blocks per stage with '
          f'{groups}-group 3x3 convs')


def check_arch(source: str, tensors: Mapping[str, np.ndarray], path: str,
               arch: str, arch_kwargs: Mapping[str, Any]) -> None:
  """Raises ConversionError when the file holds another arch than asked."""
  from tf_mtdet.modeling.backbones import resnext  # pylint: disable=g-import-not-at-top
  depths, groups = file_blocks(source, tensors)
  want = resnext.DEPTHS[arch_kwargs['model_id']]
  if not any(depths):
    raise ConversionError(
        f'{path}: no {source} ResNet block tensors (e.g. '
        f'{tensor_name(source, source_layer_names(source, [1])["stage2_block0/conv1"], "kernel")}); '
        f'is --source {source} right?')
  if depths != want or groups != arch_kwargs['cardinality']:
    wanted = describe(want, arch_kwargs['cardinality'])
    raise ConversionError(
        f'{path}: the file holds a {describe(depths, groups)}, not --arch '
        f'{arch}' + ('' if wanted == arch else f' ({wanted})'))


# Conversion ------------------------------------------------------------------


@dataclasses.dataclass
class Report:
  """What a conversion did."""
  tensors_used: int
  tensors_ignored: int
  variables_set: int

  def line(self) -> str:
    return (f'used {self.tensors_used} tensors (ignored '
            f'{self.tensors_ignored}: classifier and bookkeeping), set '
            f'{self.variables_set} backbone variables')


def build_backbone(source: str, arch_kwargs: Mapping[str, Any]):
  """Our 'resnext' backbone with the switches `source`'s weights expect."""
  from tf_mtdet.modeling.backbones import resnext  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  arch = dict(arch_kwargs)
  backbone = resnext.ResNeXt(
      stride_in_1x1=source == 'detectron' and arch['cardinality'] == 1,
      padding='symmetric', frozen_bn=source == 'detectron',
      norm_epsilon=BN_EPSILON, **arch)
  backbone(tf.zeros([1, 32, 32, 3]))
  return backbone


def _layer_path(variable_name: str) -> tuple[str, str]:
  """'stage2_block0/conv1/kernel:0' -> ('stage2_block0/conv1', 'kernel')."""
  path = variable_name.split(':')[0]
  layer, _, variable = path.rpartition('/')
  return layer, variable


def assign(backbone, tensors: Mapping[str, np.ndarray], source: str,
           path: str, arch: str) -> Report:
  """Sets every variable of `backbone` from `tensors` (in the source's names).

  Raises:
    ConversionError: a variable without its tensor, a shape mismatch, a
      tensor left over, a file of another arch.
  """
  from tf_mtdet.modeling.backbones import resnext  # pylint: disable=g-import-not-at-top
  depths = resnext.DEPTHS[backbone.get_config()['model_id']]
  layers = source_layer_names(source, depths)
  plan, used = [], set()
  for variable in backbone.weights:
    layer, field = _layer_path(variable.name)
    theirs = layers.get(layer)
    if theirs is None:
      raise ConversionError(f'{path}: no rule for backbone variable '
                            f'{variable.name} (internal)')
    name = tensor_name(source, theirs, field)
    if name is not None:
      if name not in tensors:
        raise ConversionError(f'{path}: no tensor {name} for backbone '
                              f'variable {variable.name}')
      shape = tensors[name].shape
      if field == 'kernel' and len(shape) == 4:
        shape = tuple(shape[i] for i in (2, 3, 1, 0))
      if tuple(shape) != tuple(variable.shape):
        raise ConversionError(
            f'{path}: tensor {name} of shape {list(tensors[name].shape)} does '
            f'not fit backbone variable {variable.name} of shape '
            f'{list(variable.shape)} (kernels as [kh, kw, in, out]); is '
            f'--arch {arch} right?')
      used.add(name)
    plan.append((variable, field, name))
  leftover = sorted(n for n in tensors
                    if n not in used and not is_ignored(source, n))
  if leftover:
    more = f' and {len(leftover) - 3} more' if len(leftover) > 3 else ''
    raise ConversionError(f'{path}: tensor {", ".join(leftover[:3])}{more} '
                          f'not used by a {arch} backbone')
  # Checked: now one tensor at a time (a 32x8d is 350 MB).
  for variable, field, name in plan:
    if name is None:  # caffe2 BN: mean 0, variance 1 - eps: x * s + b
      value = (np.zeros(variable.shape, np.float32) if field == 'moving_mean'
               else np.full(variable.shape, 1.0 - BN_EPSILON, np.float32))
    else:
      value = tensors[name]
      if field == 'kernel' and value.ndim == 4:
        value = value.transpose(2, 3, 1, 0)
    variable.assign(np.asarray(value, np.float32))
  return Report(tensors_used=len(used),
                tensors_ignored=len(tensors) - len(used),
                variables_set=len(plan))


def metadata(source: str, arch: str,
             arch_kwargs: Optional[Mapping[str, Any]] = None
             ) -> dict[str, Any]:
  """The `OUT.json` beside a converted checkpoint: source, arch and the
  config switches (keys under `model.<type>`) its weights need."""
  chosen = switches(source, arch)
  arch_kwargs = arch_kwargs or ARCHS[arch]
  return {'source': source, 'arch': arch,
          'frozen_bn_recommended': chosen.frozen_bn,
          'config_overrides': {
              **{f'backbone.resnext.{k}': v for k, v in arch_kwargs.items()},
              **chosen.config_overrides()}}


def write_checkpoint(backbone, out: str, meta: Mapping[str, Any]) -> str:
  """Writes `out.index`, `out.data-*` and `out.json` together or not at all.

  Returns:
    The checkpoint prefix `out`.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  directory = os.path.dirname(os.path.abspath(out))
  try:
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.convert-', dir=directory)
  except OSError as e:
    raise ConversionError(f'{out}: cannot write here ({e.strerror})') from None
  try:
    tf.train.Checkpoint(backbone=backbone).write(
        os.path.join(staging, 'ckpt'))
    with open(os.path.join(staging, 'ckpt.json'), 'w', encoding='utf-8') as f:
      json.dump(meta, f, indent=1)
    files = sorted(os.listdir(staging))
    # The index last: a checkpoint without it is not found at all.
    files.sort(key=lambda name: name.endswith('.index'))
    for name in files:
      os.replace(os.path.join(staging, name),
                 os.path.abspath(out) + name[len('ckpt'):])
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return out


def convert(source: str, arch: str, in_path: str, out: str,
            arch_kwargs: Optional[Mapping[str, Any]] = None) -> Report:
  """`tf-mtdet convert-weights`: IN (source weights) -> OUT checkpoint.

  Args:
    source: 'torchvision', 'timm' or 'detectron'.
    arch: 'resnet50', 'resnet101' or 'resnext101_32x8d'.
    in_path: `.safetensors`, `.pth`/`.pt` or `.pkl` file.
    out: Checkpoint prefix to write.
    arch_kwargs: Backbone kwargs instead of `ARCHS[arch]` (tests: smaller
      depths and widths of the same blocks).

  Raises:
    ConversionError: bad input, named; nothing is written then.
  """
  switches(source, arch)  # checks both names first
  tensors = read_tensors(in_path)
  if not tensors:
    raise ConversionError(f'{in_path}: holds no tensors')
  arch_kwargs = arch_kwargs or ARCHS[arch]
  check_arch(source, tensors, in_path, arch, arch_kwargs)
  backbone = build_backbone(source, arch_kwargs)
  report = assign(backbone, tensors, source, in_path, arch)
  meta = metadata(source, arch, arch_kwargs)
  write_checkpoint(backbone, out, meta)
  return report
