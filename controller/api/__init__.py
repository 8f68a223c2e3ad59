"""The controller's HTTP API (FastAPI): `create_app(ApiContext(...))`."""
