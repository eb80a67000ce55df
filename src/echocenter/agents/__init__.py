"""Agents: machines that run approved commands, connected over a WebSocket."""
