"""Models: the two-stage meta-architecture, its parts and the factory."""

from tf_mtdet.utils import autograph_rules

# Before anything traces a model: AutoGraph leaves model code as written.
autograph_rules.install()
