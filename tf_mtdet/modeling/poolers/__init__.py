"""RoI poolers beyond Model Garden's level-assigned RoIAlign."""
