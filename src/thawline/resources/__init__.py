"""Data files shipped with Thawline (the default appeal requirements matrix)."""
