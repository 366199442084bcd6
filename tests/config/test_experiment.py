"""The experiment config: one-of families, num_classes from the label map."""

import json
import re

import pytest

from tf_mtdet import families
from tf_mtdet.config import experiment


def _label_map(tmp_path, num_classes):
  path = tmp_path / 'train-label_map.json'
  path.write_text(json.dumps({
      'categories': [{'id': i, 'name': f'c{i}'} for i in range(1, num_classes)],
      'num_classes': num_classes}))
  return str(path)


def test_num_classes_comes_from_the_label_map(tmp_path):
  label_map = _label_map(tmp_path, 7)
  for family in ('two_stage', 'single_shot'):
    config = experiment.load_config(None, [
        f'model.type={family}', f'train_data.label_map={label_map}'])
    assert config.family_model.num_classes == 7
    assert families.get(config).name == family


def test_label_map_with_more_classes_than_the_model_is_an_error(tmp_path):
  label_map = _label_map(tmp_path, 4)
  with pytest.raises(ValueError, match=r'num_classes 4 but '
                     r'model.two_stage.num_classes is 3'):
    experiment.load_config(None, [f'train_data.label_map={label_map}',
                                  'model.two_stage.num_classes=3'])
  # More model classes than data classes is allowed (unused logits).
  config = experiment.load_config(None, [f'train_data.label_map={label_map}',
                                         'model.two_stage.num_classes=5'])
  assert config.family_model.num_classes == 5


def test_no_class_count_anywhere_is_an_error():
  with pytest.raises(ValueError, match='num_classes is 0 and '
                     'train_data.label_map names no label map'):
    experiment.load_config(None, [])


def test_unknown_family_is_rejected():
  with pytest.raises(ValueError, match='model.type'):
    experiment.load_config(None, ['model.type=three_stage',
                                  'model.two_stage.num_classes=3'])


def test_include_mask_and_outer_boxes_live_once():
  """The parser's options carry no copy of the model's mask settings: the
  mask crop targets read them from the model config."""
  config = experiment.load_config(None, [
      'model.two_stage.num_classes=3', 'model.two_stage.outer_boxes_scale=1.25',
      'model.two_stage.mask_sampler.crop_size=40'])
  parser_fields = config.train_data.parser.as_dict()
  for name in ('include_mask', 'outer_boxes_scale', 'mask_crop_size',
               'rpn_match_threshold'):
    assert name not in parser_fields
  generators = families.get(config).target_generators()
  masks = [g for g in generators if type(g).__name__ == 'MaskCropTargets']
  assert masks[0]._outer_scale == 1.25 and masks[0]._crop_size == 40  # pylint: disable=protected-access
  config = experiment.load_config(None, ['model.two_stage.num_classes=3',
                                         'model.two_stage.include_mask=false'])
  parser = families.get(config).build_parser(config.train_data)
  assert 'masks' not in parser.augmenter.needs


def test_three_file_base_chain_and_a_circular_one(tmp_path):
  """grandparent <- parent <- child: each level's values, the nearest one
  winning, dicts merged key by key; a cycle is an error naming the files."""
  (tmp_path / 'grandparent.yaml').write_text(
      'model: {two_stage: {num_classes: 3, min_level: 2}}\n'
      'schedule: {epochs: 5, momentum: 0.8, decay_epochs: [2, 4]}\n')
  (tmp_path / 'parent.yaml').write_text(
      'base: grandparent.yaml\n'
      'schedule: {epochs: 7, decay_epochs: [3]}\n'
      'model: {two_stage: {max_level: 5}}\n')
  (tmp_path / 'child.yaml').write_text(
      'base: parent.yaml\nschedule: {epochs: 9}\n')
  for name, epochs, decay in (('grandparent', 5, [2, 4]), ('parent', 7, [3]),
                              ('child', 9, [3])):
    config = experiment.load_config(str(tmp_path / f'{name}.yaml'))
    assert config.schedule.epochs == epochs, name
    assert config.schedule.decay_epochs == decay, name
    assert config.schedule.momentum == 0.8, name  # only the grandparent's
    assert config.family_model.num_classes == 3, name
  child = experiment.load_config(str(tmp_path / 'child.yaml'))
  assert (child.family_model.min_level, child.family_model.max_level) == (2, 5)
  (tmp_path / 'a.yaml').write_text('base: b.yaml\n')
  (tmp_path / 'b.yaml').write_text('base: c.yaml\n')
  (tmp_path / 'c.yaml').write_text('base: a.yaml\n')
  with pytest.raises(ValueError, match=r'a\.yaml: circular "base" chain') as e:
    experiment.load_config(str(tmp_path / 'a.yaml'))
  assert 'b.yaml' in str(e.value) and 'c.yaml' in str(e.value)


def test_a_part_reading_a_level_the_pyramid_lacks_is_named():
  """A dense head or a multi-scale pooler reading past max_level is a config
  error naming the field (it used to be a KeyError '5' inside the model)."""
  base = ['model.two_stage.num_classes=3', 'model.two_stage.max_level=4']
  with pytest.raises(ValueError, match=re.escape(
      'model.two_stage.dense_aux_heads[0].semantic.levels is [2, 5], outside '
      "the pyramid's levels [2, 4]")):
    experiment.load_config(None, base + [
        'model.two_stage.dense_aux_heads=[{type: semantic}]'])
  with pytest.raises(ValueError, match=re.escape(
      'model.two_stage.roi_aligner.multi_scale_levels is [2, 5]')):
    experiment.load_config(None, base + [
        'model.two_stage.roi_aligner.type=multi_scale_attention'])
  with pytest.raises(ValueError, match=re.escape(
      'distance_transform.levels is [4, 3]: expected [first level, last')):
    experiment.load_config(None, [
        'model.two_stage.num_classes=3',
        'model.two_stage.dense_aux_heads=[{type: distance_transform, '
        'distance_transform: {levels: [4, 3]}}]'])
  # Within the pyramid, and a level-assigned pooler (no levels): fine.
  config = experiment.load_config(None, base + [
      'model.two_stage.dense_aux_heads=[{type: semantic, semantic: '
      '{levels: [2, 4]}}]', 'model.two_stage.mask_roi_aligner.'
      'multi_scale_levels=[2, 6]'])
  assert config.family_model.dense_aux_heads[0].semantic.levels == [2, 4]


def test_exponent_floats_without_a_dot_are_floats(tmp_path):
  # YAML 1.1 reads `5e-5` as a string; a float field would refuse it.
  path = tmp_path / 'decay.yaml'
  path.write_text('base: ' + experiment.zoo.resolve('ivanet/ivanet_tiny_shapes')
                  + '\nschedule: {weight_decay: 4e-4}\n')
  config = experiment.load_config(str(path), ['schedule.base_learning_rate=5E-5'])
  assert config.schedule.weight_decay == 4e-4
  assert config.schedule.base_learning_rate == 5e-5
