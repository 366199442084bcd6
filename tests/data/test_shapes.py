"""Tests for the generated COCO shapes data set (data/builder/shapes.py)."""

import itertools
import json
import os

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
import pytest

from tf_mtdet.data.builder import shapes

# pycocotools' decode trips a NumPy 2 copy-keyword deprecation; not ours.
pytestmark = pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning')

_NUM_IMAGES = 50
_SEED = 0
_SIZE = (256, 320)  # (height, width); deliberately not square.


def _files(root):
  """Returns {relative path: bytes} for every file under root."""
  out = {}
  for dirpath, _, names in os.walk(root):
    for name in names:
      path = os.path.join(dirpath, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, root)] = f.read()
  return out


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  out_dir = str(tmp_path_factory.mktemp('shapes') / 'ds')
  summary = shapes.make_shapes(out_dir, _NUM_IMAGES, seed=_SEED,
                               image_size=_SIZE)
  with open(os.path.join(out_dir, 'annotations.json'), encoding='utf-8') as f:
    data = json.load(f)
  by_image = {im['id']: [] for im in data['images']}
  for ann in data['annotations']:
    by_image[ann['image_id']].append(ann)
  return {'out_dir': out_dir, 'summary': summary, 'data': data,
          'by_image': by_image}


def _rendered(index, size=_SIZE):
  """Re-renders image `index` of the fixture data set, masks included."""
  return shapes._render_image(shapes._image_rng(_SEED, index), size, 1, 6)


def test_images_listed_exist_and_decode_to_stated_size(dataset):
  data, out_dir = dataset['data'], dataset['out_dir']
  assert [im['id'] for im in data['images']] == list(
      range(1, _NUM_IMAGES + 1))
  assert sorted(os.listdir(os.path.join(out_dir, 'images'))) == sorted(
      im['file_name'] for im in data['images'])
  for im in data['images']:
    assert im['file_name'] == f"shapes_{im['id'] - 1:06d}.jpg"
    assert (im['height'], im['width']) == _SIZE
    with Image.open(os.path.join(out_dir, 'images', im['file_name'])) as img:
      assert img.format == 'JPEG'
      assert img.mode == 'RGB'
      assert img.size == (_SIZE[1], _SIZE[0])  # PIL gives (width, height).


def test_summary_matches_json(dataset):
  summary, data = dataset['summary'], dataset['data']
  anns = data['annotations']
  assert summary['num_images'] == _NUM_IMAGES
  assert summary['num_annotations'] == len(anns)
  assert [a['id'] for a in anns] == list(range(1, len(anns) + 1))
  counts = {name: sum(a['category_id'] == k + 1 for a in anns)
            for k, name in enumerate(shapes.SHAPE_CLASSES)}
  assert summary['per_class_counts'] == counts
  assert sum(summary['per_size_counts'].values()) == len(anns)
  assert os.path.isfile(summary['annotations_file'])
  assert os.path.isdir(summary['images_dir'])
  assert data['info']['seed'] == _SEED
  assert data['info']['image_size'] == list(_SIZE)


def test_categories_and_every_class_present(dataset):
  data = dataset['data']
  assert data['categories'] == [
      {'id': k + 1, 'name': name, 'supercategory': 'shape'}
      for k, name in enumerate(shapes.SHAPE_CLASSES)]
  assert len(set(shapes.SHAPE_CLASSES)) >= 3
  assert all(dataset['summary']['per_class_counts'][n] >= 10
             for n in shapes.SHAPE_CLASSES)


def test_polygons_match_independently_rendered_visible_masks(dataset):
  data, out_dir = dataset['data'], dataset['out_dir']
  # pycocotools' own loader, as training and evaluation will read the file.
  coco = COCO(os.path.join(out_dir, 'annotations.json'))
  for im in data['images']:
    rendered = _rendered(im['id'] - 1)
    anns = dataset['by_image'][im['id']]
    assert len(anns) == len(rendered.instances) >= 1
    for ann, inst in zip(anns, rendered.instances):
      assert ann['category_id'] == inst.category_id
      for poly in ann['segmentation']:
        assert len(poly) >= 6 and len(poly) % 2 == 0
      got = coco.annToMask(ann).astype(bool)
      want = inst.visible_mask
      iou = (got & want).sum() / (got | want).sum()
      assert iou >= 0.9, (im['id'], ann['id'], iou)


def test_visible_masks_show_their_shape_and_match_the_jpeg(dataset):
  out_dir = dataset['out_dir']
  for index in range(10):
    rendered = _rendered(index)
    owned = np.zeros(_SIZE, dtype=int)
    for inst in rendered.instances:
      owned += inst.visible_mask
      # Visible pixels carry the shape's own fill colour (plus noise), so the
      # mask is what the image shows, not merely what was drawn.
      diff = rendered.image[inst.visible_mask].astype(float) - inst.color
      assert np.abs(diff.mean(axis=0)).max() < 8.0
    assert owned.max() <= 1  # Visible parts of instances never overlap.
    with Image.open(os.path.join(out_dir, 'images',
                                 f'shapes_{index:06d}.jpg')) as img:
      decoded = np.asarray(img.convert('RGB'), dtype=float)
    assert np.abs(decoded - rendered.image).mean() < 6.0


def test_drop_rules_hold_and_are_exercised(dataset):
  dropped = 0
  for index in range(_NUM_IMAGES):
    rendered = _rendered(index)
    dropped += rendered.num_dropped
    for inst in rendered.instances:
      visible = int(inst.visible_mask.sum())
      assert visible >= 20
      assert visible >= 0.4 * inst.drawn_area
  assert dropped >= 1
  assert dataset['summary']['num_dropped'] == dropped


