"""The HTTP API: thin FastAPI routes over the service layer."""
