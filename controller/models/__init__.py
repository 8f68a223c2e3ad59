"""Model distribution: artifacts uploaded by admins, kept by sha256, signed with the registry's
key and assigned to cameras; agents fetch them through the API.

Nothing here imports `agent`: the controller reads only an artifact's manifest (`artifact`),
and the agent verifies the whole file before using it.
"""
