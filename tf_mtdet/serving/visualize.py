"""Draws detections or ground truth (boxes, translucent masks, labels) and
semantic class maps on images.

Numpy and OpenCV only; TensorFlow is imported only to paste per-box masks
(Model Garden's `mask_ops.paste_instance_masks`) when no full-image masks are
given.
"""

import colorsys
from typing import Any, Mapping, Optional, Tuple

import cv2
import numpy as np

_MASK_ALPHA = 0.45
_GOLDEN_RATIO = 0.618033988749895


def class_color(class_id: int) -> Tuple[int, int, int]:
  """A deterministic RGB colour per class, far from its neighbours' hues."""
  hue = (int(class_id) * _GOLDEN_RATIO) % 1.0
  r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
  return int(r * 255), int(g * 255), int(b * 255)


def full_image_masks(detections: Mapping[str, Any], height: int,
                     width: int) -> Optional[np.ndarray]:
  """[n, height, width] uint8 0/1 masks of the detections, or None.

  Uses `full_masks` when present (cropped to the image), else pastes the
  per-box `masks` probabilities into their `boxes` with Model Garden's
  `paste_instance_masks` (threshold 0.5).

  Args:
    detections: `boxes` [n, 4] ymin, xmin, ymax, xmax in image pixels, and
      `full_masks` [n, >=height, >=width] or `masks` [n, mh, mw].
    height: Image height.
    width: Image width.
  """
  full = detections.get('full_masks')
  if full is not None:
    return (np.asarray(full)[:, :height, :width] > 0).astype(np.uint8)
  masks = detections.get('masks')
  if masks is None:
    return None
  masks = np.asarray(masks, np.float32)
  boxes = np.asarray(detections['boxes'], np.float32).reshape(-1, 4)
  if not len(masks):
    return np.zeros((0, height, width), np.uint8)
  # pylint: disable-next=g-import-not-at-top
  from official.vision.ops import mask_ops
  # Model Garden's paster takes [x, y, width, height] boxes.
  xywh = np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1],
                   boxes[:, 2] - boxes[:, 0]], axis=-1)
  return mask_ops.paste_instance_masks(masks, xywh, height, width)


def draw_detections(image: np.ndarray,
                    detections: Mapping[str, Any],
                    score_threshold: float = 0.0) -> np.ndarray:
  """Draws boxes, translucent per-instance masks and labels.

  Args:
    image: [H, W, 3] uint8 RGB.
    detections: `boxes` [n, 4] (ymin, xmin, ymax, xmax, original pixels),
      `scores` [n], `classes` [n], optional `class_names` [n] and masks
      (`full_masks` [n, H, W] 0/1, or per-box `masks` [n, mh, mw]
      probabilities), as `predict.predict_image` returns them. Without
      `scores` (ground truth) every box is drawn and labels have no score.
    score_threshold: Detections below it are not drawn.

  Returns:
    A new [H, W, 3] uint8 image.

  Raises:
    ValueError: not an [H, W, 3] uint8 image.
  """
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f'draw_detections needs an [H, W, 3] uint8 image, got '
                     f'{image.dtype} {list(image.shape)}')
  height, width = image.shape[:2]
  canvas = image.copy()
  boxes = np.asarray(detections['boxes'], np.float32).reshape(-1, 4)
  show_scores = detections.get('scores') is not None
  scores = (np.asarray(detections['scores'], np.float32).reshape(-1)
            if show_scores else np.ones(len(boxes), np.float32))
  classes = np.asarray(detections['classes']).reshape(-1).astype(np.int64)
  names = detections.get('class_names')
  names = [''] * len(scores) if names is None else list(names)
  keep = np.flatnonzero(scores >= score_threshold)
  masks = full_image_masks(
      {k: (np.asarray(v)[keep] if k in ('boxes', 'masks', 'full_masks') else v)
       for k, v in detections.items() if v is not None}, height, width)

  # Masks first, lowest score first so better instances end up on top.
  if masks is not None:
    for i in reversed(range(len(keep))):
      color = np.array(class_color(classes[keep[i]]), np.float32)
      region = masks[i].astype(bool)
      canvas[region] = np.round(
          (1 - _MASK_ALPHA) * canvas[region] + _MASK_ALPHA * color
      ).astype(np.uint8)

  thickness = max(1, round(min(height, width) / 250))
  font_scale = max(0.35, min(height, width) / 800)
  # Boxes and labels also lowest score first: where boxes overlap (SSD's
  # per-class NMS keeps one box per class on an object) the best label is
  # the one left readable.
  for i in keep[np.argsort(scores[keep], kind='stable')]:
    color = class_color(classes[i])
    ymin, xmin, ymax, xmax = np.round(boxes[i]).astype(int)
    cv2.rectangle(canvas, (int(xmin), int(ymin)), (int(xmax), int(ymax)),
                  color, thickness)
    name = names[i] if i < len(names) else ''
    if isinstance(name, bytes):
      name = name.decode('utf-8', 'replace')
    label = f'{name or classes[i]}' + (f' {scores[i]:.2f}'
                                        if show_scores else '')
    (text_w, text_h), baseline = cv2.getTextSize(
        label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    # Above the box when there is room, else just inside its top.
    top = ymin - text_h - baseline if ymin - text_h - baseline >= 0 else ymin
    cv2.rectangle(canvas, (int(xmin), int(top)),
                  (int(xmin) + text_w, int(top) + text_h + baseline), color,
                  cv2.FILLED)
    text_color = (0, 0, 0) if sum(color) > 382 else (255, 255, 255)
    cv2.putText(canvas, label, (int(xmin), int(top) + text_h),
                cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_color, 1,
                cv2.LINE_AA)
  return canvas


def draw_semantic(image: np.ndarray, semantic: np.ndarray,
                  ignore_label: int = 255,
                  alpha: float = _MASK_ALPHA) -> np.ndarray:
  """Tints every pixel with its semantic class's colour.

  Class 0 (background) is left as is, `ignore_label` pixels are tinted grey;
  other classes get `class_color`, the colour `draw_detections` gives their
  instances.

  Args:
    image: [H, W, 3] uint8 RGB.
    semantic: [H, W] integer class map.
    ignore_label: The "not labelled" value (padding, crowd regions).
    alpha: Weight of the class colour.

  Returns:
    A new [H, W, 3] uint8 image.

  Raises:
    ValueError: the shapes do not match.
  """
  image = np.asarray(image)
  semantic = np.asarray(semantic)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f'draw_semantic needs an [H, W, 3] uint8 image, got '
                     f'{image.dtype} {list(image.shape)}')
  if semantic.shape != image.shape[:2]:
    raise ValueError(f'semantic map {list(semantic.shape)} does not match the '
                     f'image {list(image.shape[:2])}')
  canvas = image.copy()
  for value in np.unique(semantic):
    if value == 0:
      continue
    color = (np.array((128, 128, 128), np.float32) if value == ignore_label
             else np.array(class_color(int(value)), np.float32))
    region = semantic == value
    canvas[region] = np.round(
        (1 - alpha) * canvas[region] + alpha * color).astype(np.uint8)
  return canvas
