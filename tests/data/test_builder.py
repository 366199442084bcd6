"""Dataset builder: real data sets, bad inputs, determinism, atomic output."""

import glob
import hashlib
import io
import json
import os
import shutil

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
import pytest
import tensorflow as tf

from official.vision.dataloaders import tf_example_decoder
from tests import conftest
from tf_mtdet import cli
from tf_mtdet.data import decoder as decoder_lib
from tf_mtdet.data.builder import encode
from tf_mtdet.data.builder import png
from tf_mtdet.data.builder import records


def _build(*args: str) -> int:
  return cli.main(['build-tfrecord', '--quiet', *args])


def _files(directory: str) -> list[str]:
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def _examples(prefix: str) -> list[tf.train.Example]:
  out = []
  for path in sorted(glob.glob(prefix + '-*.tfrecord')):
    for raw in tf.data.TFRecordDataset(path):
      out.append(raw.numpy())
  return out


# --------------------------------------------------------------- coco128 ----
@pytest.fixture(scope='module')
def coco128_build(tmp_path_factory):
  data = conftest.shared_path('coco128')
  prefix = str(tmp_path_factory.mktemp('coco128') / 'train')
  code = _build('--format', 'coco',
                '--annotations', os.path.join(data, 'annotations',
                                              'instances.json'),
                '--images', os.path.join(data, 'images'),
                '--output', prefix, '--num-shards', '3', '--num-workers', '2',
                '--include-masks', '--semantic')
  assert code == 0
  return data, prefix


def test_coco128_counts_and_outputs(coco128_build):
  _, prefix = coco128_build
  summary = json.load(open(prefix + '-summary.json'))
  assert summary['images'] == 128
  assert summary['instances'] == 939
  assert summary['crowd'] == 10
  assert summary['skipped_total'] == 0
  assert summary['num_classes'] == 91
  assert _files(os.path.dirname(prefix)) == sorted([
      'train-00000-of-00003.tfrecord', 'train-00001-of-00003.tfrecord',
      'train-00002-of-00003.tfrecord', 'train-annotations.json',
      'train-label_map.json', 'train-summary.json'])
  assert len(_examples(prefix)) == 128
  gt = COCO(prefix + '-annotations.json')
  assert len(gt.getImgIds()) == 128 and len(gt.getAnnIds()) == 939
  label_map = json.load(open(prefix + '-label_map.json'))
  assert len(label_map['categories']) == 80


def test_coco128_masks_boxes_and_semantic_match_pycocotools(coco128_build):
  data, prefix = coco128_build
  coco = COCO(os.path.join(data, 'annotations', 'instances.json'))
  decoder = tf_example_decoder.TfExampleDecoder(include_mask=True)
  checked_instances = checked_crowd = 0
  for k, raw in enumerate(_examples(prefix)):
    if k % 5:  # a sample of the images keeps the test fast
      continue
    d = decoder.decode(tf.constant(raw))
    image_id = int(d['source_id'].numpy())
    info = coco.imgs[image_id]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None))
    assert d['image'].shape == (info['height'], info['width'], 3)
    masks = d['groundtruth_instance_masks'].numpy()
    boxes = d['groundtruth_boxes'].numpy()
    classes = d['groundtruth_classes'].numpy()
    assert len(anns) == len(masks) == len(boxes)
    painted = np.zeros((info['height'], info['width']), np.uint8)
    for ann, mask, box, cls in zip(anns, masks, boxes, classes):
      expected = coco.annToMask(ann)
      np.testing.assert_array_equal(mask, expected)
      x, y, w, h = ann['bbox']
      np.testing.assert_allclose(
          box * ([info['height'], info['width']] * 2),
          [y, x, min(y + h, info['height']), min(x + w, info['width'])],
          atol=1e-3)
      assert cls == ann['category_id']
      painted[expected > 0] = ann['category_id']
      checked_instances += 1
      checked_crowd += ann['iscrowd']
    semantic = tf.io.decode_png(
        tf.train.Example.FromString(raw).features.feature[
            'image/segmentation/class/encoded'].bytes_list.value[0]).numpy()
    np.testing.assert_array_equal(semantic[..., 0], painted)
  assert checked_instances > 150


