"""The Melo server: FastAPI + SQLAlchemy 2 (async) + Redis."""
