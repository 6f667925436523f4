"""Route modules, one per domain noun."""
