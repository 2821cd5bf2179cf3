"""The built-in state module: a global key-value store with reactive change triggers (spec/state.md)."""
