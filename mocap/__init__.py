"""The front end: command line, session folder and stage runners over the stage packages."""
