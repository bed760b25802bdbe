"""The click commands, one module per group: thin, they parse, call the library and print."""
