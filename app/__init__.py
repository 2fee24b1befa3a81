"""rqes: the HTTP service, CLI, storage and embedded trust services (composition root)."""
