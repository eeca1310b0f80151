"""The two modes' loops. Execution mode walks each version along one path: choose it,
claim and launch it on an executor, take what its child says, record how it ended."""