def test_semantic_map_painted_from_masks_when_the_record_has_none(
    coco128_build):
  """Shards built without --semantic: the decoder paints the map from the
  instance masks exactly as the builder does (masks decoded or not by the
  model); without masks either it is all ignore, without instances all
  background."""
  _, prefix = coco128_build
  strip = lambda raw, *keys: _without(raw, keys)
  checked = 0
  for k, raw in enumerate(_examples(prefix)):
    if k % 16:
      continue
    written = tf.io.decode_png(tf.train.Example.FromString(raw).features
                               .feature['image/segmentation/class/encoded']
                               .bytes_list.value[0]).numpy()[..., 0]
    no_map = strip(raw, 'image/segmentation/class/encoded')
    for include_mask in (True, False):
      decoder = decoder_lib.TfExampleDecoder(include_mask=include_mask,
                                             include_semantic=True)
      painted = decoder.decode(tf.constant(no_map))['groundtruth_semantic']
      np.testing.assert_array_equal(painted.numpy(), written)
    decoder = decoder_lib.TfExampleDecoder(include_semantic=True)
    nothing = decoder.decode(tf.constant(strip(
        raw, 'image/segmentation/class/encoded', 'image/object/mask')))
    if len(nothing['groundtruth_classes']):
      assert (nothing['groundtruth_semantic'].numpy() == 255).all()
    checked += int((written > 0).any())
  assert checked >= 5
  # No instance at all: background everywhere.
  example = tf.train.Example.FromString(no_map)
  for key in list(example.features.feature):
    if key.startswith('image/object/'):
      del example.features.feature[key]
  empty = decoder_lib.TfExampleDecoder(include_semantic=True).decode(
      tf.constant(example.SerializeToString()))
  assert (empty['groundtruth_semantic'].numpy() == 0).all()


def test_paint_semantic_later_instance_wins():
  masks = np.zeros((3, 4, 5), np.float32)
  masks[0, :2] = 1.0     # class 7 in the top half
  masks[1, 1:3, 1:] = 255.0  # class 2 over it where they overlap (0/255 PNG)
  masks[2, 3, 4] = 0.4   # below 0.5: outside
  painted = decoder_lib.paint_semantic(tf.constant(masks),
                                       tf.constant([7, 2, 9])).numpy()
  expected = np.array([[7, 7, 7, 7, 7],
                       [7, 2, 2, 2, 2],
                       [0, 2, 2, 2, 2],
                       [0, 0, 0, 0, 0]], np.uint8)
  np.testing.assert_array_equal(painted, expected)
  assert decoder_lib.paint_semantic(tf.zeros([0, 2, 3]), tf.zeros(
      [0], tf.int64)).numpy().tolist() == [[0, 0, 0], [0, 0, 0]]


def _without(raw: bytes, keys) -> bytes:
  example = tf.train.Example.FromString(raw)
  for key in keys:
    del example.features.feature[key]
  return example.SerializeToString()


# ---------------------------------------------------------------- raccoon ----
def test_voc_raccoon(tmp_path, raccoon_dir):
  prefix = str(tmp_path / 'raccoon')
  assert _build('--format', 'voc', '--voc-root', raccoon_dir, '--output',
                prefix, '--num-shards', '2', '--include-masks',
                '--box-masks') == 0
  summary = json.load(open(prefix + '-summary.json'))
  assert (summary['images'], summary['instances']) == (200, 217)
  gt = COCO(prefix + '-annotations.json')
  assert len(gt.getImgIds()) == 200 and len(gt.getAnnIds()) == 217
  assert [c['name'] for c in gt.loadCats(gt.getCatIds())] == ['raccoon']
  # raccoon-1.xml: xmin 81, ymin 88, xmax 522, ymax 408 in a 650x417 image.
  img = [i for i in gt.imgs.values() if i['file_name'] == 'raccoon-1.jpg'][0]
  ann = gt.loadAnns(gt.getAnnIds(imgIds=img['id']))[0]
  assert ann['bbox'] == [80.0, 87.0, 442.0, 321.0]
  decoder = tf_example_decoder.TfExampleDecoder(include_mask=True)
  for raw in _examples(prefix):
    d = decoder.decode(tf.constant(raw))
    if d['source_id'].numpy().decode() == str(img['id']):
      mask = d['groundtruth_instance_masks'].numpy()[0]
      assert mask.sum() == 442 * 321  # the box filled as a coarse mask
      assert mask[87:408, 80:522].all()
      break
  else:
    pytest.fail('raccoon-1 not found in the shards')


