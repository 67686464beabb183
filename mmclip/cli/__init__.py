"""Command-line plumbing shared by the tools (not used by the library layers)."""
