"""What is written under outputs/: the journal and the claims in it, daemons' identities and
heartbeats, the logs and results people read, and each model_dir's run record."""
