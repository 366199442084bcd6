"""The exported SavedModel: signatures, fresh-process equality with the Keras
model, input kinds, full-image masks, label map asset, versioned layout."""

import io
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from official.core import export_base
from tests.serving import conftest
from tf_mtdet.serving import export


def _signature_inputs(cli_output: str) -> dict:
  """{signature: [input dtypes]} parsed from `saved_model_cli show --all`."""
  result, current, in_inputs = {}, None, False
  for line in cli_output.splitlines():
    line = line.strip()
    if line.startswith("signature_def['"):
      current = line.split("'")[1]
      result[current] = []
    elif 'following input(s)' in line:
      in_inputs = True
    elif 'following output(s)' in line:
      in_inputs = False
    elif current and in_inputs and line.startswith('dtype:'):
      result[current].append(line.split()[1])
  return result


def test_saved_model_cli_lists_three_signatures(exported):
  out = exported.saved_model_cli.result()
  inputs = _signature_inputs(out)
  assert inputs['serving_default'] == ['DT_UINT8']
  assert inputs['image_bytes'] == ['DT_STRING']
  assert inputs['tf_example'] == ['DT_STRING']
  for name in ('detection_boxes', 'detection_class_names',
               'detection_full_masks', 'detection_masks', 'image_info'):
    assert f"outputs['{name}']" in out


def test_fresh_process_matches_keras_model(exported, tiny_model, family,
                                          parser):
  exported.reload.result()
  served = dict(np.load(exported.reload_outputs, allow_pickle=True))

  # The Keras model on the training pipeline's eval preprocessing.
  image = conftest.sample_image(*conftest.RELOAD_IMAGE_SIZE)
  images, info = parser.preprocess_image(tf.constant(image))
  ref = family.detections(family.call_inference(
      tiny_model, images[tf.newaxis], info[tf.newaxis]))
  info = info.numpy()
  n = int(ref['num_detections'][0])
  assert n > 0
  resized = ref['detection_boxes'][0, :n].numpy()
  # Original pixels are exactly resized pixels / image_info scale (offset 0).
  expected = resized / np.tile(info[2], 2)
  expected = np.clip(expected, 0, np.tile(info[0], 2))

  for prefix in ('tensor', 'bytes', 'example'):
    assert int(served[f'{prefix}/num_detections'][0]) == n, prefix
    np.testing.assert_allclose(served[f'{prefix}/detection_boxes'][0, :n],
                               expected, atol=1e-3, err_msg=prefix)
    np.testing.assert_allclose(served[f'{prefix}/detection_scores'][0, :n],
                               ref['detection_scores'][0, :n], atol=1e-5)
    np.testing.assert_array_equal(
        served[f'{prefix}/detection_classes'][0, :n],
        ref['detection_classes'][0, :n])
    np.testing.assert_allclose(served[f'{prefix}/detection_masks'][0, :n],
                               ref['detection_masks'][0, :n], atol=1e-4)
    np.testing.assert_allclose(served[f'{prefix}/image_info'][0], info)
    names = [conftest.LABEL_MAP.get(int(c), '')
             for c in ref['detection_classes'][0, :n]]
    assert [s.decode() for s in
            served[f'{prefix}/detection_class_names'][0, :n]] == names


def _serve(loaded, image: np.ndarray) -> dict:
  outputs = loaded.signatures['serving_default'](
      inputs=tf.constant(image[np.newaxis]))
  return {k: v.numpy() for k, v in outputs.items()}


def _assert_same_detections(a: dict, b: dict, atol: float = 1e-4) -> None:
  np.testing.assert_array_equal(a['num_detections'], b['num_detections'])
  n = int(a['num_detections'][0])
  for key in ('detection_boxes', 'detection_scores', 'detection_masks'):
    np.testing.assert_allclose(a[key][:, :n], b[key][:, :n], atol=atol,
                               err_msg=key)
  np.testing.assert_array_equal(a['detection_classes'],
                                b['detection_classes'])


