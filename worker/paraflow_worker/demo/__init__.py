"""Small processors shipped in the worker image: runnable examples, and tools for testing a
workflow's retry and tolerance settings before pointing it at real work."""
