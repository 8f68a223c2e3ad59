"""The controller's event center: events stored idempotently by id, clips assembled from chunks."""
