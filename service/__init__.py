"""The HTTP API (`mmkg serve`) and the search path it shares with the CLI."""
