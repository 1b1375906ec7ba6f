"""Pictures: a headless software rasterizer and the figures built on it."""