def _write_voc(root, objects, size=(60, 40), name='a'):
  os.makedirs(root / 'Annotations', exist_ok=True)
  os.makedirs(root / 'JPEGImages', exist_ok=True)
  Image.new('RGB', size, (9, 99, 199)).save(root / 'JPEGImages' / f'{name}.jpg')
  objs = ''.join(
      f'<object><name>{n}</name><difficult>{d}</difficult><bndbox>'
      f'<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>'
      f'<ymax>{b[3]}</ymax></bndbox></object>' for n, d, b in objects)
  (root / 'Annotations' / f'{name}.xml').write_text(
      f'<annotation><filename>{name}.jpg</filename><size><width>{size[0]}'
      f'</width><height>{size[1]}</height><depth>3</depth></size>{objs}'
      '</annotation>')


def test_voc_difficult_unknown_class_and_bad_xml(tmp_path, capsys):
  root = tmp_path / 'voc'
  _write_voc(root, [('cat', 0, (1, 1, 20, 20)), ('dog', 1, (10, 5, 40, 30)),
                    ('cow', 0, (2, 2, 9, 9)), ('cat', 0, (30, 10, 90, 20))])
  _write_voc(root, [('cat', 0, (1, 1, 5, 5))], name='b')
  (root / 'Annotations' / 'c.xml').write_text('<annotation><object>')
  prefix = str(tmp_path / 'out' / 'voc')
  assert _build('--format', 'voc', '--voc-root', str(root), '--classes',
                'cat,dog', '--output', prefix) == 0
  err = capsys.readouterr().err
  summary = json.load(open(prefix + '-summary.json'))
  assert summary['skipped'] == {'box_out_of_image': 1,
                                'invalid_annotation_file': 1,
                                'unknown_category_id': 1}
  assert 'c.xml' in err and "'cow'" in err and 'a.xml: object 3' in err
  gt = json.load(open(prefix + '-annotations.json'))
  assert [a.get('difficult', 0) for a in gt['annotations']] == [0, 1, 0]
  ex = tf.train.Example.FromString(_examples(prefix)[0])
  assert list(ex.features.feature['image/object/attribute/difficult']
              .int64_list.value) == [0, 1]
  # Strict: the first problem stops the build and nothing is written.
  strict_prefix = str(tmp_path / 'strict' / 'voc')
  assert _build('--format', 'voc', '--voc-root', str(root), '--classes',
                'cat,dog', '--output', strict_prefix, '--strict') == 1
  assert 'error' in capsys.readouterr().err
  assert _files(str(tmp_path / 'strict')) == []


# ------------------------------------------------------------- bad inputs ----
def _truncate(path):
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:len(data) // 2])


# Each case: (reason, mutate(coco_dict, root) -> None, text the message names,
#             images written, instances written by a default run).
_BAD_INPUTS = {
    'missing_image_file': (
        lambda d, root: os.remove(os.path.join(root, 'images', 'img_3.jpg')),
        'img_3.jpg', 3, 6),
    'corrupt_image_file': (
        lambda d, root: _truncate(os.path.join(root, 'images', 'img_3.jpg')),
        'img_3.jpg', 3, 6),
    'degenerate_box': (
        lambda d, root: d['annotations'][2].update(bbox=[5, 5, 0, 10]),
        'annotation id 3', 4, 7),
    'box_out_of_image': (
        lambda d, root: d['annotations'][2].update(bbox=[50, 5, 30, 10]),
        'annotation id 3', 4, 7),
    'polygon_under_3_points': (
        lambda d, root: d['annotations'][2].update(
            segmentation=[[1, 1, 5, 5]]),
        'annotation id 3', 4, 7),
    'unknown_category_id': (
        lambda d, root: d['annotations'][2].update(category_id=77),
        'annotation id 3', 4, 7),
    'duplicate_image_id': (
        lambda d, root: d['images'].append(dict(d['images'][0],
                                                file_name='img_1.jpg')),
        'image id 1 (img_1.jpg)', 4, 8),
    'annotation_for_missing_image': (
        lambda d, root: d['annotations'][2].update(image_id=99),
        'annotation id 3', 4, 7),
}


