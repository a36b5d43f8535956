"""Boot (init/main.c)."""
