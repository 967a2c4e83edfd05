"""A worker that fails before serving: the caller must see this traceback."""

raise RuntimeError("broken on purpose")
