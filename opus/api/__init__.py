"""The REST API (FastAPI, ASGI): build it with `opus.api.app.create_app`."""
