"""Named parts at each seam of a family, with the targets and losses they own.

A paper's new part is a module that registers its builder here under a name
(and its typed config as a field of the seam's config); the model config picks
it by that name. A part that learns from its own targets also registers the
target generator the parser runs for it and the loss terms the family adds
to its total, so nothing central lists them. Necks use Model Garden's own
decoder registry (`decoders.factory.register_decoder_builder`) instead.

Kinds and what their builders return:
  * 'box_head': `roi_features [B, N, k, k, C] -> (class_outputs, box_outputs)`;
  * 'mask_head': `[roi_features, roi_classes] -> mask logits [B, N, m, m]`;
  * 'roi_pooler' / 'mask_roi_pooler': `(features {level: [B, H, W, C]},
    boxes [B, N, 4]) -> [B, N, k, k, C']`;
  * 'roi_refinement': `[B, N, k, k, C] -> [B, N, k, k, C]`, one block shared
    by the box and mask poolers;
  * 'mask_roi_assigner': the mask branch's training RoIs and matches (see
    `TwoStageModel`);
  * 'dense_aux_head': `features {level: ...} -> dict of outputs` (the loss
    inputs, plus 'fusion_features' when it feeds the pyramid);
  * 'feature_fusion': `(features, {head name: outputs}) -> features`;
  * 'dense_head': single-shot per-level class/box head;
  * 'roi_box_refiner': `(features, outputs, matches, image_shape, gt_masks,
    training) -> (outputs, matches)`, run between the box stage and the mask
    branch (see `TwoStageModel`).
"""

import dataclasses
from typing import Any, Callable, Mapping, Optional

import tensorflow as tf

KINDS = ('box_head', 'mask_head', 'roi_pooler', 'mask_roi_pooler',
         'roi_refinement', 'mask_roi_assigner', 'dense_aux_head',
         'feature_fusion', 'dense_head', 'roi_box_refiner')

LossFn = Callable[[Mapping[str, Any], Mapping[str, Any]], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class LossTerm:
  """One weighted loss term: `weight * fn(outputs, labels)` in the total,
  reported as `<name>_loss`."""
  name: str
  weight: float
  fn: LossFn


@dataclasses.dataclass(frozen=True)
class PartSpec:
  """A registered part: its builder, and optionally the target generator and
  loss terms it owns. `targets` and `losses` take the same arguments as the
  builder, minus the regularizer."""
  builder: Callable[..., Any]
  targets: Optional[Callable[..., Any]] = None
  losses: Optional[Callable[..., list[LossTerm]]] = None


_REGISTRY: dict[str, dict[str, PartSpec]] = {k: {} for k in KINDS}


def register(kind: str, name: str, *,
             targets: Optional[Callable[..., Any]] = None,
             losses: Optional[Callable[..., list[LossTerm]]] = None
             ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
  """Decorator registering `builder` as part `name` of kind `kind`.

  Args:
    kind: One of `KINDS`.
    name: The name configs use.
    targets: `(*config args) -> TargetGenerator` for the labels it learns from.
    losses: `(*config args) -> [LossTerm]` it adds to the family's total.
  """
  if kind not in _REGISTRY:
    raise ValueError(f'unknown part kind {kind!r}; kinds: {KINDS}')

  def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
    if name in _REGISTRY[kind]:
      raise ValueError(f'{kind} {name!r} is registered twice')
    _REGISTRY[kind][name] = PartSpec(builder, targets, losses)
    return builder

  return decorator


def spec(kind: str, part: str) -> PartSpec:
  """The registration of `part`; the error lists the known names."""
  try:
    return _REGISTRY[kind][part]
  except KeyError:
    raise ValueError(
        f'unknown {kind} {part!r}; registered: {sorted(_REGISTRY[kind])}'
    ) from None


def build(kind: str, part: str, *args, **kwargs) -> Any:
  """Builds part `part` of kind `kind`."""
  return spec(kind, part).builder(*args, **kwargs)


def targets(kind: str, part: str, *args) -> Optional[Any]:
  """The part's target generator, or None if it owns no targets."""
  owner = spec(kind, part)
  return owner.targets(*args) if owner.targets else None


def losses(kind: str, part: str, *args) -> list[LossTerm]:
  """The part's loss terms (none if it owns no loss)."""
  owner = spec(kind, part)
  return list(owner.losses(*args)) if owner.losses else []


def names(kind: str) -> list[str]:
  return sorted(_REGISTRY[kind])
