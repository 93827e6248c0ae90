"""Configuration: the file's models, its loader, maintenance windows and reload."""
