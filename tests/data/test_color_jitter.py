"""The shared colour-jitter option: photometric only (boxes unchanged), off by
default, and the DATNet configs turn it on (the paper's Sec. 4 default)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests import conftest as root
from tf_mtdet.config import data as data_config
from tf_mtdet.config import experiment
from tf_mtdet.data import augment


def _example():
  image = np.tile(np.linspace(40, 200, 32, dtype=np.float32)[None, :, None],
                  [32, 1, 3])
  image[..., 1] *= 0.5  # coloured, so saturation changes it too
  return {'image': tf.constant(image.astype(np.uint8)),
          'groundtruth_classes': tf.constant([1]),
          'groundtruth_boxes': tf.constant([[0.25, 0.25, 0.75, 0.5]]),
          'groundtruth_is_crowd': tf.constant([False])}


def _augment(color_jitter):
  config = data_config.Augmentation(output_size=[32, 32], aug_rand_hflip=False,
                                    color_jitter=color_jitter)
  return augment.Augmenter(config, stride=32).train(_example())


def test_color_jitter_changes_pixels_not_boxes():
  assert data_config.Augmentation().color_jitter == 0.0  # off by default
  tf.random.set_seed(1)
  plain, other_plain = _augment(0.0), _augment(0.0)
  np.testing.assert_array_equal(plain['image'], other_plain['image'])
  jittered = [_augment(0.4) for _ in range(3)]
  for example in jittered:
    np.testing.assert_array_equal(example['boxes'], plain['boxes'])
    assert np.abs(example['image'] - plain['image']).max() > 0.01
  assert np.abs(jittered[0]['image'] - jittered[1]['image']).max() > 0.01
  with pytest.raises(ValueError, match='color_jitter'):
    data_config.Augmentation(color_jitter=-0.1)


def test_datnet_configs_jitter_colours():
  folder = os.path.join(root.REPO_ROOT, 'configs', 'datnet')
  for name in ('datnet_light_r50_fpn_1x_coco', 'mask_rcnn_r50_fpn_1x_coco',
               'datnet_light_r50_fpn_box_masks_voc0712', 'datnet_tiny_shapes'):
    config = experiment.load_config(os.path.join(folder, name + '.yaml'))
    assert config.train_data.parser.color_jitter == 0.4, name
  baseline = experiment.load_config(os.path.join(
      root.REPO_ROOT, 'configs', 'mask_rcnn', 'mask_rcnn_r50_fpn_1x_coco.yaml'))
  assert baseline.train_data.parser.color_jitter == 0.0