def test_grayscale_and_rgba_match_rgb(loaded):
  rgb = conftest.sample_image(60, 90)
  gray = rgb[..., :1]
  gray_as_rgb = np.repeat(gray, 3, axis=-1)
  _assert_same_detections(_serve(loaded, gray), _serve(loaded, gray_as_rgb))
  rgba = np.concatenate([rgb, np.full_like(rgb[..., :1], 7)], axis=-1)
  _assert_same_detections(_serve(loaded, rgba), _serve(loaded, rgb))


def test_mixed_size_byte_batch_matches_single_images(loaded):
  first = conftest.sample_image(60, 90, seed=1)
  second = conftest.sample_image(80, 50, seed=2)
  both = loaded.signatures['image_bytes'](inputs=tf.constant(
      [conftest.encode(first), conftest.encode(second, 'BMP')]))
  both = {k: v.numpy() for k, v in both.items()}
  full = both['detection_full_masks']
  assert full.dtype == np.uint8 and full.shape[2:] == (80, 90)
  for i, image in enumerate((first, second)):
    alone = _serve(loaded, image)
    _assert_same_detections({k: v[i:i + 1] for k, v in both.items()}, alone,
                            atol=1e-3)
    height, width = image.shape[:2]
    np.testing.assert_array_equal(both['image_info'][i, 0], [height, width])
    # Outside its own [height, width] corner an image's masks are empty.
    assert not full[i, :, height:, :].any()
    assert not full[i, :, :, width:].any()
    np.testing.assert_array_equal(full[i, :, :height, :width],
                                  alone['detection_full_masks'][0])


def test_full_masks_are_the_pasted_box_masks(loaded):
  image = conftest.sample_image(60, 90)
  out = _serve(loaded, image)
  full = out['detection_full_masks'][0]
  n = int(out['num_detections'][0])
  assert full.shape == (out['detection_boxes'].shape[1], 60, 90)
  assert full.dtype == np.uint8 and set(np.unique(full)) <= {0, 1}
  pasted = export.paste_box_masks(out['detection_masks'][0, :n],
                                  out['detection_boxes'][0, :n], 60, 90)
  np.testing.assert_array_equal(full[:n], (pasted.numpy() > 0.5))
  assert not full[n:].any()
  # Nothing outside a box grown by one mask cell.
  for mask, (ymin, xmin, ymax, xmax) in zip(full[:n],
                                            out['detection_boxes'][0, :n]):
    cell_y, cell_x = (ymax - ymin) / 28 + 1, (xmax - xmin) / 28 + 1
    ys, xs = np.nonzero(mask)
    if len(ys):
      assert ys.min() + 0.5 >= ymin - cell_y and ys.max() + 0.5 <= ymax + cell_y
      assert xs.min() + 0.5 >= xmin - cell_x and xs.max() + 0.5 <= xmax + cell_x


def test_label_map_is_an_asset_and_names_follow_it(exported, loaded):
  asset = os.path.join(exported.version_dir, 'assets', export.LABEL_MAP_ASSET)
  assert export.read_label_map(asset) == conftest.LABEL_MAP
  assert loaded.label_map_file.asset_path.numpy().decode() == asset
  out = _serve(loaded, conftest.sample_image())
  n = int(out['num_detections'][0])
  names = [s.decode() for s in out['detection_class_names'][0]]
  assert names[:n] == [conftest.LABEL_MAP.get(int(c), '')
                       for c in out['detection_classes'][0, :n]]
  assert all(name == '' for name in names[n:])


def test_read_label_map_formats_and_errors(tmp_path):
  builder_style = tmp_path / 'builder.json'
  builder_style.write_text(json.dumps(
      {'num_classes': 3, 'categories': [{'id': 1, 'name': 'a'},
                                        {'id': 2, 'name': 'b'}]}))
  assert export.read_label_map(str(builder_style)) == {1: 'a', 2: 'b'}
  assert export.read_label_map({'3': 'c'}) == {3: 'c'}
  assert export.read_label_map(None) == {}
  bad = tmp_path / 'bad.json'
  bad.write_text('[1, 2]')
  with pytest.raises(ValueError, match='bad.json'):
    export.read_label_map(str(bad))
  with pytest.raises(ValueError, match='missing.json'):
    export.read_label_map(str(tmp_path / 'missing.json'))


