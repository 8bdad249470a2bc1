"""The gateway's own HTTP/1.1 layer: a lean ASGI server for clients and a lean client for engines."""
