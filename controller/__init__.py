"""camfleet controller: registry, assignment, event center, models, rollouts, web view."""
