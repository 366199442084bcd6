"""Necks: multi-level features {level: [B, H, W, C]} -> pyramid {level: ...}.

Importing this package registers our necks with Model Garden's decoder
registry, next to its own 'fpn' (the papers' TD-FPN).
"""

from tf_mtdet.modeling.necks import bottom_up_fpn  # noqa: F401
from tf_mtdet.modeling.necks import sa_fpn  # noqa: F401
from tf_mtdet.modeling.necks import local_top_down  # noqa: F401
from tf_mtdet.modeling.necks import msfem  # noqa: F401
from tf_mtdet.modeling.necks import plain_fpn  # noqa: F401
