"""SSD's training augmentation (Liu et al., SSD section 2.2 and its Caffe
data layer): photometric distortion, zoom-out (expand) up to `max_zoom_out`
x, an IoU-constrained random crop, on the decoded image. Boxes, classes and
the semantic map move together; the flip stays the shared augmenter's.

Runs before the shared augmentation (`augment.Augmenter` with
`ssd_augmentation`), so the resized output, `image_info` and every target
see the augmented image as if it were the original.
"""

from typing import Optional

import tensorflow as tf

from official.vision.ops import preprocess_ops

# SSD samples a minimum coverage per crop: no crop, 0.1 ... 0.9, or any.
_MIN_OVERLAPS = (-1.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.0)


def photometric_distortion(image: tf.Tensor) -> tf.Tensor:
  """Random brightness (+-32), contrast, saturation (x0.5-1.5) and hue
  (+-18 degrees), each applied with probability 0.5.

  Args:
    image: [H, W, 3] uint8.

  Returns:
    [H, W, 3] uint8.
  """
  x = tf.image.convert_image_dtype(image, tf.float32)
  coin = lambda: tf.random.uniform([]) < 0.5
  x = tf.cond(coin(), lambda: tf.image.random_brightness(x, 32.0 / 255.0),
              lambda: x)
  x = tf.cond(coin(), lambda: tf.image.random_contrast(x, 0.5, 1.5),
              lambda: x)
  x = tf.cond(coin(), lambda: tf.image.random_saturation(x, 0.5, 1.5),
              lambda: x)
  x = tf.cond(coin(), lambda: tf.image.random_hue(x, 18.0 / 360.0),
              lambda: x)
  return tf.image.convert_image_dtype(tf.clip_by_value(x, 0.0, 1.0), tf.uint8,
                                      saturate=True)


def zoom_out(image: tf.Tensor, boxes: tf.Tensor,
             semantic: Optional[tf.Tensor], max_ratio: float,
             ignore_label: int = 255):
  """Places the image at a random spot of a canvas up to `max_ratio` times
  larger, filled with the mean pixel (semantic: `ignore_label`).

  Args:
    image: [H, W, 3] uint8.
    boxes: [N, 4] normalized yxyx.
    semantic: [H, W] class map or None.
    max_ratio: Largest canvas / image side ratio (>= 1).
    ignore_label: Semantic label of the canvas.

  Returns:
    (image, boxes, semantic) on the canvas, boxes normalized to it.
  """
  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  ratio = tf.random.uniform([], 1.0, max_ratio)
  new_h = tf.cast(tf.cast(height, tf.float32) * ratio, tf.int32)
  new_w = tf.cast(tf.cast(width, tf.float32) * ratio, tf.int32)
  top = tf.random.uniform([], 0, new_h - height + 1, dtype=tf.int32)
  left = tf.random.uniform([], 0, new_w - width + 1, dtype=tf.int32)
  mean = tf.constant(preprocess_ops.MEAN_RGB, tf.float32)
  canvas = tf.image.pad_to_bounding_box(
      tf.cast(image, tf.float32) - mean, top, left, new_h, new_w) + mean
  image = tf.cast(tf.round(canvas), tf.uint8)
  if semantic is not None:
    shifted = tf.cast(semantic, tf.int32)[..., tf.newaxis] - ignore_label
    semantic = tf.cast(tf.image.pad_to_bounding_box(
        shifted, top, left, new_h, new_w)[..., 0] + ignore_label,
                       semantic.dtype)
  size = tf.cast(tf.stack([height, width, height, width]), tf.float32)
  offset = tf.cast(tf.stack([top, left, top, left]), tf.float32)
  new_size = tf.cast(tf.stack([new_h, new_w, new_h, new_w]), tf.float32)
  boxes = (boxes * size + offset) / new_size
  return image, boxes, semantic


