"""The deployable EchoCenter agent: a TOML allow-list of commands and templates, run without a shell."""

__version__ = "0.1.0"
