"""Built-in modules: one package per module, each plugged into the engine through ``pyiii.engine.modules``."""
