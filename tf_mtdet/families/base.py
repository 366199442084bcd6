"""The family interface and its registry."""

import abc
from typing import Any, Callable, ClassVar, Mapping

import tensorflow as tf
import tf_keras

from tf_mtdet.config import data as data_config
from tf_mtdet.config import experiment as experiment_config
from tf_mtdet.data import augment
from tf_mtdet.data import parser as parser_lib
from tf_mtdet.data.targets import base as targets_base
from tf_mtdet.losses import total

# Keys of `Family.detections`: what evaluation and serving read.
DETECTION_KEYS = ('detection_boxes', 'detection_scores', 'detection_classes',
                  'num_detections', 'detection_masks', 'proposal_boxes',
                  'proposal_scores')


class Family(abc.ABC):
  """Answers every question the platform asks about one meta-architecture.

  Built from the experiment config; `model_config` is `config.model.<type>`.
  """
  name: ClassVar[str] = ''
  # The model returns region proposals (`proposal_boxes`) at inference.
  has_proposals: ClassVar[bool] = False

  def __init__(self, config: experiment_config.ExperimentConfig):
    self.config = config
    self.model_config = config.family_model

  # Model ----------------------------------------------------------------

  @abc.abstractmethod
  def build_model(self) -> tf_keras.Model:
    """The (unbuilt) Keras model, with the schedule's weight decay."""

  @abc.abstractmethod
  def call_inference(self, model: tf_keras.Model, images: tf.Tensor,
                     image_info: tf.Tensor) -> Mapping[str, Any]:
    """Runs the model for inference on preprocessed images.

    Args:
      model: The family's model.
      images: [B, padded_h, padded_w, 3] as the parser preprocesses them.
      image_info: [B, 4, 2] Model Garden image info.

    Returns:
      The model's raw outputs (`detections` reads them).
    """

  @property
  def stride(self) -> int:
    """Padded image sizes are a multiple of the top pyramid stride."""
    return 2**self.model_config.max_level

  # Data -----------------------------------------------------------------

  @abc.abstractmethod
  def target_generators(self) -> list[targets_base.TargetGenerator]:
    """The generators of every part that learns from its own targets."""

  def augmentation_needs(self) -> set[str]:
    needs = set()
    for generator in self.target_generators():
      needs |= generator.needs
    return needs

  def build_parser(self, data: data_config.DataConfig
                   ) -> parser_lib.DetectionParser:
    """Shared augmentation, then this family's targets."""
    generators = self.target_generators()
    # Training, evaluation and serving normalise as the backbone's weights
    # expect.
    backbone = getattr(self.model_config, 'backbone', None)
    augmenter = augment.Augmenter(
        data.parser, self.stride, needs=self.augmentation_needs(),
        normalization=getattr(backbone, 'input_normalization', None))
    return parser_lib.DetectionParser(augmenter, generators,
                                      self.model_config.num_classes)

  # Training -------------------------------------------------------------

  @abc.abstractmethod
  def build_losses(self) -> total.TotalLoss:
    """The family's terms plus those its parts registered."""

  @abc.abstractmethod
  def model_inputs(self, labels: Mapping[str, Any],
                   training: bool) -> dict[str, Any]:
    """Keyword inputs of `model(images, **inputs)` from the parser's labels."""

  # Evaluation and serving ------------------------------------------------

  def detections(self, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs evaluation and serving read: `detection_boxes` [B, N, 4]
    (yxyx, resized-image pixels), `detection_scores`, `detection_classes`,
    `num_detections`, and where the model has them `detection_masks`
    [B, N, m, m], `proposal_boxes` [B, P, 4] and `semantic` [B, H, W] int32
    class ids at the padded input size."""
    result = {k: outputs[k] for k in DETECTION_KEYS if k in outputs}
    logits = outputs.get('semantic/logits')
    if logits is not None:
      stride = 2**self._semantic_head().levels[0]
      size = tf.shape(logits)[1:3] * stride
      result['semantic'] = tf.argmax(
          tf.image.resize(tf.cast(logits, tf.float32), size), axis=-1,
          output_type=tf.int32)
    return result

  def _semantic_head(self):
    for part in getattr(self.model_config, 'dense_aux_heads', []):
      if part.type == 'semantic':
        return part.get()
    return None

  @property
  def semantic_classes(self) -> int:
    """Classes of the model's semantic output (0: it has none)."""
    head = self._semantic_head()
    if head is None:
      return 0
    return head.num_classes or self.model_config.num_classes

  @property
  def include_mask(self) -> bool:
    return bool(getattr(self.model_config, 'include_mask', False))

  def eval_input_size(self) -> tuple[int, int]:
    """The (smallest) padded eval input size: a model built for it serves
    any size."""
    size = self.config.eval_data.parser
    height, width = (size.output_size if size.resize_mode == 'fixed' else
                     [min(size.short_side), min(size.short_side)])
    stride = self.stride
    return -(-height // stride) * stride, -(-width // stride) * stride

  def build_weights(self, model: tf_keras.Model) -> None:
    """Creates the model's weights with one inference pass at the eval size.

    `call`, not `__call__`: the sublayers create their weights, and Keras
    records no input signature for the whole model, so a SavedModel export
    does not retrace it for Keras serialization (Model Garden's models are
    never called either before export).
    """
    height, width = self.eval_input_size()
    info = tf.constant([[[height, width], [height, width], [1.0, 1.0],
                         [0.0, 0.0]]], tf.float32)
    self.call_inference(model, tf.zeros([1, height, width, 3]), info)


_FAMILIES: dict[str, Callable[[experiment_config.ExperimentConfig], Family]] = {}


def register(name: str):
  """Class decorator registering a family under `model.type` `name`."""

  def decorator(cls):
    if name in _FAMILIES:
      raise ValueError(f'family {name!r} is registered twice')
    cls.name = name
    _FAMILIES[name] = cls
    return cls

  return decorator


def get(config: experiment_config.ExperimentConfig) -> Family:
  """The family `config.model.type` names, built from the config."""
  try:
    return _FAMILIES[config.model.type](config)
  except KeyError:
    raise ValueError(f'model.type {config.model.type!r}: unknown family; '
                     f'registered: {names()}') from None


def names() -> list[str]:
  return sorted(_FAMILIES)
