"""The Butler: owns conversations and decides replies (a brain: rules offline, an LLM with tools)."""
