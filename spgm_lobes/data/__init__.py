"""Dataset preparation and mixing of spgm-lobes (wsj0-mix, LibriMix, GASS, demo corpus)."""
