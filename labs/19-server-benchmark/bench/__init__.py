"""Lab 19's benchmark: the servers it measures (servers.py) and what drives them (driver.py:
`python3 -m harness bench --help`, or `python3 -m bench` from the lab's folder)."""
