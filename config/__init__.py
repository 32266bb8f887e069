"""Configuration: defaults in config/defaults.toml, overridden by WORKRATE_* environment variables."""
from config.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