def test_bbox_and_area_come_from_segmentation_and_lie_inside(dataset):
  data = dataset['data']
  height, width = _SIZE
  for ann in data['annotations']:
    rle = mask_utils.merge(
        mask_utils.frPyObjects(ann['segmentation'], height, width))
    np.testing.assert_array_equal(ann['bbox'], mask_utils.toBbox(rle))
    assert ann['area'] == float(mask_utils.area(rle))
    assert ann['area'] >= 20
    x, y, w, h = ann['bbox']
    assert w >= 1 and h >= 1
    assert x >= 0 and y >= 0 and x + w <= width and y + h <= height
    assert ann['iscrowd'] == 0


def test_sizes_span_coco_ranges_and_instances_overlap(dataset):
  areas = np.array([a['area'] for a in dataset['data']['annotations']])
  assert (areas < 32**2).sum() >= 5
  assert ((areas >= 32**2) & (areas < 96**2)).sum() >= 5
  assert (areas >= 96**2).sum() >= 5
  overlapping = 0
  for anns in dataset['by_image'].values():
    for a, b in itertools.combinations(anns, 2):
      ax, ay, aw, ah = a['bbox']
      bx, by, bw, bh = b['bbox']
      overlapping += (min(ax + aw, bx + bw) > max(ax, bx) and
                      min(ay + ah, by + bh) > max(ay, by))
  assert overlapping >= 5


def test_background_is_not_uniform(dataset):
  spreads = []
  for index in range(10):
    rendered = _rendered(index)
    background = np.ones(_SIZE, dtype=bool)
    for inst in rendered.instances:
      background &= ~inst.visible_mask
    # Blur away the pixel noise; what varies then is the gradient. Erode the
    # background so the blur does not reach in colour from the shapes.
    smooth = cv2.blur(rendered.image.astype(np.float32), (15, 15))
    inner = cv2.erode(background.astype(np.uint8), np.ones((17, 17), np.uint8))
    spreads.append(np.ptp(smooth[inner.astype(bool)], axis=0).max())
  assert np.median(spreads) > 40.0


def test_json_is_canonical(dataset):
  path = os.path.join(dataset['out_dir'], 'annotations.json')
  with open(path, 'rb') as f:
    raw = f.read()
  assert raw == json.dumps(dataset['data'], sort_keys=True,
                           separators=(',', ':')).encode('utf-8')


def test_same_arguments_give_identical_bytes_other_seed_differs(tmp_path):
  def run(name, seed, num_images=4):
    summary = shapes.make_shapes(str(tmp_path / name), num_images, seed=seed,
                                 image_size=(96, 128))
    return _files(summary['out_dir'])

  a, b, c = run('a', 3), run('b', 3), run('c', 4)
  assert len(a) == 5 and a == b
  assert a.keys() == c.keys()
  assert all(a[k] != c[k] for k in a)  # Every image and the JSON change.
  # Image i depends only on (seed, i): a longer run extends a shorter one.
  d = run('d', 3, num_images=6)
  assert all(d[k] == a[k] for k in a if k.endswith('.jpg'))


def test_nonempty_out_dir_raises_and_is_left_alone(tmp_path):
  out_dir = tmp_path / 'taken'
  out_dir.mkdir()
  (out_dir / 'keep.txt').write_text('mine')
  with pytest.raises(FileExistsError, match='taken'):
    shapes.make_shapes(str(out_dir), 2)
  assert os.listdir(out_dir) == ['keep.txt']
  assert sorted(os.listdir(tmp_path)) == ['taken']  # No temp dir left.


def test_empty_out_dir_is_filled(tmp_path):
  out_dir = tmp_path / 'empty'
  out_dir.mkdir()
  summary = shapes.make_shapes(str(out_dir), 2, image_size=(64, 64))
  assert sorted(os.listdir(out_dir)) == ['annotations.json', 'images']
  assert summary['num_images'] == 2
  assert sorted(os.listdir(tmp_path)) == ['empty']


def test_failure_midway_leaves_no_output(tmp_path, monkeypatch):
  written = []

  def flaky_write(path, image):
    if len(written) == 2:
      raise OSError('disk full')
    written.append(path)
    Image.fromarray(image).save(path, format='JPEG')

  monkeypatch.setattr(shapes, '_write_jpeg', flaky_write)
  with pytest.raises(OSError, match='disk full'):
    shapes.make_shapes(str(tmp_path / 'out'), 5, image_size=(64, 64))
  assert len(written) == 2
  assert os.listdir(tmp_path) == []


def test_mask_to_polygons_round_trips_holes_and_parts():
  mask = np.zeros((40, 50), dtype=bool)
  yy, xx = np.mgrid[:40, :50]
  mask |= (yy - 20)**2 + (xx - 18)**2 <= 14**2  # Disc ...
  mask &= ~((abs(yy - 20) <= 4) & (abs(xx - 18) <= 4))  # ... with a hole,
  mask[18:21, 17:20] = True  # an island inside the hole,
  mask[5:8, 40:49] = True  # a separate part,
  mask[30, 45] = True  # and a single pixel.
  polygons = shapes._mask_to_polygons(mask)
  assert len(polygons) == 4 and all(len(p) >= 6 for p in polygons)
  rle = mask_utils.merge(mask_utils.frPyObjects(polygons, 40, 50))
  np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)


@pytest.mark.parametrize('kwargs', [
    {'num_images': 0},
    {'num_images': 2, 'seed': -1},
    {'num_images': 2, 'image_size': (16, 64)},
    {'num_images': 2, 'min_shapes_per_image': 3, 'max_shapes_per_image': 2},
])
def test_bad_arguments_raise_before_writing(tmp_path, kwargs):
  with pytest.raises(ValueError):
    shapes.make_shapes(str(tmp_path / 'out'), **kwargs)
  assert os.listdir(tmp_path) == []
