"""Starting a model from pretrained weights (`runtime.init_checkpoint`).

* Paths: a Model Garden checkpoint (object graph with `backbone` at the root,
  or under `model`), one of ours (`model`, `optimizer`), or a converted
  ImageNet backbone (`tf-mtdet convert-weights`, `backbone` at the root with
  `PREFIX.json` beside it naming the config switches its weights need).
* Names: `imagenet/<name>` (`WEIGHTS`: what paper configs name) is looked
  up as `$TF_MTDET_WEIGHTS/imagenet/<name>` (default
  `~/.cache/tf_mtdet/weights`); when it is not there, training starts from
  scratch and says so in one line, with the command that makes the weights.
* A res5 RoI head (DATNet Light/Heavy) starts from the backbone's res5, as
  maskrcnn-benchmark's C4 heads do.

Restoring prints one line of ours (variables restored, into which part, what
stays at its initialisation); TensorFlow's own checkpoint warnings are
silenced while it runs.
"""

import contextlib
import dataclasses
import json
import logging as py_logging
import os
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tf_keras

NAME_PREFIX = 'imagenet/'
WEIGHTS_ENV = 'TF_MTDET_WEIGHTS'
DEFAULT_WEIGHTS_DIR = os.path.join('~', '.cache', 'tf_mtdet', 'weights')
# Weights that are a Model Garden TensorFlow checkpoint (no conversion).
MODEL_GARDEN = 'model_garden'


@dataclasses.dataclass(frozen=True)
class Weights:
  """One named ImageNet backbone: where it comes from and how to convert it."""
  source: str
  arch: str
  file: str
  origin: str


# The weights each paper started from (README "Start from ImageNet").
WEIGHTS = {
    'imagenet/resnet50_msra': Weights(
        'detectron', 'resnet50', 'R-50.pkl',
        "MSRA's caffe2 ResNet-50 (Detectron ImageNetPretrained/MSRA, as "
        'maskrcnn-benchmark loads it)'),
    'imagenet/resnet101_msra': Weights(
        'detectron', 'resnet101', 'R-101.pkl',
        "MSRA's caffe2 ResNet-101 (Detectron ImageNetPretrained/MSRA)"),
    'imagenet/resnext101_32x8d_fair': Weights(
        'detectron', 'resnext101_32x8d', 'X-101-32x8d.pkl',
        "FAIR's caffe2 ResNeXt-101 32x8d (Detectron ImageNetPretrained/FAIR)"),
    'imagenet/resnet50_torchvision': Weights(
        'torchvision', 'resnet50', 'resnet50.safetensors',
        "torchvision's ResNet-50 (mmdetection's torchvision://resnet50; the "
        "hub's timm/resnet50.tv_in1k model.safetensors)"),
    'imagenet/resnet101_torchvision': Weights(
        'torchvision', 'resnet101', 'resnet101.safetensors',
        "torchvision's ResNet-101 (mmdetection's torchvision://resnet101; the "
        "hub's timm/resnet101.tv_in1k model.safetensors)"),
    # A TensorFlow checkpoint already: IvaNet's lineage (TF-slim, BlitzNet)
    # is TensorFlow, and Model Garden's ResNet-50 is the ImageNet ResNet-50 a
    # TensorFlow user has; it needs no conversion, only a place.
    'imagenet/resnet50_model_garden': Weights(
        MODEL_GARDEN, 'resnet50', 'ckpt-N',
        "Model Garden's ImageNet ResNet-50 (TF-Vision's resnet50 ImageNet "
        'classification checkpoint)'),
}


def weights_dir() -> str:
  return os.path.expanduser(os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS_DIR)


def convert_command(name: str) -> str:
  """The command that makes weights `name`: `tf-mtdet convert-weights`, or
  for a Model Garden checkpoint the copy that puts it where it is looked up."""
  w, out = WEIGHTS[name], os.path.join(weights_dir(), name)
  if w.source == MODEL_GARDEN:
    return (f'cp {w.file}.index {out}.index; cp {w.file}.data-00000-of-00001 '
            f'{out}.data-00000-of-00001 (the checkpoint\'s own files, renamed)')
  return (f'tf-mtdet convert-weights --source {w.source} --arch {w.arch} '
          f'{w.file} {out}')


def resolve(value: str) -> Optional[str]:
  """`runtime.init_checkpoint` -> a checkpoint path, or None for a weights
  name whose checkpoint is not in `weights_dir()`.

  Raises:
    ValueError: an unknown `imagenet/` name.
  """
  if not value.startswith(NAME_PREFIX):
    return value
  if value not in WEIGHTS:
    raise ValueError(f'runtime.init_checkpoint {value!r}: unknown weights '
                     f'name; known: {", ".join(sorted(WEIGHTS))}')
  path = os.path.join(weights_dir(), value)
  return path if tf.io.gfile.exists(path + '.index') else None


def from_scratch_line(name: str) -> str:
  w = WEIGHTS[name]
  return (f'training from scratch: this config starts from {name} '
          f'({w.origin}), not found in {weights_dir()} (${WEIGHTS_ENV}); make '
          f'it with: {convert_command(name)}')


def _checkpoint_path(path: str) -> str:
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise ValueError(f'{path}: no checkpoint in this directory')
    return latest
  if not tf.io.gfile.exists(path + '.index'):
    raise ValueError(f'{path}: no checkpoint at this path (no {path}.index)')
  return path


def _lookup(config: Any, dotted: str):
  for part in dotted.split('.'):
    config = getattr(config, part)
  return config


