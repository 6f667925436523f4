"""The service layer: small handlers, the unit of work, and queries."""
