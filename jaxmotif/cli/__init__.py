"""Command-line interfaces: thin shells that parse, validate, call the library and write."""
