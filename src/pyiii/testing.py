"""pytest plugin: fixtures that start a pyiii engine in-process (filled in by the engine work)."""