@pytest.mark.parametrize('reason', sorted(_BAD_INPUTS))
@pytest.mark.parametrize('strict', [False, True])
def test_bad_input(tmp_path, capsys, reason, strict):
  mutate, named, images, instances = _BAD_INPUTS[reason]
  root = str(tmp_path / 'src')
  data = conftest.write_tiny_coco(root)
  mutate(data, root)
  ann_file = conftest.save_json(data, os.path.join(root, 'ann.json'))
  out_dir = tmp_path / 'out'
  args = ['--format', 'coco', '--annotations', ann_file, '--images',
          os.path.join(root, 'images'), '--output', str(out_dir / 'ds'),
          '--include-masks', '--num-shards', '2', '--num-workers', '2']
  code = _build(*args, *(['--strict'] if strict else []))
  err = capsys.readouterr().err
  assert named in err and reason in err
  if strict:
    assert code == 1
    assert 'error' in err
    assert _files(str(out_dir)) == []  # not even a temporary directory
  else:
    assert code == 0
    summary = json.load(open(out_dir / 'ds-summary.json'))
    assert summary['skipped'] == {reason: 1}
    assert (summary['images'], summary['instances']) == (images, instances)
    assert len(_examples(str(out_dir / 'ds'))) == images
    assert not [f for f in _files(str(out_dir)) if f.startswith('.')]


@pytest.mark.parametrize('strict', [False, True])
def test_empty_dataset_fails_without_output(tmp_path, capsys, strict):
  root = str(tmp_path / 'src')
  data = conftest.write_tiny_coco(root, num_images=1)
  data['images'], data['annotations'] = [], []
  ann_file = conftest.save_json(data, os.path.join(root, 'ann.json'))
  code = _build('--format', 'coco', '--annotations', ann_file, '--images',
                root, '--output', str(tmp_path / 'out' / 'ds'),
                *(['--strict'] if strict else []))
  assert code == 1
  assert 'empty' in capsys.readouterr().err
  assert _files(str(tmp_path / 'out')) == []


def test_all_images_skipped_fails_without_output(tmp_path, capsys):
  root = str(tmp_path / 'src')
  data = conftest.write_tiny_coco(root, num_images=2)
  shutil.rmtree(os.path.join(root, 'images'))
  ann_file = conftest.save_json(data, os.path.join(root, 'ann.json'))
  out = tmp_path / 'out'
  assert _build('--format', 'coco', '--annotations', ann_file, '--images',
                root, '--output', str(out / 'ds')) == 1
  assert 'all 2 were skipped' in capsys.readouterr().err
  assert _files(str(out)) == []


def test_unwritable_output_is_named(tmp_path, capsys):
  root = str(tmp_path / 'src')
  ann_file = conftest.save_json(conftest.write_tiny_coco(root),
                                os.path.join(root, 'ann.json'))
  blocker = tmp_path / 'not_a_dir'
  blocker.write_text('a file where the output directory should be')
  assert _build('--format', 'coco', '--annotations', ann_file, '--images',
                os.path.join(root, 'images'), '--output',
                str(blocker / 'ds')) == 1
  err = capsys.readouterr().err
  assert 'not writable' in err and str(blocker) in err


def test_unreadable_annotations_file_is_named(tmp_path, capsys):
  bad = tmp_path / 'ann.json'
  bad.write_text('{"images": [')
  assert _build('--format', 'coco', '--annotations', str(bad), '--images',
                str(tmp_path), '--output', str(tmp_path / 'o' / 'ds')) == 1
  assert str(bad) in capsys.readouterr().err


def test_semantic_needs_masks_for_voc(tmp_path, capsys):
  root = tmp_path / 'voc'
  _write_voc(root, [('cat', 0, (1, 1, 20, 20))])
  assert _build('--format', 'voc', '--voc-root', str(root), '--output',
                str(tmp_path / 'o' / 'x'), '--semantic') == 1
  assert '--box-masks' in capsys.readouterr().err


# ------------------------------------------------------------ determinism ----
def _digest(prefix):
  return {os.path.basename(p): hashlib.sha256(open(p, 'rb').read()).hexdigest()
          for p in sorted(glob.glob(prefix + '-*'))}


def test_builds_are_byte_identical_for_any_worker_count(tmp_path):
  root = str(tmp_path / 'src')
  data = conftest.write_tiny_coco(root, num_images=7)
  data['annotations'][0]['iscrowd'] = 1
  ann_file = conftest.save_json(data, os.path.join(root, 'ann.json'))
  digests = []
  for run, workers in enumerate(['1', '2', '2']):
    prefix = str(tmp_path / f'run{run}' / 'ds')
    assert _build('--format', 'coco', '--annotations', ann_file, '--images',
                  os.path.join(root, 'images'), '--output', prefix,
                  '--num-shards', '3', '--num-workers', workers,
                  '--include-masks', '--semantic') == 0
    digests.append(_digest(prefix))
  assert len(digests[0]) == 6
  assert digests[0] == digests[1] == digests[2]


