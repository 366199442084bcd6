"""SSD augmentation: boxes, classes and the semantic map stay aligned with
the image through zoom-out and crops; crops never drop every box."""

import numpy as np
import pytest
import tensorflow as tf

from tf_mtdet.data import ssd_augment


def _scene():
  """100x120 image: object 1 (value 100) and object 2 (value 200) painted
  in their boxes, in the image and in the semantic map."""
  image = np.zeros([100, 120, 3], np.uint8)
  semantic = np.zeros([100, 120], np.uint8)
  boxes = np.array([[10, 10, 50, 60], [40, 70, 90, 110]], np.float32)
  for cls, (y0, x0, y1, x1) in zip((1, 2), boxes.astype(int)):
    image[y0:y1, x0:x1] = 100 * cls
    semantic[y0:y1, x0:x1] = cls
  norm = boxes / np.array([100, 120, 100, 120], np.float32)
  return (tf.constant(image), tf.constant(norm), tf.constant([1, 2]),
          tf.constant(semantic))


@pytest.mark.parametrize('seed', range(12))
def test_boxes_classes_and_semantic_move_with_the_image(seed):
  tf.random.set_seed(seed)
  image, boxes, classes, semantic = _scene()
  out = ssd_augment.ssd_augment(image, boxes, classes, semantic,
                                extra=tf.constant([7, 8]), photometric=False)
  image, boxes, classes, semantic, extra = (t.numpy() for t in out)
  height, width = semantic.shape
  assert image.shape[:2] == (height, width)
  assert len(boxes) >= 1 and len(boxes) == len(classes) == len(extra)
  assert (extra == classes + 6).all()  # per-box values follow their boxes
  pixels = boxes * np.array([height, width, height, width])
  for (y0, x0, y1, x1), cls in zip(pixels, classes):
    # The box interior (clipped boxes included) is its object everywhere.
    inner = (slice(int(np.ceil(y0)) + 1, int(np.floor(y1)) - 1),
             slice(int(np.ceil(x0)) + 1, int(np.floor(x1)) - 1))
    if semantic[inner].size:
      assert (semantic[inner] == cls).all(), (seed, cls)
      assert (image[inner] == 100 * cls).all(), (seed, cls)
  # Outside the objects: background, or the zoom-out canvas (ignored).
  assert set(np.unique(semantic)) <= {0, 1, 2, 255}
  canvas = semantic == 255
  if canvas.any():
    mean = np.round(np.array([0.485, 0.456, 0.406]) * 255)
    np.testing.assert_allclose(image[canvas], np.broadcast_to(
        mean, image[canvas].shape), atol=1)


def test_zoom_out_places_the_image_on_a_larger_canvas():
  tf.random.set_seed(3)
  image, boxes, _, semantic = _scene()
  out_image, out_boxes, out_semantic = ssd_augment.zoom_out(
      image, boxes, semantic, max_ratio=4.0)
  height, width = out_semantic.shape
  assert 100 <= height <= 400 and 120 <= width <= 480
  # Object 1's box, in canvas pixels, still frames value 1 / pixel 100.
  y0, x0, y1, x1 = np.round(out_boxes.numpy()[0] *
                            [height, width, height, width]).astype(int)
  assert (out_semantic.numpy()[y0:y1, x0:x1] == 1).all()
  assert (out_image.numpy()[y0:y1, x0:x1] == 100).all()
  assert (out_semantic.numpy() == 255).sum() == height * width - 100 * 120


def test_a_crop_that_would_drop_every_box_is_not_taken():
  image = tf.zeros([200, 200, 3], tf.uint8)
  tiny = tf.constant([[0.0, 0.0, 0.03, 0.03]])  # 6x6 pixels in a corner
  for seed in range(30):
    tf.random.set_seed(seed)
    _, boxes, classes, _, _ = ssd_augment.random_crop(
        image, tiny, tf.constant([1]), None)
    assert boxes.shape[0] == 1 and classes.numpy().tolist() == [1]
  # No boxes at all: crops are fine.
  _, boxes, classes, _, _ = ssd_augment.random_crop(
      image, tf.zeros([0, 4]), tf.zeros([0], tf.int32), None)
  assert boxes.shape[0] == 0


def test_photometric_distortion_keeps_shape_and_dtype():
  tf.random.set_seed(0)
  image = tf.cast(tf.random.uniform([20, 30, 3], 0, 255, tf.int32), tf.uint8)
  out = ssd_augment.photometric_distortion(image)
  assert out.shape == image.shape and out.dtype == tf.uint8


@pytest.mark.parametrize('seed', range(4))
def test_augmenter_option_keeps_the_semantic_map_on_the_boxes(seed):
  """Through the shared augmenter (SSD augmentation, flip, resize, pad)."""
  from tf_mtdet.config import data as data_config  # pylint: disable=g-import-not-at-top
  from tf_mtdet.data import augment  # pylint: disable=g-import-not-at-top
  tf.random.set_seed(seed)
  config = data_config.Augmentation(output_size=[96, 96],
                                    ssd_augmentation=True,
                                    photometric_distortion=False)
  augmenter = augment.Augmenter(config, stride=1, needs={augment.SEMANTIC})
  image, boxes, classes, semantic = _scene()
  example = augmenter.train({
      'image': image, 'groundtruth_boxes': boxes,
      'groundtruth_classes': classes, 'groundtruth_semantic': semantic,
      'groundtruth_is_crowd': tf.constant([False, False])})
  out_semantic = example['semantic'].numpy()
  assert out_semantic.shape == (96, 96)
  assert len(example['boxes']) >= 1
  for (y0, x0, y1, x1), cls in zip(example['boxes'].numpy(),
                                   example['classes'].numpy()):
    # Nearest-neighbour resize: stay 2 pixels inside the box.
    inner = out_semantic[int(np.ceil(y0)) + 2:int(np.floor(y1)) - 2,
                         int(np.ceil(x0)) + 2:int(np.floor(x1)) - 2]
    if inner.size:
      assert (inner == cls).all(), (seed, cls, np.unique(inner))


def test_augmenter_refuses_ssd_augmentation_with_masks():
  from tf_mtdet.config import data as data_config  # pylint: disable=g-import-not-at-top
  from tf_mtdet.data import augment  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match='instance masks'):
    augment.Augmenter(data_config.Augmentation(ssd_augmentation=True), 1,
                      needs={augment.MASKS})
