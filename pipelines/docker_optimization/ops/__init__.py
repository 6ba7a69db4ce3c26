"""What runs against Docker: image builds and their measurements."""
