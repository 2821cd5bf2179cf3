"""The pyiii HTTP-free front doors: worker socket, /otel, channels, and the serve loop."""
