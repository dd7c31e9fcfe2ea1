"""An example archlint plugin: one team rule (PAD001 unpadded-vocab) and its tiny test models."""