def test_rebuild_replaces_outputs_atomically(tmp_path):
  root = str(tmp_path / 'src')
  data = conftest.write_tiny_coco(root, num_images=3)
  ann_file = conftest.save_json(data, os.path.join(root, 'ann.json'))
  prefix = str(tmp_path / 'out' / 'ds')
  args = ['--format', 'coco', '--annotations', ann_file, '--images',
          os.path.join(root, 'images'), '--output', prefix]
  assert _build(*args) == 0
  before = _digest(prefix)
  # A failing strict rebuild must leave the previous complete build alone.
  os.remove(os.path.join(root, 'images', 'img_2.jpg'))
  assert _build(*args, '--strict') == 1
  assert _digest(prefix) == before


# ------------------------------------------------------------ primitives ----
def test_binary_mask_png_round_trips_through_tf_and_pil():
  rng = np.random.default_rng(3)
  for shape in [(1, 1), (7, 9), (31, 64), (50, 3)]:
    mask = (rng.random(shape) > 0.6).astype(np.uint8)
    data = png.encode_binary_mask(mask)
    np.testing.assert_array_equal(
        tf.io.decode_png(data, channels=1).numpy()[..., 0], mask)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))),
                                  mask)
  labels = rng.integers(0, 256, (13, 17)).astype(np.uint8)
  np.testing.assert_array_equal(
      tf.io.decode_png(png.encode_label_map(labels)).numpy()[..., 0], labels)
  with pytest.raises(ValueError):
    png.encode_binary_mask(np.zeros((0, 4)))


def test_box_mask_covers_pixel_centres():
  mask = encode.box_mask((1.4, 2.6, 3.0, 1.0), height=6, width=8)
  expected = np.zeros((6, 8), np.uint8)
  expected[3:4, 1:4] = 1  # x in [1.4, 4.4) -> columns 1..3, y [2.6, 3.6) -> row 3
  np.testing.assert_array_equal(mask, expected)
  thin = encode.box_mask((2.2, 2.2, 0.1, 0.1), height=6, width=8)
  assert thin.sum() == 1


def test_crowd_rle_matches_pycocotools():
  rng = np.random.default_rng(0)
  m = (rng.random((20, 30)) > 0.5).astype(np.uint8)
  rle = mask_utils.encode(np.asfortranarray(m))
  uncompressed = {'size': [20, 30], 'counts': []}
  flat, prev, run = m.flatten(order='F'), 0, 0
  for v in flat:
    if v != prev:
      uncompressed['counts'].append(run)
      run, prev = 0, v
    run += 1
  uncompressed['counts'].append(run)
  for seg in (uncompressed, {'size': [20, 30],
                             'counts': rle['counts'].decode()}):
    inst = records.Instance(1, 1, (0, 0, 30, 20), 1.0, True, seg)
    np.testing.assert_array_equal(encode.instance_mask(inst, 20, 30), m)


def test_voc_difficult_spellings(tmp_path, capsys):
  """No tag is 0; '1.0' and 'true' are 1 (exporters write them); anything
  else is reported naming the object, not read as 0."""
  root = tmp_path / 'voc'
  _write_voc(root, [('cat', '1.0', (1, 1, 20, 20)),
                    ('cat', 'true', (22, 1, 40, 20)),
                    ('cat', '0.0', (1, 22, 20, 39)),
                    ('cat', 'maybe', (30, 22, 50, 39))])
  xml = root / 'Annotations' / 'a.xml'
  # A fifth object without a <difficult> tag.
  xml.write_text(xml.read_text().replace(
      '</annotation>', '<object><name>cat</name><bndbox><xmin>42</xmin>'
      '<ymin>2</ymin><xmax>58</xmax><ymax>12</ymax></bndbox></object>'
      '</annotation>'))
  prefix = str(tmp_path / 'out' / 'voc')
  assert _build('--format', 'voc', '--voc-root', str(root), '--classes',
                'cat', '--output', prefix) == 0
  err = capsys.readouterr().err
  assert "a.xml: object 3" in err and "'maybe'" in err
  gt = json.load(open(prefix + '-annotations.json'))
  assert [a.get('difficult', 0) for a in gt['annotations']] == [1, 1, 0, 0]
  ex = tf.train.Example.FromString(_examples(prefix)[0])
  assert list(ex.features.feature['image/object/attribute/difficult']
              .int64_list.value) == [1, 1, 0, 0]
