"""The ``bankgrowth`` command line: thin commands over the services."""
