"""The experiment config: data, model, losses, schedule, runtime and export.

One `ExperimentConfig` describes a run. It loads from YAML (a config may name
a `base` YAML it extends, as mmdetection configs do) and takes `key=value`
overrides (`--set` on the command line), both through Model Garden's
`hyperparams` machinery.
"""

import dataclasses
import json
import os
import re
from typing import List, Optional, Sequence

import yaml

from official.modeling import hyperparams

from tf_mtdet.config import data as data_config
from tf_mtdet.config import model as model_config
from tf_mtdet.config import zoo
from tf_mtdet.data import label_checks
from tf_mtdet.data import image_size


@dataclasses.dataclass
class Schedule(hyperparams.Config):
  """SGD with linear warmup and step decay, in epochs, as the papers state it.

  Weight decay is applied as an L2 penalty of weight_decay / 2 * |w|^2, which
  is SGD weight decay.

  Attributes:
    epochs: Training length.
    steps_per_epoch: Steps of one epoch; 0 = `num_train_examples` / global
      batch size.
    num_train_examples: Images in the training split (the builder's summary
      says it); needed when `steps_per_epoch` is 0.
    base_learning_rate: Learning rate at `base_batch_size`; scaled linearly to
      the actual global batch size.
    decay_epochs: The learning rate is multiplied by `decay_factor` after each
      of these epochs (fractions allowed: Detectron's 1x decays after 8 and
      10.667 of 12).
    warmup_steps: Linear warmup from `warmup_ratio` * lr.
    total_steps: If > 0, overrides epochs * steps_per_epoch (quick runs).
    optimizer: 'sgd' (with `momentum`) or 'adam' (with `beta_1`, `beta_2`;
      IvaNet: beta_1 0.5).
  """
  epochs: int = 12
  steps_per_epoch: int = 0
  num_train_examples: int = 0
  base_learning_rate: float = 0.02
  base_batch_size: int = 16
  decay_epochs: List[float] = dataclasses.field(default_factory=lambda: [9, 11])
  decay_factor: float = 0.1
  warmup_steps: int = 500
  warmup_ratio: float = 0.001
  momentum: float = 0.9
  weight_decay: float = 1e-4
  clipnorm: float = 0.0
  total_steps: int = 0
  optimizer: str = 'sgd'
  beta_1: float = 0.9
  beta_2: float = 0.999


@dataclasses.dataclass
class Runtime(hyperparams.Config):
  """How training runs.

  Attributes:
    strategy: 'mirrored' (all visible devices, the default), 'multi_worker'
      (MultiWorkerMirroredStrategy from TF_CONFIG), 'one_device' (debugging).
    mixed_precision: '', 'mixed_float16' or 'mixed_bfloat16'.
    checkpoint_every_n_steps: Checkpoint interval (and at the end).
    max_checkpoints: Checkpoints kept.
    eval_every_n_epochs: COCO evaluation during training (0 = never).
    log_every_n_steps: TensorBoard scalar interval.
    init_checkpoint: Checkpoint to initialise `init_checkpoint_modules` from
      (e.g. a Model Garden ResNet checkpoint for the backbone).
    init_checkpoint_modules: 'backbone', or 'all' for a whole model.
    run_eagerly: Debugging.
  """
  strategy: str = 'mirrored'
  mixed_precision: str = ''
  checkpoint_every_n_steps: int = 1000
  max_checkpoints: int = 5
  eval_every_n_epochs: int = 1
  log_every_n_steps: int = 50
  init_checkpoint: str = ''
  init_checkpoint_modules: str = 'backbone'
  run_eagerly: bool = False
  seed: int = 0


@dataclasses.dataclass
class Export(hyperparams.Config):
  """SavedModel export options.

  Class names come from `train_data.label_map`.

  Attributes:
    full_image_masks: Also output masks pasted into original image pixels.
    score_threshold: Drop detections below this score.
    max_image_pixels: Requests with a larger image (width x height, read from
      an encoded image's header before decoding) get INVALID_ARGUMENT; 0
      for no limit. The default, 50 megapixels, takes about 1 GB to decode
      and normalize.
  """
  full_image_masks: bool = False
  score_threshold: float = 0.0
  max_image_pixels: int = image_size.DEFAULT_MAX_IMAGE_PIXELS


@dataclasses.dataclass
class ExperimentConfig(hyperparams.Config):
  """A whole experiment."""
  model: model_config.Model = dataclasses.field(
      default_factory=model_config.Model)
  train_data: data_config.DataConfig = dataclasses.field(
      default_factory=lambda: data_config.DataConfig(is_training=True,
                                                     global_batch_size=16))
  eval_data: data_config.DataConfig = dataclasses.field(
      default_factory=lambda: data_config.DataConfig(
          is_training=False, global_batch_size=2, drop_remainder=False))
  schedule: Schedule = dataclasses.field(default_factory=Schedule)
  runtime: Runtime = dataclasses.field(default_factory=Runtime)
  export: Export = dataclasses.field(default_factory=Export)

  @property
  def family_model(self):
    """The chosen family's model config (`model.<model.type>`)."""
    known = [f.name for f in dataclasses.fields(self.model) if f.name != 'type']
    if self.model.type not in known:
      raise ValueError(f'model.type {self.model.type!r}: not a family; '
                       f'expected one of {known}')
    return self.model.get()

  def validate(self):
    super().validate()
    # Imported here: the schedule module reads this one's dataclasses.
    from tf_mtdet.training import schedules  # pylint: disable=g-import-not-at-top
    schedules.validate_schedule(self.schedule,
                                self.train_data.global_batch_size)
    check_levels = getattr(self.family_model, 'check_levels', None)
    if check_levels:
      check_levels(f'model.{self.model.type}')


