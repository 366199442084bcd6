"""RoI heads and RoI-feature blocks added by the papers."""
