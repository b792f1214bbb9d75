"""Tools for working on ccadmin, never deployed: `make run` and a local Redis Cluster.

`devserver` runs the whole stack on one machine (`make run`); `local_cluster`
starts a real Redis Cluster on loopback for the tests and `make bench`.
"""
