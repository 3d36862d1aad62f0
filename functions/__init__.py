"""Adapters from triggers to the core in ``shared/``: the HTTP API (an ASGI app), its Azure
Functions wrappers, the local server and the drawing page. Nothing here holds business logic."""
