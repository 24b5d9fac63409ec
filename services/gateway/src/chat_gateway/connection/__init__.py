"""One client connection: the client, its loop, its pipeline, and the dispatcher interface."""
