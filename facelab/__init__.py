"""Face Lab application wiring: settings and the `facelab` command line."""
