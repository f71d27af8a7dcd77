"""Chat protocols: the platform-neutral conversation core (core.py), the job queue (queue.py), the
engine process that runs jobs (engine_process.py) and one package per chat platform (telegram/,
discord/, web/), each with its config section."""
