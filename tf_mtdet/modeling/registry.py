"""Named builders for the parts at each seam of the two-stage model.

A paper's new part is a module that registers its builder here under a name;
the model config picks it by that name. Necks use Model Garden's own decoder
registry (`decoders.factory.register_decoder_builder`) instead.

Builders take `(model_config, l2_regularizer)` and return a layer:
  * 'box_head': `roi_features [B, N, k, k, C] -> (class_outputs, box_outputs)`;
  * 'mask_head': `[roi_features, roi_classes] -> mask logits [B, N, m, m]`;
  * 'roi_pooler' / 'mask_roi_pooler': `(features {level: [B, H, W, C]},
    boxes [B, N, 4]) -> [B, N, k, k, C']`;
  * 'dense_aux_head': `features {level: ...} -> dict of outputs` (the loss
    inputs, plus 'fusion_features' when it feeds the pyramid);
  * 'feature_fusion': `(features, {head name: outputs}) -> features`.
"""

from typing import Any, Callable

KINDS = ('box_head', 'mask_head', 'roi_pooler', 'mask_roi_pooler',
         'dense_aux_head', 'feature_fusion')
_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {k: {} for k in KINDS}


def register(kind: str, name: str) -> Callable[[Callable[..., Any]],
                                               Callable[..., Any]]:
  """Decorator registering `builder` as part `name` of kind `kind`."""
  if kind not in _REGISTRY:
    raise ValueError(f'unknown part kind {kind!r}; kinds: {KINDS}')

  def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
    if name in _REGISTRY[kind]:
      raise ValueError(f'{kind} {name!r} is registered twice')
    _REGISTRY[kind][name] = builder
    return builder

  return decorator


def build(kind: str, part: str, *args, **kwargs) -> Any:
  """Builds part `part` of kind `kind`; the error lists the known names."""
  try:
    builder = _REGISTRY[kind][part]
  except KeyError:
    raise ValueError(
        f'unknown {kind} {part!r}; registered: {sorted(_REGISTRY[kind])}'
    ) from None
  return builder(*args, **kwargs)


def names(kind: str) -> list[str]:
  return sorted(_REGISTRY[kind])
