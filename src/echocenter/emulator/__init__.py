"""A local Feishu Open Platform: auth, IM messages, the long connection, card clicks, and a chat page.

Start it with ``echocenter emulator`` or in-process with ``create_emulator_app()``.
"""

from echocenter.emulator.app import Emulator, create_emulator_app
from echocenter.emulator.state import EmulatorConfig, World

__all__ = ["Emulator", "EmulatorConfig", "World", "create_emulator_app"]
