"""Steps, one per file. Each registers itself under a versioned name (``langid.v1``)."""
