"""The worker protocol without I/O: message structs, codec, error codes."""
