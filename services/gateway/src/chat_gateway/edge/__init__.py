"""The client port: HTTP/1.1 and WebSocket connections, owned end to end."""
