"""The typed configuration: the root config's schema, each target's and hub's options, and the one
check every command line and API call goes through before any work (``zoo.config.check``)."""