def random_crop(image: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor,
                semantic: Optional[tf.Tensor], extra: Optional[tf.Tensor] = None,
                min_scale: float = 0.3, max_attempts: int = 50):
  """SSD's crop: a minimum coverage drawn from {none, 0.1, 0.3, 0.5, 0.7,
  0.9, any}, then a patch (side scale in [min_scale, 1], aspect ratio in
  [0.5, 2]) covering some box at least that much. Boxes whose centre falls
  in the patch are kept, clipped to it; a patch that would keep no box (when
  there was one) is not taken.

  Args:
    image: [H, W, 3].
    boxes: [N, 4] normalized yxyx.
    classes: [N].
    semantic: [H, W] class map or None.
    extra: [N, ...] per-box values kept with the boxes (e.g. flags), or None.
    min_scale: Smallest patch side / image side.
    max_attempts: Patches tried by `sample_distorted_bounding_box`.

  Returns:
    (image, boxes, classes, semantic, extra) of the patch.
  """
  overlap = tf.gather(tf.constant(_MIN_OVERLAPS),
                      tf.random.uniform([], 0, len(_MIN_OVERLAPS), tf.int32))
  begin, size, window = tf.image.sample_distorted_bounding_box(
      tf.shape(image), bounding_boxes=tf.reshape(boxes, [1, -1, 4]),
      min_object_covered=tf.maximum(overlap, 0.0),
      aspect_ratio_range=(0.5, 2.0), area_range=(min_scale**2, 1.0),
      max_attempts=max_attempts, use_image_if_no_bounding_boxes=True)
  window = window[0, 0]
  centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
  inside = tf.reduce_all((centres > window[:2]) & (centres < window[2:]),
                         axis=1)
  num_boxes = tf.shape(boxes)[0]
  take = tf.logical_and(
      overlap >= 0.0,
      tf.logical_or(num_boxes == 0, tf.reduce_any(inside)))

  def crop():
    keep = tf.where(inside)[:, 0]
    extent = tf.tile(window[2:] - window[:2], [2])
    cropped = (tf.gather(boxes, keep) - tf.tile(window[:2], [2])) / extent
    result = [tf.slice(image, begin, size), tf.clip_by_value(cropped, 0.0, 1.0),
              tf.gather(classes, keep)]
    result.append(None if semantic is None else
                  tf.slice(semantic, begin[:2], size[:2]))
    result.append(None if extra is None else tf.gather(extra, keep))
    return tuple(result)

  def no_crop():
    return image, boxes, classes, semantic, extra

  # tf.cond needs like structures: None parts stay out of it.
  if semantic is None and extra is None:
    image, boxes, classes = tf.cond(take, lambda: crop()[:3],
                                    lambda: no_crop()[:3])
    return image, boxes, classes, None, None
  if extra is None:
    image, boxes, classes, semantic = tf.cond(
        take, lambda: crop()[:4], lambda: no_crop()[:4])
    return image, boxes, classes, semantic, None
  if semantic is None:
    pick = lambda r: (r[0], r[1], r[2], r[4])
    image, boxes, classes, extra = tf.cond(take, lambda: pick(crop()),
                                           lambda: pick(no_crop()))
    return image, boxes, classes, None, extra
  return tf.cond(take, crop, no_crop)


def ssd_augment(image: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor,
                semantic: Optional[tf.Tensor] = None,
                extra: Optional[tf.Tensor] = None,
                max_zoom_out: float = 4.0, photometric: bool = True,
                ignore_label: int = 255):
  """Photometric distortion, zoom-out (probability 0.5), random crop.

  Args:
    image: [H, W, 3] uint8 decoded image.
    boxes: [N, 4] normalized yxyx.
    classes: [N].
    semantic: [H, W] class map or None.
    extra: [N, ...] per-box values moved with the boxes, or None.
    max_zoom_out: Largest zoom-out ratio (1: none).
    photometric: Apply the photometric distortion.
    ignore_label: Semantic label of the zoom-out canvas.

  Returns:
    (image [H', W', 3] uint8, boxes [M, 4] normalized to it, classes [M],
    semantic [H', W'] or None, extra [M, ...] or None).
  """
  if photometric:
    image = photometric_distortion(image)
  if max_zoom_out > 1.0:
    def expand():
      return zoom_out(image, boxes, semantic, max_zoom_out, ignore_label)
    def keep():
      return image, boxes, semantic
    if semantic is None:
      image, boxes = tf.cond(tf.random.uniform([]) < 0.5,
                             lambda: expand()[:2], lambda: keep()[:2])
    else:
      image, boxes, semantic = tf.cond(tf.random.uniform([]) < 0.5, expand,
                                       keep)
  return random_crop(image, boxes, classes, semantic, extra)
