"""Feishu connector administration: configure, verify, enable, read logs."""
