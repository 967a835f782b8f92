"""The App Container runtime: pods on disk, the namespace executor, cgroups, networking, metadata."""
