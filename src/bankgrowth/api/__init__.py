"""The REST API: one FastAPI application that mounts every domain's router (``views.py``)."""
