"""One module per `facelab` sub-command."""
