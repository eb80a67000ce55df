"""EchoCenter: a Feishu Butler that runs commands only after a person approves them."""

from echocenter.app import create_app
from echocenter.settings import Settings

__all__ = ["Settings", "create_app"]
__version__ = "0.1.0"
