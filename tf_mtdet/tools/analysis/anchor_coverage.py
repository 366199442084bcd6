"""Anchor coverage: the share of ground-truth boxes whose best anchor (or SSD
prior) reaches the matcher's positive IoU threshold at the config's input
size.

The anchors come from the config's own generator: Model Garden's
`ops.anchor` for two-stage RPNs and RetinaNet heads, `modeling.ssd_anchors`
(through the SSD head's target generator) for SSD priors; the threshold is
the matcher's (`rpn_targets.match_threshold`, `anchor_targets.
match_threshold`). Boxes are scaled as the training parser scales them,
without its random jitter.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from official.vision.ops import anchor

from tf_mtdet import families
from tf_mtdet.config import experiment as experiment_config
from tf_mtdet.data import augment
from tf_mtdet.modeling import registry
from tf_mtdet.tools.analysis import confusion

# Bucket edges of sqrt(box area) in model-input pixels.
BUCKET_EDGES = (8, 16, 32, 64, 128, 256, 512)


@dataclasses.dataclass
class AnchorSet:
  """A config's anchors and the IoU that makes one positive.

  Attributes:
    description: What the anchors are and where their settings live.
    threshold: The matcher's positive IoU threshold.
    field: The config field of the threshold.
    anchors: [padded H, W] -> [N, 4] yxyx anchors in input pixels.
    negative_threshold: Below it an anchor is background. Model Garden's
      matchers force each box's best anchor positive whatever its IoU, so a
      box whose best anchor is below this trains on an anchor that is
      background for every other box (0: the matcher has none).
  """
  description: str
  threshold: float
  field: str
  anchors: Callable[[tuple[int, int]], np.ndarray]
  negative_threshold: float = 0.0


def _model_garden_anchors(cfg, field: str) -> Callable:
  generator = anchor.build_anchor_generator(
      min_level=cfg.min_level, max_level=cfg.max_level,
      num_scales=cfg.anchor.num_scales,
      aspect_ratios=list(cfg.anchor.aspect_ratios),
      anchor_size=cfg.anchor.anchor_size)

  def anchors(size):
    try:
      levels = generator(image_size=list(size))
      return np.concatenate([np.reshape(levels[k].numpy(), [-1, 4])
                             for k in sorted(levels, key=int)])
    except (ValueError, TypeError, ZeroDivisionError,
            tf.errors.OpError) as e:
      raise ValueError(f'{field}: cannot build the anchors at input size '
                       f'{list(size)}: {e}') from None

  return anchors


def anchor_set(config: experiment_config.ExperimentConfig) -> AnchorSet:
  """The anchors (or priors) a config trains its dense matcher on.

  Raises:
    ValueError: the config's anchors cannot be built (names the field).
  """
  kind = config.model.type
  cfg = config.family_model
  if kind == 'two_stage':
    return _model_garden_set(cfg, kind, 'RPN anchors', 'rpn_targets')
  if cfg.head.type != 'ssd':
    return _model_garden_set(cfg, kind, 'anchors', 'anchor_targets')
  try:
    targets = registry.targets('dense_head', 'ssd', cfg)
  except (ValueError, TypeError) as e:
    raise ValueError(f'model.{kind}.ssd_anchors: cannot build the priors: '
                     f'{e}') from None

  def priors(size):
    try:
      return targets.priors(list(size)).numpy().reshape([-1, 4])
    except (ValueError, TypeError, tf.errors.OpError) as e:
      raise ValueError(f'model.{kind}.ssd_anchors: cannot build the priors '
                       f'at input size {list(size)}: {e}') from None

  return AnchorSet(
      f'SSD priors (model.{kind}.ssd_anchors: min sizes '
      f'{list(cfg.ssd_anchors.min_sizes)})',
      float(cfg.anchor_targets.match_threshold),
      f'model.{kind}.anchor_targets.match_threshold', priors,
      # No ignore band: below the threshold a prior is background.
      float(cfg.anchor_targets.match_threshold))


def _model_garden_set(cfg, kind: str, what: str, targets: str) -> AnchorSet:
  """Model Garden anchors of `cfg.anchor`, thresholds from `cfg.<targets>`."""
  labeler = getattr(cfg, targets)
  return AnchorSet(
      f'{what} (model.{kind}.anchor: size {cfg.anchor.anchor_size:g}, '
      f'{cfg.anchor.num_scales} scale(s), ratios '
      f'{list(cfg.anchor.aspect_ratios)}, P{cfg.min_level}-P{cfg.max_level})',
      float(labeler.match_threshold),
      f'model.{kind}.{targets}.match_threshold',
      _model_garden_anchors(cfg, f'model.{kind}.anchor'),
      float(labeler.unmatched_threshold))


def _yxyx_to_xywh(boxes: np.ndarray) -> np.ndarray:
  boxes = np.asarray(boxes, np.float64).reshape([-1, 4])
  return np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1],
                   boxes[:, 2] - boxes[:, 0]], axis=1)


def best_iou(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
  """[G] the highest IoU of each [G, 4] yxyx box with [N, 4] yxyx anchors."""
  iou = confusion.box_iou(_yxyx_to_xywh(boxes), _yxyx_to_xywh(anchors))
  return iou.max(axis=1) if iou.shape[1] else np.zeros([iou.shape[0]])


class InputScaler:
  """Original image size -> (scale [2], padded input size), as the training
  parser resizes without random jitter (Model Garden's resize ops)."""

  def __init__(self, config: experiment_config.ExperimentConfig):
    family = families.get(config)
    self._augmenter = augment.Augmenter(config.train_data.parser,
                                        family.stride)
    self._cache = {}

  @property
  def padded_size(self) -> tuple[int, int]:
    """The padded training input size (fixed: the same for every image)."""
    return tuple(self._augmenter.padded_size)

  def __call__(self, height: int, width: int):
    key = (int(height), int(width))
    if key not in self._cache:
      _, info = self._augmenter.preprocess_image(
          tf.zeros([key[0], key[1], 3], tf.uint8))
      info = info.numpy()
      self._cache[key] = (info[2].astype(np.float64), self.padded_size)
    return self._cache[key]


def bucket_label(index: int) -> str:
  edges = (0,) + BUCKET_EDGES
  if index >= len(BUCKET_EDGES):
    return f'>={BUCKET_EDGES[-1]} px'
  return f'{edges[index]}-{edges[index + 1]} px'


def bucket_of(sizes: np.ndarray) -> np.ndarray:
  return np.searchsorted(np.asarray(BUCKET_EDGES), sizes, side='right')


@dataclasses.dataclass
class Coverage:
  """Coverage of a set of boxes.

  Attributes:
    anchors: `AnchorSet.description`.
    threshold: The positive IoU threshold.
    best_ious: [G] best anchor IoU per box.
    sizes: [G] sqrt(area) in input pixels.
  """
  anchors: str
  threshold: float
  best_ious: np.ndarray
  sizes: np.ndarray
  negative_threshold: float = 0.0

  @property
  def covered(self) -> float:
    """Share of boxes at or above the threshold (nan without boxes)."""
    return self.share_at(self.threshold)

  def share_at(self, threshold: float) -> float:
    """Share of boxes whose best anchor reaches `threshold`."""
    if not self.best_ious.size:
      return float('nan')
    return float(np.mean(self.best_ious >= threshold))

  def per_bucket(self, threshold: float | None = None
                 ) -> list[tuple[str, int, float]]:
    """(bucket label, boxes, share whose best anchor reaches `threshold`,
    default the positive one) of the non-empty buckets."""
    threshold = self.threshold if threshold is None else threshold
    buckets = bucket_of(self.sizes)
    rows = []
    for b in range(len(BUCKET_EDGES) + 1):
      inside = buckets == b
      if inside.any():
        rows.append((bucket_label(b), int(inside.sum()),
                     float(np.mean(self.best_ious[inside] >= threshold))))
    return rows

  def as_dict(self) -> dict:
    return {'anchors': self.anchors, 'positive_iou': self.threshold,
            'boxes': int(self.best_ious.size), 'covered': self.covered,
            'negative_iou': self.negative_threshold,
            'above_negative': self.share_at(self.negative_threshold),
            'median_best_iou': (float(np.median(self.best_ious))
                                if self.best_ious.size else None),
            'per_size': [{'size': label, 'boxes': n, 'covered': share}
                         for label, n, share in self.per_bucket()]}

  def format(self) -> str:
    lines = [f'anchor coverage: {self.anchors}, positive IoU >= '
             f'{self.threshold:g}: {100 * self.covered:.1f}% of '
             f'{self.best_ious.size} boxes' + (
                 f' (median best IoU {np.median(self.best_ious):.2f}; '
                 f'{100 * self.share_at(self.negative_threshold):.1f}% reach '
                 f'the negative threshold {self.negative_threshold:g})'
                 if self.best_ious.size else '')]
    for label, n, share in self.per_bucket():
      lines.append(f'  {label:>12}: {100 * share:5.1f}% of {n}')
    return '\n'.join(lines)


def coverage(anchors: AnchorSet, scaler: Callable,
             images: Sequence[tuple[int, int, np.ndarray]]) -> Coverage:
  """Coverage of boxes given per image.

  Args:
    anchors: The config's anchors.
    scaler: (height, width) -> (scale [2], padded size), an `InputScaler`.
    images: (height, width, [G, 4] yxyx boxes in original pixels) per image.

  Returns:
    The coverage.
  """
  cache = {}
  ious, sizes = [], []
  for height, width, boxes in images:
    boxes = np.asarray(boxes, np.float64).reshape([-1, 4])
    if not boxes.shape[0]:
      continue
    scale, padded = scaler(height, width)
    if padded not in cache:
      cache[padded] = anchors.anchors(padded)
    scaled = boxes * np.tile(scale, 2)
    ious.append(best_iou(scaled, cache[padded]))
    sizes.append(np.sqrt(np.maximum(scaled[:, 2] - scaled[:, 0], 0) *
                         np.maximum(scaled[:, 3] - scaled[:, 1], 0)))
  return Coverage(anchors.description, anchors.threshold,
                  np.concatenate(ious) if ious else np.zeros([0]),
                  np.concatenate(sizes) if sizes else np.zeros([0]),
                  anchors.negative_threshold)
