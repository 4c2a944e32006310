"""One module per `livepulse` sub-command; each exposes `register(subparsers)`."""
