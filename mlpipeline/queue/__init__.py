"""What to run: mlp.config and the queue files (TOML, or the original INI), the queued
scripts, and what each script's versions are."""
