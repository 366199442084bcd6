"""Models: the two-stage meta-architecture, its parts and the factory."""
