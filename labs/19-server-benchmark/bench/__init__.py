"""Lab 19's benchmark: the servers it measures (servers.py) and what drives them."""