def test_versions_are_numbered_and_never_overwritten(stub_module, tmp_path,
                                                     monkeypatch):
  base = str(tmp_path / 'model')
  os.makedirs(os.path.join(base, '7'))
  os.makedirs(os.path.join(base, 'notes'))
  real_export = export_base.export
  seen_during_save = []

  def watching_export(module, keys, directory, **kwargs):
    # While the SavedModel is being written no version directory exists.
    seen_during_save.append(sorted(os.listdir(base)))
    return real_export(module, keys, directory, **kwargs)

  monkeypatch.setattr(export_base, 'export', watching_export)
  path = export.export_saved_model(stub_module, base)
  assert path == os.path.join(base, '8')
  assert [name for name in seen_during_save[0] if name.isdigit()] == ['7']
  for name in ('saved_model.pb', 'variables', 'assets/label_map.json'):
    assert os.path.exists(os.path.join(path, name)), name
  assert sorted(os.listdir(base)) == ['7', '8', 'notes']  # No leftovers.

  with pytest.raises(FileExistsError, match='already exists'):
    export.export_saved_model(stub_module, base, version=8)
  with pytest.raises(ValueError, match='positive'):
    export.export_saved_model(stub_module, base, version=0)


def test_failed_export_leaves_nothing(stub_module, tmp_path, monkeypatch):
  base = str(tmp_path / 'model')

  def failing_export(module, keys, directory, **kwargs):
    os.makedirs(os.path.join(directory, 'variables'))  # A partial write.
    raise RuntimeError('disk full')

  monkeypatch.setattr(export_base, 'export', failing_export)
  with pytest.raises(RuntimeError, match='disk full'):
    export.export_saved_model(stub_module, base)
  assert os.listdir(base) == []


def test_export_prints_one_line_per_stage(stub_module, tmp_path):
  log = io.StringIO()
  path = export.export_saved_model(stub_module, str(tmp_path / 'model'),
                                   progress=log)
  lines = log.getvalue().splitlines()
  assert len(lines) == 3, lines
  assert lines[0].startswith('export: tracing the serving signatures')
  assert re.match(r'export: traced in [0-9.]+ s; writing the SavedModel to '
                  r'.*/model/\.tmp-1-[0-9a-f]{8}$', lines[1]), lines[1]
  assert re.match(r'export: written in [0-9.]+ s; renaming it to ', lines[2])
  assert lines[2].endswith(path) and os.path.exists(path)


class _CountingFamily(conftest.StubFamily):
  """Counts the model's traces (each Python call of `call_inference` is one)."""

  def __init__(self):
    self.traces = 0

  def call_inference(self, model, images, image_info):
    self.traces += 1
    return super().call_inference(model, images, image_info)


def test_three_signatures_trace_the_model_once(parser, tmp_path):
  # The signatures share one traced model, and tf.saved_model.save does not
  # trace it again in its save context (it re-traces every tf.function it
  # finds among the module's attributes: the model once more per export).
  family = _CountingFamily()
  module = export.ServingModule(conftest.StubDetector(), family, parser,
                                conftest.STUB_LABEL_MAP)
  path = export.export_saved_model(module, str(tmp_path / 'model'))
  assert family.traces == 1
  loaded = tf.saved_model.load(path)
  assert set(loaded.signatures) == {'serving_default', 'image_bytes',
                                    'tf_example'}
  served = loaded.signatures['image_bytes'](
      inputs=tf.constant([conftest.encode(conftest.sample_image())]))
  assert int(served['num_detections'][0]) == conftest.StubDetector.NUM_DETECTIONS
  # The module's methods still serve eagerly (the same shared functions).
  direct = module.inference_from_image_bytes(
      tf.constant([conftest.encode(conftest.sample_image())]))
  np.testing.assert_allclose(direct['detection_boxes'].numpy(),
                             served['detection_boxes'].numpy(), atol=1e-5)
  assert family.traces == 1
