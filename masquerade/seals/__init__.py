"""Sealed originals: the encrypted, per-track store of the pixels anonymization covered,
for exact recovery under a warrant (`restore --exact`). See `format` for the layout."""
