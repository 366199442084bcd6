"""VOC segmentation labels in the builder: VOC2012 palette PNGs and SBD
.mat files (255 kept), all-ignore maps for images without a label."""

import glob
import json
import os

import numpy as np
from PIL import Image
import pytest
from scipy import io as scipy_io
import tensorflow as tf

from tf_mtdet import cli
from tf_mtdet.data import decoder as decoder_lib
from tf_mtdet.data.builder import records
from tf_mtdet.data.builder import voc_segmentation


def _labels(h=40, w=60, cls=15):
  labels = np.zeros([h, w], np.uint8)
  labels[5:20, 10:30] = cls
  labels[4, 9:31] = 255  # VOC's void boundary
  return labels


def _palette_png(path, labels):
  im = Image.fromarray(labels, mode='P')
  # VOC's colour palette: class 15 (person) is (192, 128, 128).
  palette = [0] * 768
  palette[15 * 3:15 * 3 + 3] = [192, 128, 128]
  palette[255 * 3:255 * 3 + 3] = [224, 224, 192]
  im.putpalette(palette)
  im.save(path)


def _sbd_mat(path, labels):
  scipy_io.savemat(path, {'GTcls': {'Segmentation': labels,
                                    'CategoriesPresent': np.array([15])}})


def test_palette_png_reads_indices_with_255_kept(tmp_path):
  path = str(tmp_path / 'a.png')
  _palette_png(path, _labels())
  labels = voc_segmentation.read_label_file(path)
  np.testing.assert_array_equal(labels, _labels())
  assert labels.dtype == np.uint8 and 255 in labels


def test_sbd_mat_reads_its_segmentation(tmp_path):
  path = str(tmp_path / 'a.mat')
  _sbd_mat(path, _labels(cls=7))
  np.testing.assert_array_equal(voc_segmentation.read_label_file(path),
                                _labels(cls=7))


def test_rgb_png_and_bad_mat_are_refused(tmp_path):
  Image.new('RGB', (4, 4)).save(tmp_path / 'rgb.png')
  with pytest.raises(records.BuildError, match='palette or grayscale'):
    voc_segmentation.read_label_file(str(tmp_path / 'rgb.png'))
  scipy_io.savemat(str(tmp_path / 'bad.mat'), {'x': np.zeros(2)})
  with pytest.raises(records.BuildError, match='GTcls'):
    voc_segmentation.read_label_file(str(tmp_path / 'bad.mat'))


def _write_voc_image(root, name, size=(60, 40)):
  os.makedirs(root / 'Annotations', exist_ok=True)
  os.makedirs(root / 'JPEGImages', exist_ok=True)
  Image.new('RGB', size, (9, 99, 199)).save(root / 'JPEGImages' / f'{name}.jpg')
  (root / 'Annotations' / f'{name}.xml').write_text(
      f'<annotation><filename>{name}.jpg</filename><size><width>{size[0]}'
      f'</width><height>{size[1]}</height></size><object><name>person</name>'
      '<bndbox><xmin>11</xmin><ymin>6</ymin><xmax>30</xmax><ymax>20</ymax>'
      '</bndbox></object></annotation>')


def test_voc_build_reads_png_then_mat_and_ignores_unlabelled(tmp_path,
                                                             capsys):
  root = tmp_path / 'voc'
  for name in ('a', 'b', 'c'):
    _write_voc_image(root, name)
  seg, sbd = tmp_path / 'SegmentationClass', tmp_path / 'cls'
  seg.mkdir()
  sbd.mkdir()
  _palette_png(str(seg / 'a.png'), _labels())
  _sbd_mat(str(sbd / 'a.mat'), _labels(cls=3))  # the PNG folder comes first
  _sbd_mat(str(sbd / 'b.mat'), _labels(cls=9))
  prefix = str(tmp_path / 'out' / 'train')
  assert cli.main(['build-tfrecord', '--quiet', '--format', 'voc',
                   '--voc-root', str(root), '--classes', 'person',
                   '--voc-segmentation', str(seg), '--voc-segmentation',
                   str(sbd), '--output', prefix, '--num-workers', '1']) == 0
  assert '1 image(s) without a semantic label' in capsys.readouterr().out
  with open(prefix + '-summary.json') as f:
    summary = json.load(f)
  assert summary['images_without_semantic_labels'] == 1
  decoder = decoder_lib.TfExampleDecoder(include_semantic=True)
  maps = {}
  for path in glob.glob(prefix + '-*.tfrecord'):
    for raw in tf.data.TFRecordDataset(path):
      decoded = decoder.decode(raw)
      maps[int(decoded['source_id'])] = decoded['groundtruth_semantic'].numpy()
  np.testing.assert_array_equal(maps[1], _labels())          # a: the PNG
  np.testing.assert_array_equal(maps[2], _labels(cls=9))     # b: SBD
  assert (maps[3] == 255).all()                              # c: none


def test_voc_segmentation_errors(tmp_path, capsys):
  root = tmp_path / 'voc'
  _write_voc_image(root, 'a')
  assert cli.main(['build-tfrecord', '--quiet', '--format', 'voc',
                   '--voc-root', str(root), '--voc-segmentation',
                   str(tmp_path / 'nope'), '--output',
                   str(tmp_path / 'out' / 'x')]) != 0
  err = capsys.readouterr().err
  assert 'segmentation label folder does not exist' in err
  assert not os.path.exists(tmp_path / 'out')
