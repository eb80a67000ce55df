"""The Butler: owns conversations and decides replies (its brains and service arrive with issue 5)."""