class _Loader(yaml.SafeLoader):
  """YAML 1.1's safe loader reading `5e-5` as a float, as YAML 1.2 does (1.1
  wants `5.0e-5` and reads `5e-5` as a string, which a float field refuses)."""


_Loader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$'),
    list('-+0123456789'))


def _load_yaml(stream):
  return yaml.load(stream, Loader=_Loader)  # noqa: S506  # a safe loader


def _load_yaml_with_bases(path: str, seen: Sequence[str] = ()) -> dict:
  path = os.path.abspath(path)
  if path in seen:
    raise ValueError(f'{path}: circular "base" chain {list(seen)}')
  try:
    with open(path, encoding='utf-8') as f:
      data = _load_yaml(f) or {}
  except OSError as e:
    raise ValueError(f'{path}: cannot read config: {e.strerror or e}') from e
  except yaml.YAMLError as e:
    raise ValueError(f'{path}: invalid YAML: {e}') from e
  if not isinstance(data, dict):
    raise ValueError(f'{path}: a config is a mapping at the top level')
  base = data.pop('base', None)
  if base is None:
    return data
  merged = _load_yaml_with_bases(os.path.join(os.path.dirname(path), base),
                                 [*seen, path])
  _deep_update(merged, data)
  return merged


def _deep_update(into: dict, update: dict) -> None:
  for key, value in update.items():
    if isinstance(value, dict) and isinstance(into.get(key), dict):
      _deep_update(into[key], value)
    else:
      into[key] = value


def load_config(path: Optional[str] = None,
                overrides: Sequence[str] = ()) -> ExperimentConfig:
  """Loads a YAML experiment (with its `base` chain) and applies overrides.

  Args:
    path: YAML file, or None for the defaults.
    overrides: 'a.b=value' strings, applied in order.

  Returns:
    The validated config.

  Raises:
    ValueError: unreadable file, unknown key, or bad value (the message names
      the file or the override).
  """
  config = ExperimentConfig()
  if path:
    path = zoo.resolve(path)
    data = _load_yaml_with_bases(path)  # Its errors name the file already.
    try:
      config.override(data, is_strict=True)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
      raise ValueError(f'{path}: {e}') from e
  for item in overrides:
    if '=' not in item:
      raise ValueError(f'--set {item!r}: expected key=value')
    key, value = item.split('=', 1)
    try:
      parsed = _load_yaml(value) if value.strip() else ''
      nested = parsed
      for part in reversed(key.strip().split('.')):
        nested = {part: nested}
      config.override(nested, is_strict=True)
    except (KeyError, ValueError, TypeError, AttributeError,
            yaml.YAMLError) as e:
      raise ValueError(f'--set {item!r}: {e}') from e
  _apply_label_map(config)
  config.validate()
  return config


def read_num_classes(label_map: str) -> int:
  """`num_classes` of the builder's `PREFIX-label_map.json`."""
  try:
    with open(label_map, encoding='utf-8') as f:
      return int(json.load(f)['num_classes'])
  except OSError as e:
    raise ValueError(f'{label_map}: cannot read label map: '
                     f'{e.strerror or e}') from e
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f'{label_map}: not a tf-mtdet label map (needs '
                     f'"num_classes"): {e}') from e


def _apply_label_map(config: ExperimentConfig) -> None:
  """`num_classes` 0 -> the label map's; a label map with more classes than
  the model is an error (they would be learned as background)."""
  model = config.family_model
  label_map = (config.train_data.label_map or
               label_checks.label_map_beside(config.train_data.input_path))
  field = f'model.{config.model.type}.num_classes'
  if not label_map or (model.num_classes and not os.path.exists(label_map)):
    if not model.num_classes and not label_map:
      raise ValueError(f'{field} is 0 and train_data.label_map names no '
                       'label map to take it from')
    return
  data_classes = read_num_classes(label_map)
  if not model.num_classes:
    model.num_classes = data_classes
  elif data_classes > model.num_classes:
    raise ValueError(
        f'{label_map} has num_classes {data_classes} but {field} is '
        f'{model.num_classes}: class ids >= {model.num_classes} would be '
        f'learned as background; set {field}={data_classes} (or 0 to take it '
        'from the label map)')


def to_yaml(config: ExperimentConfig) -> str:
  """The whole config as YAML, in field order (what `load_config` reads)."""
  return yaml.safe_dump(config.as_dict(), sort_keys=False)


def save_config(config: ExperimentConfig, path: str) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(to_yaml(config))
  os.replace(tmp, path)
