"""Feishu's long connection: the frame codec (sans-I/O) and, on top of it, the asyncio client."""