def check_switches(path: str, model_config: Any, prefix: str) -> None:
  """Raises ValueError when a converted checkpoint's weights need other
  backbone switches than `model_config` has (`PATH.json`)."""
  meta_path = path + '.json'
  if model_config is None or not tf.io.gfile.exists(meta_path):
    return
  with tf.io.gfile.GFile(meta_path) as f:
    meta = json.load(f)
  for key, want in meta.get('config_overrides', {}).items():
    try:
      have = _lookup(model_config, key)
    except AttributeError:
      continue
    have = list(have) if isinstance(have, (list, tuple)) else have
    same = (np.allclose(have, want) if isinstance(want, (list, float))
            and not isinstance(have, str) else have == want)
    if not same:
      raise ValueError(
          f'{path}: {meta["source"]} {meta["arch"]} weights need '
          f'{prefix}.{key}={want}, the config has {have} (the switches the '
          f'weights need are in {meta_path})')


@contextlib.contextmanager
def _quiet_tf_checkpoint_warnings():
  """TensorFlow's warnings about unmatched checkpoint values, which our
  one line replaces."""
  logger = py_logging.getLogger('tensorflow')
  level = logger.level
  logger.setLevel(py_logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def res5_heads(model: tf_keras.Model) -> list[tf_keras.layers.Layer]:
  """The model's RoI res5 stages (DATNet Light's box head, Heavy's trunk)."""
  from tf_mtdet.modeling.heads import res5_head  # pylint: disable=g-import-not-at-top
  heads, seen = [], set()
  for layer in getattr(model, 'submodules', ()):
    if isinstance(layer, res5_head.RoIRes5) and id(layer) not in seen:
      seen.add(id(layer))
      heads.append(layer)
  return heads


def copy_res5(model: tf_keras.Model) -> tuple[int, list[str]]:
  """Copies the backbone's res5 blocks into every RoI res5 head.

  Returns:
    (variables copied, a reason per head left at its initialisation).
  """
  from tf_mtdet.modeling.backbones import resnext  # pylint: disable=g-import-not-at-top
  heads = res5_heads(model)
  if not heads:
    return 0, []
  backbone = getattr(model, 'backbone', None)
  if not isinstance(backbone, resnext.ResNeXt):
    return 0, [f'{h.name} (a {type(backbone).__name__} backbone has no '
               f'res5 blocks of its kind)' for h in heads]
  source = [layer for layer in backbone.layers
            if layer.name.startswith('stage5_block')]
  copied, skipped = 0, []
  for head in heads:
    blocks = head.blocks
    pairs = list(zip(source, blocks))
    shapes_match = len(source) == len(blocks) and all(
        [w.shape for w in s.weights] == [w.shape for w in t.weights]
        for s, t in pairs)
    if not shapes_match:
      skipped.append(f'{head.name} (its blocks differ from the backbone '
                     f'res5 in number or shape)')
      continue
    for s, t in pairs:
      for src, dst in zip(s.weights, t.weights):
        dst.assign(src)
        copied += 1
  return copied, skipped


def restore(model: tf_keras.Model, path: str, modules: str,
            model_config: Any = None, prefix: str = 'model') -> str:
  """Initialises `modules` ('backbone' or 'all') from checkpoint `path`.

  Args:
    model: The built model.
    path: Checkpoint prefix or directory.
    modules: 'backbone', or 'all' for a whole model.
    model_config: The family's model config, to check a converted
      checkpoint's switches against.
    prefix: Its config path, e.g. 'model.two_stage', for messages.

  Returns:
    The one line that says what was restored.

  Raises:
    ValueError: no checkpoint there, switches that do not fit, objects of
      the model that match the checkpoint in name but not in shape.
  """
  path = _checkpoint_path(path)
  if modules == 'backbone':
    check_switches(path, model_config, prefix)
    names = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    part = model.backbone
    if any(n.startswith('backbone/') for n in names):
      ckpt = tf.train.Checkpoint(backbone=part)
    else:
      ckpt = tf.train.Checkpoint(model=tf.train.Checkpoint(backbone=part))
  elif modules == 'all':
    part = model
    ckpt = tf.train.Checkpoint(model=model)
  else:
    raise ValueError(f"init_checkpoint_modules must be 'backbone' or 'all', "
                     f'got {modules!r}')
  # NaN marks what the restore does not reach (a restored value may equal
  # its initialisation: a caffe2 BN's zero mean).
  floats = [v for v in part.weights if v.dtype.is_floating]
  before = [v.numpy() for v in floats]
  for v in floats:
    v.assign(tf.fill(v.shape, tf.constant(np.nan, v.dtype)))
  try:
    with _quiet_tf_checkpoint_warnings():
      status = ckpt.read(path)
      status.expect_partial().assert_existing_objects_matched()
  except BaseException:
    for v, old in zip(floats, before):
      v.assign(old)
    raise
  restored = 0
  for v, old in zip(floats, before):
    if np.isnan(v.numpy()).all():
      v.assign(old)
    else:
      restored += 1
  del before
  line = (f'init checkpoint {path}: restored {restored} of '
          f'{len(floats)} {modules} variables')
  if modules == 'backbone':
    copied, skipped = copy_res5(model)
    if copied:
      line += f'; {copied} res5 RoI head variables from the backbone res5'
    rest = [layer.name for layer in getattr(model, 'layers', ())
            if layer is not model.backbone and layer.weights and
            not isinstance(layer, tf_keras.layers.InputLayer)]
    left = skipped + [n for n in rest
                      if n not in {h.name for h in res5_heads(model)}]
    if left:
      line += f'; left at init: {", ".join(left)}'
  if restored < len(floats):
    line += (f'; {len(floats) - restored} {modules} variables not in the '
             f'checkpoint kept their initial values')
  return line
