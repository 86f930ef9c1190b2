"""
What several gateway instances share: revocations pushed to every one of
them, and the cluster-wide list of tunnels (L{tunnelgw.cluster.engine}).
"""
