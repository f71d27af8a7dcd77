"""Chat protocols: the platform-neutral conversation core (core.py), the job queue (queue.py), the
engine process that runs jobs (engine_process.py) and one adapter module per chat platform."""
