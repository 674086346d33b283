"""Model backends behind small interfaces; heavy packages are imported inside each backend."""
