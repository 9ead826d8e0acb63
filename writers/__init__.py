"""Converters to FFCV .beton files (installed as ffcv_inat.writers)."""
