"""A module that fails while importing, as a user's broken model file would."""

raise RuntimeError("broken at import")
