"""Backbones Model Garden lacks, registered in its backbone registry.

Importing this package registers them next to Model Garden's own ('resnet',
...), so `backbones.factory.build_backbone` builds either.
"""

from tf_mtdet.modeling.backbones import resnext  # noqa: F401
